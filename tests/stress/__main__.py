"""`python -m tests.stress [pytest options]` (`make stress`): every test named in the TESTS list
of a module of this package, at full size (RAG_STRESS=1), with figures appended to
tests/stress/results/stress-<date>.jsonl. `python -m tests.stress.table --write` then rewrites
the matching rows of RELIABILITY.md."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import time

from tests import stress


def collect() -> list[str]:
    """TESTS of every module in this package (not `table`, not private ones), in name order."""
    tests: list[str] = []
    for found in sorted(pkgutil.iter_modules(stress.__path__), key=lambda m: m.name):
        if found.name.startswith("_") or found.name == "table":
            continue
        module = importlib.import_module(f"{stress.__name__}.{found.name}")
        tests += [t for t in getattr(module, "TESTS", []) if t not in tests]
    return tests


def main(argv: list[str]) -> int:
    stress.RESULTS_DIR.mkdir(exist_ok=True)
    results = stress.RESULTS_DIR / f"stress-{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
    env = {**os.environ, "RAG_STRESS": "1", stress.RESULTS_ENV: str(results)}
    tests = collect()
    print(f"stress: {len(tests)} test files at full size; figures -> {results}", flush=True)
    code = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "--timeout", "14400", *tests, *argv], env=env)
    print(f"stress: pytest exited {code}; RELIABILITY.md rows: "
          f"{sys.executable} -m tests.stress.table --write {results}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
