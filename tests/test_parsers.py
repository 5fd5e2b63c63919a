"""Parsers: the five shipped documents parse into the records we expect, every gold title of the
dev questions is a parsed title, PDFs give title/authors/pages, and bad files are refused with a
message that names them.

The shipped documents live in corpus/ (copies of shared/corpus/*); small inputs live in
tests/stub_data/; bad inputs are written to tmp_path by each test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from rag.errors import DocumentError
from rag.models import Paper, stable_id
from rag.parsers import (
    FORMATS,
    PARSER_VERSION,
    SUPPORTED_SUFFIXES,
    detect_format,
    iclr2019_search,
    iclr2020_notes,
    iclr2021_list,
    markdown,
    neurips2019_blog,
    neurips2020_list,
    parse_file,
    parse_text,
    text,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
STUB = Path(__file__).resolve().parent / "stub_data"
PDFS = STUB / "pdfs"

# shared/eval names the documents by their original file names
GOLD_FILES = {
    "000": "iclr2020-blog-notes.txt",
    "001": "neurips2019-blog.txt",
    "002": "iclr2021-papers.md",
    "003": "iclr2019-search-relu-networks.md",
    "004": "neurips2020-papers.md",
}

# (file, records, parser): records include the one "Introduction" record of each blog
EXPECTED = [
    ("iclr2021-papers.md", 200, iclr2021_list),
    ("iclr2019-search-relu-networks.md", 53, iclr2019_search),
    ("iclr2020-blog-notes.txt", 29, iclr2020_notes),  # 28 papers + introduction
    ("neurips2019-blog.txt", 79, neurips2019_blog),  # 78 talks + introduction
    ("neurips2020-papers.md", 44, neurips2020_list),  # 2 tutorials + 42 papers
]


def fold(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def title_match(gold: str, got: str) -> bool:
    """The rule of shared/eval/score.py: the title holds the gold one, or is most of it."""
    g, h = fold(gold), fold(got)
    return bool(g) and bool(h) and (g in h or (h in g and len(h) >= 0.6 * len(g)))


_CACHE: dict[str, list[Paper]] = {}


def papers(name: str) -> list[Paper]:
    if name not in _CACHE:
        _CACHE[name] = parse_file(CORPUS / name)
    return _CACHE[name]


def by_title(name: str) -> dict[str, Paper]:
    return {p.title: p for p in papers(name)}


# --- the package surface --------------------------------------------------------------------


def test_public_names_are_pinned():
    import rag.parsers as pkg

    assert sorted(pkg.__all__) == sorted(["FORMATS", "PARSER_VERSION", "SUPPORTED_SUFFIXES",
                                          "ParseLimits", "detect_format", "parse_file",
                                          "parse_text"])
    assert PARSER_VERSION == "4"  # 4: a PDF's arXiv stamp gives the paper's URL
    assert SUPPORTED_SUFFIXES == (".md", ".markdown", ".txt", ".text", ".pdf")
    assert FORMATS[-2:] == (markdown, text), "generic formats must be tried last"


# --- the five shipped documents ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "count", "parser"), EXPECTED)
def test_shipped_document_count_and_parser(name, count, parser):
    assert detect_format((CORPUS / name).read_text(encoding="utf-8")) is parser
    assert len(papers(name)) == count


@pytest.mark.parametrize(("name", "count", "parser"), EXPECTED)
def test_parser_is_chosen_by_content_not_by_name(tmp_path, name, count, parser):
    renamed = tmp_path / "renamed.text"
    shutil.copy(CORPUS / name, renamed)
    got = parse_file(renamed)
    assert len(got) == count
    assert {p.source for p in got} == {"renamed.text"}


@pytest.mark.parametrize(("name", "count", "parser"), EXPECTED)
def test_records_are_well_formed(name, count, parser):
    got = papers(name)
    assert all(p.text.strip() for p in got), "no record may have empty text"
    assert all(p.source == name for p in got)
    assert len({p.id for p in got}) == len(got), "ids must be unique within a file"
    assert all(p.title and p.title == p.title.strip() for p in got)
    assert not [p.title for p in got if re.search(r"\*\*|^#|\]\(|`", p.title)], "markdown left"
    assert all(p.venue and p.year for p in got)


def test_ids_are_stable_and_disambiguate_duplicate_titles():
    got = papers("iclr2019-search-relu-networks.md")
    dup = "How Training Data Affect the Accuracy and Robustness of Neural Networks for Image Classification"
    same = [p for p in got if p.title == dup]
    assert len(same) == 3
    assert [p.id for p in same] == [
        stable_id("iclr2019-search-relu-networks.md", dup, str(i)) for i in range(3)
    ]
    again = parse_file(CORPUS / "iclr2019-search-relu-networks.md")
    assert [p.id for p in again] == [p.id for p in got]


def test_iclr2021_list():
    got = papers("iclr2021-papers.md")
    first = got[0]
    assert first.title == "Deberta: decoding-Enhanced Bert with Disentangled Attention"
    assert first.authors[:2] == ("Pengcheng He", "Xiaodong Liu")
    assert (first.venue, first.year) == ("ICLR", 2021)
    assert first.url == "https://openreview.net/forum?id=XPZIaotutsD"
    assert first.text.startswith("Authors: Pengcheng He, ")
    assert "disentangled attention mechanism" in first.text
    assert "Go to the next page" not in got[-1].text, "page navigation is not part of a paper"
    assert all(p.url and p.url.startswith("https://openreview.net/") for p in got)


def test_iclr2019_search():
    got = papers("iclr2019-search-relu-networks.md")
    text = (CORPUS / "iclr2019-search-relu-networks.md").read_text(encoding="utf-8")
    assert iclr2019_search.expected_count(text) == len(got) == 53
    first = got[0]
    assert first.title == "Bayesian Convolutional Neural Networks with Many Channels are Gaussian Processes"
    assert first.tldr == "Finite-width SGD trained CNNs vs. infinitely wide fully Bayesian CNNs. Who wins?"
    assert first.text.startswith("TL;DR: Finite-width")
    assert (first.venue, first.year, first.authors) == ("ICLR", 2019, ())
    walk = by_title("iclr2019-search-relu-networks.md")[
        "A Walk with SGD: How SGD Explores Regions of Deep Network Loss?"]
    assert walk.tldr is None and "(Show abstract)" not in walk.text
    assert "mini-batch SGD rarely crosses barriers" in walk.text
    assert sum(p.tldr is not None for p in got) == 53 - text.count("No tl;dr")


def test_iclr2020_notes():
    got = papers("iclr2020-blog-notes.txt")
    intro, rest = got[0], got[1:]
    assert (intro.kind, intro.title) == ("document", "Introduction")
    assert "- Anomaly Detection" in intro.text, "the table of contents stays with the intro"
    assert all(p.kind == "paper" and (p.venue, p.year) == ("ICLR", 2020) for p in rest)
    per_topic = Counter(p.section for p in rest)
    assert per_topic == {
        "Anomaly Detection": 2, "Generative Models": 2, "Gradient Estimation": 2,
        "Pooling and Set Functions": 3, "Representation Learning": 4, "Seq2Seq models": 3,
        "Understanding Deep Learning": 7,
        "Other Normalizing Flows, Robustness, MetaLearning, Probabilistic Modelling": 5,
    }
    notes = by_title("iclr2020-blog-notes.txt")
    ebm = notes["Your classifier is secretly an energy based model and you should treat it like one"]
    assert ebm.section == "Generative Models" and "energy based model" in ebm.text
    assert "Russian roulette" in notes[
        "SUMO: Unbiased Estimation of Log Marginal Probability for Latent Variable Models"].text
    assert notes["Are Transformers universal approximators of sequencetosequence functions?"
                 ].text.startswith("TLDR: Yes.")


def test_neurips2019_blog():
    got = papers("neurips2019-blog.txt")
    intro = got[0]
    assert (intro.kind, intro.title) == ("document", "Introduction")
    assert intro.text.startswith("Vincent Zoonekynd's Blog")
    assert "commented reading list" in intro.text
    assert all((p.venue, p.year) == ("NeurIPS", 2019) for p in got)
    talks = by_title("neurips2019-blog.txt")
    deq = talks["Deep equilibrium models"]
    assert (deq.authors, deq.section) == (("S. Bai",), "Infinitely deep neural nets")
    assert "fixed point" in deq.text and deq.text.endswith("S. Bai et al.")
    assert talks["Weight-agnostic neural networks"].authors == ("A. Gaier", "D. Ha")
    assert talks["Estimation of the Lipschitz constant of deep neural networks"].authors == (
        "M. Fazlyab",)
    assert "Adam is actually a diagonal approximation" in talks[
        "K-FAC: extensions, improvements and applications"].text
    assert "industry classifications" in talks[
        "Fast structure learning with modular regularization"].text
    gait = talks["GAIT: a geometric approach to information theory"]
    assert gait.section == "Geometric approach to information theory"
    shared = talks["Neural tangents: fast and easy infinite neural networks in Python"]
    assert shared.text.startswith("Infinitely wide neural nets"), "heading given as context"
    assert "posted at:" not in got[-1].text


def test_neurips2020_list():
    got = papers("neurips2020-papers.md")
    items = by_title("neurips2020-papers.md")
    tutorials = [p for p in got if p.kind == "tutorial"]
    assert [p.title for p in tutorials] == [
        "There and Back Again: A Tale of Slopes and Expectations", "Equivariant Networks"]
    assert all(p.section == "Tutorials" and p.url for p in tutorials)
    assert "graphical models" in tutorials[0].text
    l2 = items["On the training dynamics of deep networks with L2 regularization"]
    assert l2.authors == ("Aitor Lewkowycz", "Guy Gur-Ari")
    assert (l2.url, l2.section) == ("https://arxiv.org/abs/2006.08643", "Oral")
    assert (l2.venue, l2.year) == ("NeurIPS", 2020)
    assert items["Convex optimization based on global lower second-order models"].authors == (
        "Nikita Doikov", "Yurii Nesterov")
    md_link = items["Is normalization indispensable for training deep neural networks?"]
    assert md_link.url and md_link.url.endswith("-Paper.pdf")
    assert md_link.authors[0] == "Jie Shao"
    gans = items["Training Generative Adversarial Networks with Limited Data"]
    assert gans.authors[0] == "Tero Karras" and "Jaakko Lehtinen" in gans.authors
    assert items["GAIT-prop: A biologically plausible learning rule derived from "
                 "backpropagation of error"].section == "Spotlight"
    assert "SIREN" in items["Implicit Neural Representations with Periodic Activation Functions"].text
    nested = items["What Do Neural Networks Learn When Trained With Random Labels?"]
    assert "Olivier Bousquet" in nested.authors and not any("(" in a for a in nested.authors)
    assert Counter(p.section for p in got) == {"Tutorials": 2, "Oral": 12, "Spotlight": 10,
                                               "Other papers": 20}
    assert not any(re.fullmatch(r"[\d:– CST]+", line) for p in got for line in p.text.split("\n"))


# --- the gold titles of the dev questions -----------------------------------------------------


def gold_pairs() -> list[tuple[str, str]]:
    """(file, title) of every dev-question source; the live question file when present."""
    for path in (ROOT / "eval" / "dev.jsonl", Path("/work/shared/eval/dev.jsonl")):
        if path.is_file():
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
            return sorted({(s["file"], s["title"]) for r in rows for s in r.get("sources", [])})
    rows = json.loads((STUB / "dev_gold_titles.json").read_text(encoding="utf-8"))
    return sorted({(r["file"], r["title"]) for r in rows})


def test_every_gold_title_is_a_parsed_title_of_its_file():
    pairs = gold_pairs()
    assert len(pairs) >= 79, "the dev set names at least 79 gold papers"
    missing = []
    for gold_file, title in pairs:
        name = GOLD_FILES[gold_file[:3]]
        if not any(title_match(title, p.title) for p in papers(name)):
            missing.append((name, title))
    assert not missing


# --- blogs: every paragraph lands in exactly one record ---------------------------------------


def _blog_lines(name: str) -> list[str]:
    lines = (CORPUS / name).read_text(encoding="utf-8").split("\n")
    return [fold(x) for x in lines if x.strip() and not x.startswith("posted at:")]


@pytest.mark.parametrize("name", ["iclr2020-blog-notes.txt", "neurips2019-blog.txt"])
def test_blog_records_cover_every_line(name):
    """Each line is in some record's text, or is a record's title or section (a heading)."""
    joined = "\n".join(fold(p.text) for p in papers(name))
    headings = {fold(p.title) for p in papers(name)} | {fold(p.section or "") for p in papers(name)}
    lost = [line for line in _blog_lines(name) if line not in joined and line not in headings]
    assert not lost


@pytest.mark.parametrize("name", ["iclr2020-blog-notes.txt", "neurips2019-blog.txt"])
def test_blog_paragraphs_are_not_duplicated(name):
    texts = [fold(p.text) for p in papers(name)]
    titles = {fold(p.title) for p in papers(name)}
    paragraphs = [line for line in _blog_lines(name) if len(line) >= 80 and line not in titles]
    repeated = [x for x in paragraphs if sum(x in t for t in texts) != 1]
    assert not repeated


# --- PDFs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "title", "first_author", "pages"), [
    ("sample-sigconf.pdf", "The Name of the Title Is Hope", "Ben Trovato", 6),
    ("elstest-5p.pdf", "This is a specimen", "Jos Migchielsen", 4),
    ("shortsample.pdf", "Sample APA-Style Document Using the apa7 Package", "Daniel A. Weiss", 2),
])
def test_pdf_title_authors_and_pages(name, title, first_author, pages):
    [paper] = parse_file(PDFS / name)
    assert paper.title.startswith(title)
    assert paper.authors[0] == first_author
    assert paper.source == name and paper.kind == "paper"
    assert len(paper.page_starts) == pages and paper.page_starts[0] == 0
    assert list(paper.page_starts) == sorted(paper.page_starts)
    assert paper.page_at(paper.page_starts[-1]) == pages
    assert "ﬁ" not in paper.text and "ﬀ" not in paper.text, "ligatures are spelled out"


def test_pdf_authors_skip_affiliations_and_marks():
    [acm] = parse_file(PDFS / "sample-sigconf.pdf")
    assert acm.authors == ("Ben Trovato", "G.K.M. Tobin", "Lars Thørväld", "Valerie Béranger",
                           "Aparna Patel", "Huifen Chan", "Charles Palmer", "John Smith",
                           "Julius P. Kumquat")
    [els] = parse_file(PDFS / "elstest-5p.pdf")
    assert els.authors == ("Jos Migchielsen", "CV Radhakrishnan", "CV Rajagopal")
    assert "⋆" not in els.title


def test_pdf_is_recognised_by_content_whatever_its_name(tmp_path):
    renamed = tmp_path / "paper.txt"
    shutil.copy(PDFS / "shortsample.pdf", renamed)
    [paper] = parse_file(renamed)
    assert paper.title == "Sample APA-Style Document Using the apa7 Package"


# --- generic Markdown and text -----------------------------------------------------------------


def test_markdown_collection_splits_by_heading():
    got = parse_file(STUB / "collection.md")
    assert detect_format((STUB / "collection.md").read_text(encoding="utf-8")) is markdown
    assert [p.title for p in got] == [
        "My reading list", "Attention Is All You Need",
        "Deep Residual Learning for Image Recognition", "Adam: A Method for Stochastic Optimization",
    ]
    intro, attention, resnet, adam = got
    assert intro.kind == "document"
    assert attention.authors == ("Ashish Vaswani", "Noam Shazeer", "Niki Parmar")
    assert (attention.venue, attention.year) == ("NeurIPS", 2017)
    assert resnet.url == "https://arxiv.org/abs/1512.03385"
    assert adam.url == "https://arxiv.org/abs/1412.6980"
    assert adam.tldr == "adaptive moment estimation for stochastic gradients."
    assert "# not a heading" in adam.text, "code blocks are not split on"


def test_markdown_single_document_is_one_record():
    [doc] = parse_file(STUB / "single_doc.md")
    assert doc.title == "Notes on Retrieval-Augmented Generation"
    assert doc.kind == "document"
    assert "## How to evaluate" in doc.text and "Parametric memory" in doc.text


def test_plain_text_is_one_record_titled_by_its_first_line():
    [doc] = parse_file(STUB / "notes.txt")
    assert detect_format((STUB / "notes.txt").read_text(encoding="utf-8")) is text
    assert doc.title == "Reading group notes, week 12"
    assert "diffusion models" in doc.text


def test_long_first_line_gives_a_shortened_title():
    [doc] = parse_text("word " * 100, "long.txt")
    assert doc.title == " ".join(["word"] * 12) + "…"


def test_bom_and_windows_line_endings(tmp_path):
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf# Title with BOM\r\n\r\nBody line.\r\n")
    [doc] = parse_file(path)
    assert doc.title == "Title with BOM"
    assert "\r" not in doc.text


# --- bad input --------------------------------------------------------------------------------


def _refused(path: Path, *fragments: str, **kwargs: int) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        parse_file(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, "the message names the file"
    for fragment in fragments:
        assert fragment in info.value.reason
    return info.value


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.md", "no such file")


def test_directory(tmp_path):
    _refused(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_whitespace_only_file(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n  \n", encoding="utf-8")
    _refused(path, "white space")


def test_binary_file(tmp_path):
    path = tmp_path / "random.md"
    path.write_bytes(os.urandom(256) + b"\x00" + os.urandom(256))
    _refused(path, "binary")


def test_control_characters_without_nul(tmp_path):
    path = tmp_path / "controls.txt"
    path.write_bytes(bytes(range(1, 9)) * 50)
    _refused(path, "binary")


def test_latin1_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Résumé of a café paper\n".encode("latin-1"))
    _refused(path, "not UTF-8", "0xe9", "re-save it as UTF-8")


def test_utf16_file(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("Some notes".encode("utf-16"))
    _refused(path, "UTF-16", "UTF-8")


def test_oversize_file(tmp_path):
    path = tmp_path / "big.md"
    path.write_text("# Big\n\n" + "x" * 5000, encoding="utf-8")
    _refused(path, "over the", "RAG_MAX_FILE_MB", "1000 bytes", max_bytes=1000)
    assert parse_file(path, max_bytes=10_000)


def test_truncated_pdf(tmp_path):
    path = tmp_path / "cut.pdf"
    path.write_bytes((PDFS / "shortsample.pdf").read_bytes()[:3000])
    _refused(path, "not a readable PDF")


def test_garbage_with_pdf_suffix(tmp_path):
    path = tmp_path / "fake.pdf"
    path.write_text("this is not a PDF at all", encoding="utf-8")
    _refused(path, "not a readable PDF")


def test_pdf_without_text_layer(tmp_path):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=300, height=400)
    path = tmp_path / "scan.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    _refused(path, "no extractable text", "scanned")


# --- prose quality -------------------------------------------------------------------------------


def test_prose_score_prefers_sentences_over_math_and_tables():
    from rag.textquality import looks_garbled, prose_score

    prose = "We fine-tune the model on the training set and report accuracy on the test set."
    assert prose_score(prose) >= 0.8
    assert prose_score("The model reaches 84.6% accuracy, 2.1 points above BERT (2019).") >= 0.7
    assert prose_score("h t = σ ( W x t + U h t − 1 + b )") <= 0.2
    assert prose_score("0 1 0 0 1 1 0 1 0 1") <= 0.1
    assert prose_score("BERT 84.6 83.4 91.2 85.3 77.0") < 0.4
    assert prose_score("") == 0.0
    # markup is not debris: a sentence with a link or a tag scores as the prose it is
    linked = 'It reaches 77.7 accuracy <img src="http://127.0.0.1:9/x.png" onerror="f()">.'
    assert prose_score(linked) >= 0.6  # a short numbers sentence, like the one above
    assert prose_score("See ![chart](http://example.org/a.png) for the loss curve.") >= 0.8
    assert not looks_garbled(prose * 10)
    assert looks_garbled("∂∆ ⊗⊕ ¬∀ ∃∈ ∉∋ " * 20)
