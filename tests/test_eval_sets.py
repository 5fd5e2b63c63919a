"""The project's own evaluation sets (eval/*.jsonl): well-formed, and every gold answer is really in
its source PDF.

`eval/real_papers.jsonl` asks questions over the eight real papers in shared/pdfs/real/. The
answer check extracts each PDF's text with pypdf and normalises it lightly (NFKC folds ligatures
such as "ﬁ", hyphenated line breaks are joined, white space is folded, case is ignored); every
must_contain group needs one alternative in that text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rag.settings import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"  # located as in tests/conftest.py
REAL_PDFS = SHARED / "pdfs" / "real"
REAL_SET = PROJECT_ROOT / "eval" / "real_papers.jsonl"

TYPES = {"fact", "which_paper", "authors", "summary", "list", "followup", "unanswerable"}
KEYS = ["id", "type", "question", "sources", "must_contain", "notes"]
# the least number of questions of each type, and in all
MIN_PER_TYPE = {"fact": 12, "which_paper": 6, "authors": 5, "summary": 5, "list": 3,
                "followup": 4, "unanswerable": 8}
MIN_QUESTIONS = 45


def load(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def normalise(text: str) -> str:
    """Light normalisation: ligatures and other compatibility forms folded (NFKC), words
    hyphenated across a line break joined, white space folded, lower case."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"-[ \t]*\n\s*", "", text)
    return re.sub(r"\s+", " ", text).strip().lower()


@cache
def pdf_pages(name: str) -> tuple[str, ...]:
    """The PDF's pages as pypdf extracts them, not yet normalised."""
    from pypdf import PdfReader

    return tuple(page.extract_text() or "" for page in PdfReader(REAL_PDFS / name).pages)


@cache
def pdf_text(name: str) -> str:
    return normalise("\n".join(pdf_pages(name)))


def check_format(q: dict[str, Any]) -> list[str]:
    """What is wrong with one question record (empty if nothing)."""
    problems = []
    if list(q) != KEYS:
        problems.append(f"keys {list(q)} are not {KEYS}")
        return problems
    if not isinstance(q["id"], str) or not re.fullmatch(r"r\d{3}", q["id"]):
        problems.append("id is not r001-style")
    if q["type"] not in TYPES:
        problems.append(f"unknown type {q['type']!r}")
    if q["type"] == "followup":
        if not (isinstance(q["question"], list) and len(q["question"]) == 2
                and all(isinstance(t, str) and t.strip() for t in q["question"])):
            problems.append("a followup question is a list of two non-empty turns")
    elif not (isinstance(q["question"], str) and q["question"].strip()):
        problems.append("question is not a non-empty string")
    if not isinstance(q["notes"], str) or not q["notes"].strip():
        problems.append("notes missing")
    sources, must = q["sources"], q["must_contain"]
    if not isinstance(sources, list) or not isinstance(must, list):
        problems.append("sources and must_contain are lists")
        return problems
    if q["type"] == "unanswerable":
        if sources or must:
            problems.append("unanswerable questions have empty sources and must_contain")
        return problems
    if not sources:
        problems.append("no sources")
    for s in sources:
        if not (isinstance(s, dict) and sorted(s) == ["file", "title"]
                and all(isinstance(v, str) and v.strip() for v in s.values())):
            problems.append(f"source {s!r} is not {{file, title}}")
    if not must:
        problems.append("no must_contain groups")
    for group in must:
        if not (isinstance(group, list) and group
                and all(isinstance(a, str) and a.strip() for a in group)):
            problems.append(f"group {group!r} is not a non-empty list of non-empty strings")
    if q["type"] == "summary" and len(must) < 2:
        problems.append("a summary needs at least two groups of key terms")
    if q["type"] == "list" and len({s["title"] for s in sources}) < 2:
        problems.append("a list question has at least two source papers")
    return problems


# --- eval/real_papers.jsonl -----------------------------------------------------------------------
REAL = load(REAL_SET)
ANSWERABLE = [q for q in REAL if q.get("type") != "unanswerable"]


def test_real_papers_every_line_is_well_formed() -> None:
    bad = {q.get("id", f"line {i}"): p for i, q in enumerate(REAL, 1) if (p := check_format(q))}
    assert bad == {}


def test_real_papers_ids_are_unique_and_in_order() -> None:
    assert [q["id"] for q in REAL] == [f"r{i:03d}" for i in range(1, len(REAL) + 1)]


def test_real_papers_counts_per_type() -> None:
    counts = Counter(q["type"] for q in REAL)
    assert len(REAL) >= MIN_QUESTIONS
    short = {t: (counts[t], n) for t, n in MIN_PER_TYPE.items() if counts[t] < n}
    assert short == {}, "type: (have, need)"


def test_real_papers_facts_cover_every_pdf() -> None:
    pdfs = {p.name for p in REAL_PDFS.glob("*.pdf")}
    assert len(pdfs) == 8
    facts = {s["file"] for q in REAL if q["type"] == "fact" for s in q["sources"]}
    assert facts == pdfs
    used = {s["file"] for q in ANSWERABLE for s in q["sources"]}
    assert used <= pdfs


def test_real_papers_titles_are_the_printed_titles() -> None:
    """One title per file, and it is printed on the paper (its first page's text)."""
    titles: dict[str, set[str]] = {}
    for q in ANSWERABLE:
        for s in q["sources"]:
            titles.setdefault(s["file"], set()).add(s["title"])
    assert {f: t for f, t in titles.items() if len(t) != 1} == {}
    missing = {f: t.pop() for f, t in titles.items()
               if normalise(next(iter(t))) not in normalise(pdf_pages(f)[0])}
    assert missing == {}


@pytest.mark.parametrize("q", ANSWERABLE, ids=[q["id"] for q in ANSWERABLE])
def test_real_papers_gold_answers_are_in_the_source_pdfs(q: dict[str, Any]) -> None:
    text = " ".join(pdf_text(s["file"]) for s in q["sources"])
    missing = [g for g in q["must_contain"] if not any(normalise(a) in text for a in g)]
    assert missing == [], f"{q['id']}: no alternative of these groups is in the PDF text"
