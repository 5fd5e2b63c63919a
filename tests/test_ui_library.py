"""The Library tab's rows: one column says how well each PDF was read."""

from __future__ import annotations

from rag.models import Paper, Section
from rag.ui import parse_report


def test_a_pdf_row_shows_pages_sections_and_warnings() -> None:
    paper = Paper(id="p", title="T", source="t.pdf", text="x", pages=12,
                  sections=(Section(0, "", "front"), Section(10, "Abstract", "abstract"),
                            Section(90, "1 Introduction", "body"),
                            Section(400, "References", "references")),
                  warnings=("no authors found on the first page",))
    assert parse_report(paper) == "12 pages, 3 sections; ⚠ no authors found on the first page"


def test_records_that_are_not_pdfs_show_nothing() -> None:
    assert parse_report(Paper(id="p", title="T", source="notes.md", text="x")) == ""
