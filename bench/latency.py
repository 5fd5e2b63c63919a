"""Latency, indexing speed and memory of the project's own pipeline on the shipped corpus.

  retrieval   question in, ranked passages out (`Pipeline.retrieve`, the app's path, follow-ups
              condensed with their first turn), models loaded, after one warm-up; every dev
              question x `--reps` repetitions, repetitions interleaved; p50/p95.
  answer      the whole extractive answer (`Pipeline.answer(backend="extractive")`), same
              questions and repetitions; p50/p95 of the total and of the first sentence.
  index       cold: the shipped corpus into a fresh temporary data directory (model loaded
              beforehand, so this is parsing + chunking + embedding + Chroma + BM25); seconds and
              chunks/s. Re-index: the same call again, which must embed nothing.
  memory      peak RSS (resource.getrusage) of a fresh process that loads the library, the
              embedder and the extractive answerer and answers one question: what serving costs.

It measures; it changes no setting. Run alone: `.venv/bin/python bench/latency.py`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

from rag.evaluation import load_jsonl
from rag.settings import Settings


def index_benchmark(data_dir: Path) -> tuple[Settings, dict[str, Any]]:
    """Cold index into the empty `data_dir`, then the same index call again."""
    from rag.embeddings import get_embedder
    from rag.indexing import Indexer

    started = time.perf_counter()
    settings = common.settings_for(data_dir)
    get_embedder(settings.embedding_model, settings.embedding_batch_size).embed(["load"])
    model_load = time.perf_counter() - started
    cold = common.build_index(data_dir)
    again = Indexer(settings).index([common.CORPUS])
    return settings, {
        "model_load_s": round(model_load, 2),
        "cold": {"seconds": cold.seconds, "chunks": cold.chunks,
                 "chunks_per_s": round(cold.chunks / cold.seconds, 1),
                 "papers": cold.report["papers"], "files": cold.report["files"]},
        "reindex": {"seconds": again.seconds, "embedded": again.embedded,
                    "chunks_unchanged": again.chunks_unchanged},
    }


def _conversations(questions: Sequence[dict[str, Any]], pipe: Any) -> list[tuple[str, list]]:
    """(scored turn, history) per question; a follow-up's history holds its first turn answered
    once, untimed, exactly as `run_questions` builds it."""
    out = []
    for q in questions:
        turns = q["question"] if isinstance(q["question"], list) else [q["question"]]
        history: list[dict[str, str]] = []
        for turn in turns[:-1]:
            earlier = pipe.answer(turn, history, backend="extractive")
            history += [{"role": "user", "content": turn},
                        {"role": "assistant", "content": earlier.text}]
        out.append((turns[-1], history))
    return out


def run(settings: Settings, questions: Sequence[dict[str, Any]], reps: int = 3) -> dict[str, Any]:
    """Retrieval and whole-answer latency over every question x `reps`, models warm."""
    from rag.chain import Pipeline

    pipe = Pipeline(settings)
    convs = _conversations(questions, pipe)  # also warms up: models, library, extractor IDF
    pipe.retrieve(*convs[0])
    pipe.answer(*convs[0], backend="extractive")
    load_start = common.load_average()
    retrieval: list[float] = []
    answer: list[float] = []
    first: list[float] = []
    for _ in range(reps):
        for question, history in convs:
            started = time.perf_counter()
            pipe.retrieve(question, history, k=5)
            retrieval.append(time.perf_counter() - started)
        for question, history in convs:
            started = time.perf_counter()
            a = pipe.answer(question, history, k=5, backend="extractive")
            answer.append(time.perf_counter() - started)
            if a.timings.get("ttft_s") is not None:
                first.append(a.timings["ttft_s"])
    return {
        "reps": reps, "questions": len(convs),
        "load_average_start": load_start, "load_average_end": common.load_average(),
        "retrieval": common.percentiles(retrieval),
        "answer": common.percentiles(answer),
        "answer_first_sentence": common.percentiles(first),
        "raw_s": {"retrieval": [round(x, 4) for x in retrieval],
                  "answer": [round(x, 4) for x in answer]},
    }


# subtle: ru_maxrss survives exec, so a process started straight from this (large) one would
# report this one's peak as its own. Started through a small intermediate process it reports
# its own peak only; VmHWM, which exec does reset, is recorded beside it as a cross-check.
_RELAY = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def memory_probe(data_dir: Path, question: str) -> dict[str, Any]:
    """Peak RSS of a fresh process serving from `data_dir` (run in a subprocess)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RELAY, sys.executable, __file__, "--memory-probe", str(data_dir),
         "--question", question],
        capture_output=True, text=True, check=True, timeout=600,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _probe(data_dir: Path, question: str) -> None:
    from rag.chain import Pipeline

    base = common.peak_rss_mb()
    pipe = Pipeline(common.settings_for(data_dir))
    pipe.retrieve(question)
    loaded = common.peak_rss_mb()
    pipe.answer(question, backend="extractive")
    print(json.dumps({"python_baseline_mb": base, "after_load_mb": loaded,
                      "after_answer_mb": common.peak_rss_mb(), "vm_hwm_mb": _vm_hwm_mb()}))


def table(index: dict[str, Any], lat: dict[str, Any], mem: dict[str, Any] | None) -> str:
    """The latency section's Markdown tables."""
    ms = common.ms
    r, a, f = lat["retrieval"], lat["answer"], lat["answer_first_sentence"]
    c, ri = index["cold"], index["reindex"]
    lines = [
        "| measure | p50 | p95 | n |",
        "| --- | --- | --- | --- |",
        f"| retrieval (question in, 5 passages out) | {ms(r['p50_s'])} | {ms(r['p95_s'])} | {r['n']} |",
        f"| extractive answer, whole | {ms(a['p50_s'])} | {ms(a['p95_s'])} | {a['n']} |",
        f"| extractive answer, first sentence | {ms(f['p50_s'])} | {ms(f['p95_s'])} | {f['n']} |",
        "",
        f"{lat['questions']} dev questions x {lat['reps']} repetitions, after one warm-up; "
        f"load average during the timing {'/'.join(map(str, lat['load_average_start']))} "
        f"→ {'/'.join(map(str, lat['load_average_end']))}.",
        "",
        "| indexing | seconds | chunks | chunks/s | embedded |",
        "| --- | --- | --- | --- | --- |",
        f"| cold, shipped corpus ({c['files']} files, {c['papers']} papers/sections) | "
        f"{c['seconds']} | {c['chunks']} | {c['chunks_per_s']} | {c['chunks']} |",
        f"| re-index, nothing changed | {ri['seconds']} | {ri['chunks_unchanged']} | – | "
        f"{ri['embedded']} |",
        "",
        f"Embedding model load (not in the index times): {index['model_load_s']} s.",
    ]
    if mem:
        lines += ["", f"Memory, peak RSS of a fresh serving process: {mem['after_load_mb']:.0f} MB "
                      f"after loading the library and models, {mem['after_answer_mb']:.0f} MB after "
                      f"one extractive answer (interpreter with the project's light modules imported: "
                      f"{mem['python_baseline_mb']:.0f} MB; VmHWM {mem.get('vm_hwm_mb')} MB)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=Path, default=common.DEV)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--memory-probe", type=Path, metavar="DATA_DIR", help=argparse.SUPPRESS)
    ap.add_argument("--question", default="Who wrote Primal Wasserstein Imitation Learning?",
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_probe:
        _probe(a.memory_probe, a.question)
        return
    questions = load_jsonl(a.questions)
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        settings, index = index_benchmark(Path(tmp) / "data")
        lat = run(settings, questions, a.reps)
        mem = memory_probe(settings.data_dir, a.question)
    out = {"index": index, "latency": lat, "memory": mem}
    print(json.dumps(out, indent=1) if a.json else table(index, lat, mem))


if __name__ == "__main__":
    main()
