"""The local model in the app's process (before) and in its own process (now), side by side.

Same GGUF, same prompts, same sampling (greedy), interleaved in one run: for each prompt the
in-process `llama_cpp.Llama` and the app's `llamacpp` backend (a `rag.llms.model_server` child
spoken to over loopback HTTP) each generate, and the time to the first piece of text and to the
whole answer is taken. Start-up (loading the model in-process vs starting the model process until
it serves) is timed once each. Prompts are the app's own evidence prompts for the dev questions
that reach the model.

    .venv/bin/python bench/local_model.py [--data-dir DIR] [--limit N] [--model gemma|smollm2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from run import section, update_markdown

from rag.chain import Pipeline
from rag.evaluation import load_jsonl
from rag.llms import LlamaCppLLM, gemma_model_path, smollm2_model_path
from rag.llms.llamacpp import BASE_MODEL_STOPS, completion_prompt
from rag.prompting import build_evidence_prompt

BENCHMARKS_MD = common.PROJECT_ROOT / "BENCHMARKS.md"
STOPS = ["</source>", "\n\nQuestion:"]


def prompts_for(pipe: Pipeline, llm: LlamaCppLLM, questions: list[dict[str, Any]],
                limit: int) -> list[Any]:
    """The evidence prompts the pipeline would send for questions that reach the model."""
    out = []
    for q in questions:
        if len(out) >= limit or not isinstance(q["question"], str):
            continue
        sa, hits, _ = pipe.retrieve(q["question"])
        extract = pipe.extractor.answer(q["question"], sa.intent, hits)
        if extract.abstained or sa.intent.kind in ("summary", "list"):
            continue
        prompt = build_evidence_prompt(q["question"], extract.evidence, hits, llm,
                                       pipe.settings.llm_max_tokens)
        out.append(prompt.messages)
    return out


def in_process(path: Path, threads: int, n_ctx: int) -> tuple[Any, float]:
    import llama_cpp

    started = time.perf_counter()
    llama = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    return llama, time.perf_counter() - started


def time_stream(pieces: Any) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    for _ in pieces:
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return (first if first is not None else total), total


def run(data_dir: Path | None, limit: int, model: str) -> dict[str, Any]:
    built = common.build_index(data_dir or Path(tempfile.mkdtemp(prefix="bench-local-")))
    path = gemma_model_path() if model == "gemma" else smollm2_model_path()
    settings = built.settings.model_copy(update={"llm_model_path": path})
    pipe = Pipeline(settings)
    llm = LlamaCppLLM(settings)
    questions = load_jsonl(common.DEV)

    started = time.perf_counter()
    llm.process.ensure()
    process_start = time.perf_counter() - started
    llama, load_s = in_process(path, llm.process.threads, int(llm.process.info["n_ctx"]))
    chat = bool(llm.process.info["chat_template"])
    prompts = prompts_for(pipe, llm, questions, limit)

    rows: dict[str, dict[str, list[float]]] = {"in-process": {"ttft": [], "total": []},
                                               "own process": {"ttft": [], "total": []}}
    max_tokens = settings.llm_max_tokens
    for messages in prompts:
        if chat:
            as_dicts = [{"role": m.role, "content": m.content} for m in messages]
            inside = llama.create_chat_completion(messages=as_dicts, max_tokens=max_tokens,
                                                  temperature=0.0, stop=STOPS, stream=True)
        else:
            inside = llama.create_completion(completion_prompt(messages), max_tokens=max_tokens,
                                             temperature=0.0, stop=[*STOPS, *BASE_MODEL_STOPS],
                                             stream=True)
        for label, pieces in (("in-process", inside),
                              ("own process", llm.stream(messages, max_tokens=max_tokens,
                                                         stop=STOPS))):
            ttft, total = time_stream(pieces)
            rows[label]["ttft"].append(ttft)
            rows[label]["total"].append(total)
    llm.close()
    out = {
        "model": path.name, "prompts": len(prompts),
        "startup_s": {"in-process": round(load_s, 3), "own process": round(process_start, 3)},
        "results": {k: {m: common.percentiles(v) for m, v in r.items()} for k, r in rows.items()},
        "ttft_ratio_p50": round(statistics.median(rows["own process"]["ttft"])
                                / statistics.median(rows["in-process"]["ttft"]), 3),
        "machine": common.machine(),
    }
    return out


def render(out: dict[str, Any]) -> str:
    r = out["results"]
    lines = [
        f"{out['model']}, {out['prompts']} evidence prompts from the dev questions, greedy, "
        "interleaved in one run; " + common.machine_line(out["machine"]), "",
        "| model runs | start-up | TTFT p50 | TTFT p95 | whole answer p50 | whole answer p95 |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("in-process", "own process"):
        lines.append(f"| {label} | {out['startup_s'][label]:.2f} s | "
                     f"{common.ms(r[label]['ttft']['p50_s'])} | {common.ms(r[label]['ttft']['p95_s'])} | "
                     f"{common.ms(r[label]['total']['p50_s'])} | "
                     f"{common.ms(r[label]['total']['p95_s'])} |")
    lines += ["", f"TTFT ratio (own process / in-process, p50): {out['ttft_ratio_p50']:.2f}. "
              "Start-up is paid once, on the first question that uses the model."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--model", choices=["gemma", "smollm2"], default="gemma")
    args = p.parse_args()
    out = run(args.data_dir, args.limit, args.model)
    (common.PROJECT_ROOT / "bench" / "results" / "local_model.json").write_text(
        json.dumps(out, indent=2))
    body = render(out)
    print(body)
    update_markdown(BENCHMARKS_MD, {"local-model": section(
        "local-model", "The local model in its own process: time to first token, before and "
        "after", body)})


if __name__ == "__main__":
    main()
