"""`make stress`: the reliability tests at full size, with their figures written down.

A test takes its size from `size(small, full)`: the small one in `make test`, the full one when
RAG_STRESS=1 (set by the runner). `record(...)` appends one row of figures (what was tried, how
many times, what held, what did not) to the JSON-lines file named by RAG_STRESS_RESULTS; without
it (`make test`) nothing is written.

To add stress tests: drop a module into this package with `TESTS = ["tests/test_x.py", ...]`
(pytest paths or node ids) and call `record` from those tests. `python -m tests.stress` runs
every module's TESTS at full size; `python -m tests.stress.table` turns the results into the
rows of RELIABILITY.md. This package is not collected by pytest (no test_*.py files here).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

STRESS = os.environ.get("RAG_STRESS") == "1"
RESULTS_ENV = "RAG_STRESS_RESULTS"
RESULTS_DIR = Path(__file__).parent / "results"


def size(small: int, full: int) -> int:
    """`full` under `make stress`, else `small`."""
    return full if STRESS else small


def machine() -> str:
    """'<CPU model>, N cores (nproc)': the machine a figure was measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (nproc)"


def record(prop: str, tried: str, times: int | str, held: str, did_not_hold: str = "—",
           test: str = "") -> None:
    """Append one row of figures to the results file (a no-op outside `make stress`)."""
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    row = {"property": prop, "tried": tried, "times": str(times), "held": held,
           "did_not_hold": did_not_hold, "test": test or os.environ.get("PYTEST_CURRENT_TEST", ""),
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(),
           "size": "full" if STRESS else "small"}
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
