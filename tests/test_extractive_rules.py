"""The extractive reader's text rules, on sentences written for this test (fast, no model):
what counts as a reported number, what opens a sentence without being part of it, how names and
phrases are looked up, and which sentences a summary considers."""

from __future__ import annotations

import pytest

from rag.extractive import _candidates, _Evidence, _has_number, _Sentence, clean
from rag.models import Chunk, Hit, Paper


@pytest.mark.parametrize(("sentence", "reports"), [
    ("We recruited a total of ten participants from two towns.", True),
    ("The gauge reads 4.2 m at high tide.", True),
    ("Tides were modelled before (Smith et al., 2019).", False),  # a citation's year
    ("The survey tool (Grobid, 2008–2023) reads the scans.", False),
    ("One of the ports was closed.", False),  # "one" as a pronoun
])
def test_a_reported_number_is_not_a_citation_year(sentence: str, reports: bool) -> None:
    assert _has_number(sentence) is reports


def test_enumerators_and_footnote_marks_do_not_open_a_sentence() -> None:
    assert clean("(2) We used a tide model.") == "We used a tide model."
    assert clean("ii) The gauges drift.") == "The gauges drift."
    assert clean("4 Most research needs Python.") == "Most research needs Python."
    assert clean("10 ports were surveyed.") == "10 ports were surveyed."  # a count stays


def test_names_and_phrases_are_looked_up_as_a_reader_would() -> None:
    ev = _Evidence("We parse LaTeX sources and tidal resonance records of harbours.")
    assert ev.has("LaTeX-derived")  # the capitalised name, not its description
    assert ev.has_phrase("tidal resonance") and ev.has_phrase("records")
    assert not ev.has_phrase("resonance tidal")  # a phrase's words in a row


def _hit(i: int, section: str, kind: str) -> Hit:
    paper = Paper(id="p", title="Tides", source="t.pdf", text="")
    return Hit(chunk=Chunk(id=f"c{i}", paper=paper, text="", index=i, section=section,
                           section_kind=kind), score=1.0)


def test_a_summary_considers_each_sentence_once_abstract_and_conclusion_first(monkeypatch) -> None:
    import rag.extractive as extractive

    monkeypatch.setattr(extractive, "SUMMARY_CANDIDATES", 3)
    passages = [_hit(0, "1 Introduction", "body"), _hit(1, "Abstract", "abstract"),
                _hit(2, "6 Conclusion", "body")]
    sents = [_Sentence("Intro one.", 1, 0), _Sentence("Intro two.", 1, 1),
             _Sentence("Abstract one.", 2, 0), _Sentence("Abstract one.", 2, 0),
             _Sentence("Conclusion one.", 3, 0)]
    got = [s.text for s in _candidates(sents, passages)]
    assert got == ["Abstract one.", "Conclusion one.", "Intro one."]
