"""`python -m tests.stress.table [RESULTS] [--write]`: RELIABILITY.md rows from a stress results
file (default: the newest in tests/stress/results). Prints the rows; `--write` replaces the rows
of RELIABILITY.md whose property matches and appends the others at the end of its table, leaving
every other row as it is."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.stress import RESULTS_DIR

RELIABILITY = Path(__file__).resolve().parents[2] / "RELIABILITY.md"


def rows(results: Path) -> dict[str, str]:
    """One Markdown row per property; a later record of a property replaces an earlier one."""
    out: dict[str, str] = {}
    for line in results.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        cells = [r["property"], r["tried"], r["times"], r["held"],
                 f"{r['did_not_hold']} ({r['date']}, {r['machine']}, {r['size']} size)"]
        out[r["property"]] = "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return out


def write(new: dict[str, str], path: Path = RELIABILITY) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    left = dict(new)
    last = 0
    for i, line in enumerate(lines):
        if line.startswith("| "):
            last = i
            prop = line[2:].split(" | ", 1)[0]
            if prop in left:
                lines[i] = left.pop(prop)
    lines[last + 1:last + 1] = list(left.values())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    named = [a for a in argv if not a.startswith("--")]
    results = Path(named[0]) if named else max(RESULTS_DIR.glob("*.jsonl"), default=None)
    if results is None:
        print(f"no results in {RESULTS_DIR}: run `make stress` first", file=sys.stderr)
        return 2
    new = rows(results)
    print("\n".join(new.values()))
    if "--write" in argv:
        write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
