"""`rag eval`: run questions through the app's own code path, dump results, score them.

The dump format and the metrics are exactly those of the project's scoring definition
(`shared/eval/score.py`): evidence@k, title@k, answer, answered, abstain, latency percentiles,
per question type. A test checks that this module and score.py give identical numbers on the
same dump. This module does not retrieve or answer by itself; it calls a `Responder`.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.models import Hit

PASSAGE_CHARS = 1500
ANSWER_CHARS = {"list": 2500, "summary": 2500}
ANSWER_CHARS_DEFAULT = 1000


@dataclass
class Response:
    """What a responder returns for one turn."""

    answer: str
    abstained: bool
    sources: list[Hit]
    ttft_s: float | None = None


# (question, history as Gradio messages) -> Response; the history holds earlier turns.
Responder = Callable[[str, list[dict[str, str]]], Response]


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def source_record(hit: Hit) -> dict[str, str]:
    return {"title": hit.paper.title, "source": hit.paper.source, "text": hit.chunk.text}


def run_questions(questions: Sequence[dict[str, Any]], respond: Responder) -> Iterator[dict[str, Any]]:
    """One result record per question; for follow-ups the last turn is the one scored."""
    for q in questions:
        turns = q["question"] if isinstance(q["question"], list) else [q["question"]]
        history: list[dict[str, str]] = []
        for turn in turns[:-1]:
            earlier = respond(turn, history)
            history += [{"role": "user", "content": turn},
                        {"role": "assistant", "content": earlier.answer}]
        started = time.perf_counter()
        r = respond(turns[-1], history)
        latency = time.perf_counter() - started
        yield {
            "id": q["id"], "answer": r.answer, "abstained": r.abstained,
            "latency_s": round(latency, 4),
            "ttft_s": None if r.ttft_s is None else round(r.ttft_s, 4),
            "sources": [source_record(h) for h in r.sources],
        }


# --- metrics: a faithful copy of score.py's definitions -------------------------------------------
def norm(s: str | None) -> str:
    return re.sub(r"\s+", " ", (s or "")).strip().lower()


def covers(text: str, groups: Sequence[Sequence[str]]) -> bool:
    t = norm(text)
    return all(any(norm(alt) in t for alt in group) for group in groups)


def title_match(gold: str, got: str) -> bool:
    g, h = norm(gold), norm(got)
    return bool(g) and bool(h) and (g in h or (h in g and len(h) >= 0.6 * len(g)))


def pct(xs: Sequence[float], p: float) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    return ys[min(len(ys) - 1, round(p / 100 * (len(ys) - 1)))]


def _mean(xs: Sequence[bool]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def score(questions: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """The same summary as `score.py --json`."""
    by_id = {r["id"]: r for r in results}
    rows: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    lat: list[float] = []
    ttft: list[float] = []
    missing: list[str] = []
    for q in questions:
        r = by_id.get(q["id"])
        if r is None:
            missing.append(q["id"])
            continue
        lat.append(r.get("latency_s", 0.0))
        if r.get("ttft_s") is not None:
            ttft.append(r["ttft_s"])
        top = r.get("sources", [])[:k]
        for key in ("all", q["type"]):
            _score_row(rows[key], q, r, top)
    table = {key: {m: _mean(v) for m, v in row.items()} | {"n": max(len(v) for v in row.values())}
             for key, row in rows.items()}
    overall = table.get("all", {})
    return {
        "questions": len(questions), "missing": missing, "k": k,
        f"evidence@{k}": overall.get("evidence"), f"title@{k}": overall.get("title"),
        "answer": overall.get("answer"), "answered": overall.get("answered"),
        "abstain": overall.get("abstain"),
        "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95),
        "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95),
        "by_type": {t: v for t, v in table.items() if t != "all"},
    }


def _score_row(row: dict[str, list[bool]], q: dict[str, Any], r: dict[str, Any],
               top: list[dict[str, Any]]) -> None:
    if q["type"] == "unanswerable":
        row["abstain"].append(bool(r.get("abstained")))
        return
    evidence = " \n".join((s.get("title") or "") + " \n" + (s.get("text") or "")[:PASSAGE_CHARS]
                          for s in top)
    row["evidence"].append(covers(evidence, q["must_contain"]))
    gold = [s["title"] for s in q.get("sources", [])]
    row["title"].append(any(title_match(g, s.get("title", "")) for g in gold for s in top))
    limit = ANSWER_CHARS.get(q["type"], ANSWER_CHARS_DEFAULT)
    row["answer"].append(covers((r.get("answer") or "")[:limit], q["must_contain"])
                         and not r.get("abstained"))
    row["answered"].append(not r.get("abstained"))


def format_summary(s: dict[str, Any]) -> str:
    """The same text score.py prints."""
    k = s["k"]
    lines = [f"{s['questions']} questions, {len(s['missing'])} missing from results"]
    for key in (f"evidence@{k}", f"title@{k}", "answer", "answered", "abstain",
                "latency_p50_s", "latency_p95_s", "ttft_p50_s", "ttft_p95_s"):
        v = s[key]
        lines.append(f"  {key:14s} {v if v is not None else '-'}")
    lines.append("  by type:")
    for t, v in sorted(s["by_type"].items()):
        lines.append(f"    {t:13s} " + "  ".join(f"{m}={x}" for m, x in v.items()))
    return "\n".join(lines)
