"""Local LLM backends on the dev questions: answer quality with grounding checks, how often the
raw model output fails the check, and time to first token / whole answer.

Each model answers every dev question through the app's own pipeline (`Pipeline.answer_stream`
with backend `llamacpp`): extractive abstention first, then the model on a short evidence prompt,
then sentence verification (unsupported sentences dropped, the extractive answer shown when
nothing survives). Models: SmolLM2-135M-Instruct (packaged, chat template) and Gemma 3 270M
(base, plain completion prompt). Lists, summaries and abstentions never reach the model, so the
raw-failure share is over the answers the model actually wrote.

    .venv/bin/python bench/llm.py [--data-dir .rag] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from run import section, update_markdown

from rag.chain import Pipeline
from rag.evaluation import Response, load_jsonl, run_questions, score
from rag.llms import gemma_model_path, smollm2_model_path

BENCHMARKS_MD = common.PROJECT_ROOT / "BENCHMARKS.md"


def evaluate(settings: Any, questions: list[dict[str, Any]], label: str) -> dict[str, Any]:
    pipe = Pipeline(settings)
    raw_checked = raw_failed = sentences = sentences_failed = fallbacks = 0
    ttft: list[float] = []
    total: list[float] = []

    def respond(question: str, history: list[dict[str, str]]) -> Response:
        nonlocal raw_checked, raw_failed, sentences, sentences_failed, fallbacks
        started = time.perf_counter()
        final = None
        first = None
        for final in pipe.answer_stream(question, history, backend="llamacpp"):
            if first is None and final.text:
                first = time.perf_counter() - started
        assert final is not None
        if "generate_s" in final.timings:  # the model wrote this one
            raw_checked += 1
            bad = [c for c in final.sentences if not c.verified]
            raw_failed += bool(bad) or not final.sentences
            sentences += len(final.sentences)
            sentences_failed += len(bad)
            fallbacks += any("extractive answer" in n for n in final.notes)
            ttft.append(final.timings.get("ttft_s", 0.0))
            total.append(final.timings.get("total_s", 0.0))
        return Response(final.text, final.abstained, final.sources, final.timings.get("ttft_s"))

    results = list(run_questions(questions, respond))
    s = score(questions, results, 5)
    return {
        "model": label, "answer": s["answer"], "abstain": s["abstain"], "answered": s["answered"],
        "generated": raw_checked,
        "raw_answers_failing_check": round(raw_failed / raw_checked, 3) if raw_checked else None,
        "raw_sentences_failing_check": round(sentences_failed / sentences, 3) if sentences else None,
        "extractive_fallbacks": fallbacks,
        "ttft": common.percentiles(ttft), "total": common.percentiles(total),
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| model (llamacpp) | answer | abstain | answered | model-written answers | raw answers failing the check | raw sentences failing | shown extractive instead | TTFT p50 / p95 | whole answer p50 / p95 |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['answer']} | {r['abstain']} | {r['answered']} | {r['generated']} | "
            f"{r['raw_answers_failing_check']} | {r['raw_sentences_failing_check']} | "
            f"{r['extractive_fallbacks']} | {common.ms(r['ttft']['p50_s'])} / "
            f"{common.ms(r['ttft']['p95_s'])} | {common.ms(r['total']['p50_s'])} / "
            f"{common.ms(r['total']['p95_s'])} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="reuse an index (default: build a fresh one)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    a = ap.parse_args()
    questions = load_jsonl(common.DEV)[: a.limit or None]
    m = common.machine()
    with tempfile.TemporaryDirectory(prefix="rag-bench-llm-") as tmp:
        base = common.settings_for(a.data_dir) if a.data_dir else common.build_index(
            Path(tmp) / "data").settings
        rows = []
        for label, path in (("SmolLM2-135M-Instruct Q4_1", smollm2_model_path()),
                            ("Gemma 3 270M base Q4_K_M", gemma_model_path())):
            settings = base.model_copy(update={"llm_model_path": path, "llm_backend": "llamacpp"})
            print(f"{label} ...", flush=True)
            rows.append(evaluate(settings, questions, label))
            print(json.dumps(rows[-1]), flush=True)
    md = table(rows)
    note = (f"{common.machine_line(m, common.load_average())}\n\n{len(questions)} dev questions. "
            "Model-written answers exclude lists, summaries and abstentions (answered without the "
            "model). A raw answer fails when any of its sentences is unsupported by its cited "
            "passage; unsupported sentences are dropped and, when none survive, the extractive "
            "answer is shown. This is why `extractive` stays the default backend.")
    update_markdown(BENCHMARKS_MD, {"llm": section("llm", "Local LLM backends", f"{note}\n\n{md}")})
    (common.RESULTS / "llm.json").write_text(json.dumps({"machine": m, "rows": rows}, indent=1))
    print(md)


if __name__ == "__main__":
    main()
