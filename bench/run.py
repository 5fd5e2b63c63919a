"""Run every benchmark once, write `bench/results/latest.json`, refresh BENCHMARKS.md.

One process, one fresh temporary index (its cold build is the indexing benchmark), then the
baselines side by side, then latency, then the memory probe in a fresh process. BENCHMARKS.md
keeps whatever is written outside its generated sections; each section sits between
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` and is replaced whole. Nothing here changes
a setting or the user's `.rag/` data directory.

Usage: `make bench` or `.venv/bin/python bench/run.py [--reps 3]` (several minutes on two busy
cores; the two index builds are the slow part). `--render` rewrites BENCHMARKS.md from the last
results without measuring.

Not run here, because they take long on 2 cores: `.venv/bin/python bench/index_speed.py`
(indexing throughput against the raw encoder; `--compare torch onnx onnx-int8 openvino
openvino-int8` for the embedding backends) and `bench/scale.py` (libraries of 1k to 250k
chunks: index time, cold start, latency, memory; embedded and against a Chroma server; about an
hour each; `make bench` runs it after this, `make bench-scale` alone). Both write their own
sections of BENCHMARKS.md or say where their numbers go.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import baselines
import common
import latency

from rag.evaluation import load_jsonl
from rag.settings import PROJECT_ROOT

BENCHMARKS_MD = PROJECT_ROOT / "BENCHMARKS.md"
NOISE = ("Medians and ratios measured side by side in one run; the machine is noisy (shared "
         "cores: see the load average), so compare systems within a run, not across runs.")
HEADER = """# Benchmarks

Regenerate with `make bench` (or `.venv/bin/python bench/run.py`); the raw numbers land in
`bench/results/latest.json`. The sections below are rewritten by `bench/run.py`; text outside
them is kept. What each benchmark measures is in the docstrings of `bench/baselines.py` and
`bench/latency.py`; questions are `shared/eval/dev.jsonl`, scored by `rag.evaluation.score`
(identical to `shared/eval/score.py`).

Reading them: the dev set is small (72 answerable and 8 unanswerable questions) and the project
was developed while looking at it, so its own scores here are optimistic; the project is also
judged on held-out questions written the same way. The baselines were never tuned on it. Scores
are exact (same questions, same scorer); latencies are wall-clock on shared cores and move with
the load average printed beside them.
"""


def section(name: str, title: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n## {title}\n\n{body.strip()}\n<!-- /bench:{name} -->"


def update_markdown(path: Path, sections: dict[str, str]) -> None:
    """Replace each generated section in place, or append it; keep everything else."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    for name, block in sections.items():
        pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def measure(questions_file: Path, reps: int) -> dict[str, Any]:
    """Every benchmark, in one process, on one fresh temporary index."""
    questions = load_jsonl(questions_file)
    machine = common.machine()
    print(common.machine_line(machine), flush=True)
    out: dict[str, Any] = {"machine": machine, "questions_file": str(questions_file)}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        print("indexing the shipped corpus into a fresh data directory ...", flush=True)
        settings, index = latency.index_benchmark(Path(tmp) / "data")
        print(f"  cold {index['cold']['seconds']} s for {index['cold']['chunks']} chunks; "
              f"re-index {index['reindex']['seconds']} s", flush=True)
        print("baselines side by side (builds the tutorial's index too) ...", flush=True)
        out["baselines"] = baselines.run(settings, questions, Path(tmp))
        print(f"latency, {reps} repetitions ...", flush=True)
        lat = latency.run(settings, questions, reps)
        first = questions[0]["question"]
        mem = latency.memory_probe(settings.data_dir, first if isinstance(first, str) else first[-1])
    out["latency"] = {"index": index, "latency": lat, "memory": mem,
                      "bench_process_peak_rss_mb": common.peak_rss_mb()}
    out["load_average_end"] = common.load_average()
    return out


def render(out: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(text for the terminal, BENCHMARKS.md sections) from a results dict."""
    where = common.machine_line(out["machine"], out["load_average_end"])
    base_md = baselines.table(out["baselines"])
    lt = out["latency"]
    lat_md = latency.table(lt["index"], lt["latency"], lt["memory"])
    sections = {
        "baselines": section("baselines", "Retrieval and answers against baselines",
                             f"{where}\n\n{NOISE}\n\n{base_md}\n\n{_baseline_notes()}"),
        "latency": section("latency", "Latency, indexing and memory",
                           f"{where}\n\n{NOISE}\n\n{lat_md}"),
    }
    text = f"{where}\n\n{base_md}\n\n{lat_md}\n\nload average at the end: {out['load_average_end']}"
    return text, sections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=Path, default=common.DEV)
    ap.add_argument("--reps", type=int, default=3, help="latency repetitions per question")
    ap.add_argument("--no-markdown", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite BENCHMARKS.md from bench/results/latest.json")
    a = ap.parse_args()
    latest = common.RESULTS / "latest.json"
    if a.render:
        out = json.loads(latest.read_text(encoding="utf-8"))
    else:
        out = measure(a.questions, a.reps)
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        latest.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    text, sections = render(out)
    if not a.no_markdown:
        update_markdown(BENCHMARKS_MD, sections)
    print()
    print(text)
    print(f"wrote {latest}" + ("" if a.no_markdown else f" and {BENCHMARKS_MD}"))


def _baseline_notes() -> str:
    return (
        "How the baselines were built (see `bench/baselines.py`): the tutorial pipeline splits the "
        "raw files with `RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)`, "
        "embeds with `HuggingFaceEmbeddings` (the same packaged MiniLM), stores in "
        "`langchain_chroma.Chroma` and returns `similarity_search(k=5)`. It has no paper titles, so "
        "the title shown for each source is the first non-empty line of its chunk; title@5 counts "
        "only when that line happens to be a paper's heading. BM25 alone ranks the project's own "
        "chunks with bm25s and the project's tokenizer and returns the top 5 chunks as they are. "
        "Baselines ignore conversation history, as the tutorial does; every system gets the same "
        "two turns for follow-ups through `rag.evaluation.run_questions`. Latency is of the scored "
        "turn, measured interleaved question by question; the extractive row times the whole "
        "answer (retrieval included)."
    )


if __name__ == "__main__":
    main()
