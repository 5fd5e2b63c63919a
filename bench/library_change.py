"""A change of the library, side by side: this checkout against a baseline checkout.

Over one index (the shipped corpus plus the real PDFs, built once with the project's `Indexer`),
each process (`--child`) times, with models loaded first:

- load: `Library.load` of the whole store;
- add: `Pipeline.add_documents([one new paper])`, which ends with the library reloaded;
- then answer: the next `Pipeline.answer` about that paper (it pays for whatever the answerer and
  the name index rebuild after the change), and whether a source is the new paper;
- steady: a second answer to the same question, for comparison.

Runs alternate baseline / this checkout (`--reps` each) so both see the same machine load; the
baseline is another checkout of the project (`git worktree add /tmp/base <commit>`), imported
through PYTHONPATH. Medians go to bench/results/library_change.json and are printed as a table.

Usage: `.venv/bin/python bench/library_change.py --baseline /tmp/base [--reps 3]
[--data EXISTING_INDEX]`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

PAPER = """# Zorblax: Sparse Routing for Tidal Forecasting

Jane Doe, John Roe

## Abstract

We present Zorblax, a method that routes tidal gauge readings through sparse experts. Zorblax
reduces forecasting error by 12 percent on coastal benchmarks while using half the compute of
dense baselines.

## Method

The Zorblax method assigns each gauge reading to two of sixteen experts with a learned router.
Each expert is a small recurrent network trained on one coastal region.
"""
QUESTION = "What does the Zorblax method do?"


def child(data: Path) -> dict[str, float | bool]:
    """One measurement in this process, on a private copy of the index at `data`."""
    work = Path(tempfile.mkdtemp())
    shutil.copytree(data, work / "data")
    os.environ["RAG_DATA_DIR"] = str(work / "data")
    from rag.chain import Pipeline
    from rag.library import Library
    from rag.settings import Settings

    pipe = Pipeline(Settings())
    pipe.warm_up()
    started = time.perf_counter()
    Library.load(pipe.retriever.store, pipe.settings)
    load = time.perf_counter() - started
    new = work / "zorblax.md"
    new.write_text(PAPER)
    started = time.perf_counter()
    pipe.add_documents([new])
    added = time.perf_counter()
    answer = pipe.answer(QUESTION)
    answered = time.perf_counter()
    pipe.answer(QUESTION)
    steady = time.perf_counter() - answered
    shutil.rmtree(work, ignore_errors=True)
    return {"load_s": load, "add_s": added - started, "answer_after_s": answered - added,
            "until_answered_s": answered - started, "steady_answer_s": steady,
            "cites_new": any(h.paper.source == "zorblax.md" for h in answer.sources)}


def run(baseline: Path, reps: int, data: Path | None) -> None:
    own = data is None
    if data is None:
        data = Path(tempfile.mkdtemp()) / "data"
        common.build_index(data, extra=[common.REAL_PDFS])
    from rag.settings import Settings
    from rag.store import ChunkStore

    chunks = ChunkStore(Settings(data_dir=data)).count()
    print(f"index: {data}, {chunks} chunks", flush=True)
    runs: dict[str, list[dict[str, float | bool]]] = {"baseline": [], "this": []}
    for rep in range(reps):
        for name, path in (("baseline", str(baseline)), ("this", "")):
            env = {**os.environ, "PYTHONPATH": path}
            out = subprocess.run([sys.executable, __file__, "--child", str(data)], env=env,
                                 capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rep, name, runs[name][-1], flush=True)
    keys = ["load_s", "add_s", "answer_after_s", "until_answered_s", "steady_answer_s"]
    med = {n: {k: round(statistics.median(float(r[k]) for r in rs), 3) for k in keys}
           for n, rs in runs.items()}
    result = {"machine": common.machine(), "chunks": chunks, "reps": reps, "medians": med,
              "runs": runs, "baseline": str(baseline)}
    common.RESULTS.mkdir(exist_ok=True)
    (common.RESULTS / "library_change.json").write_text(json.dumps(result, indent=1))
    print("| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for n in ("baseline", "this"):
        print(f"| {n} | " + " | ".join(f"{med[n][k]:.2f}" for k in keys) + " |")
    if own:
        shutil.rmtree(data.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", type=Path, help="an existing index (RAG_DATA_DIR) to copy for "
                    "each run, instead of building the corpus and real PDFs afresh")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
    elif args.baseline:
        run(args.baseline, args.reps, args.data)
    else:
        ap.error("--baseline DIR is required")


if __name__ == "__main__":
    main()
