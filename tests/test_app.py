"""The Gradio app: rendering and launch options (fast), then the running app over real HTTP
with gradio_client (slow): ask, follow-up, filters, summary, upload then ask."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import app_fixtures
import pytest
from gradio_client import Client, handle_file

from rag.errors import ConfigError
from rag.models import Answer, Chunk, Hit, Paper
from rag.render import (
    answer_json,
    link_citations,
    plain_text,
    render_sources,
    safe_markdown,
    to_turns,
)
from rag.server import auth_pairs, blocked_paths, settings_from_args
from rag.settings import Settings

app_settings = app_fixtures.app_settings
app_server = app_fixtures.app_server
client = app_fixtures.client


def _hit(title: str, text: str, score: float = 0.5, url: str | None = None, **kw: Any) -> Hit:
    paper = Paper(id=title[:8], title=title, source="x.md", text=text, url=url, **kw)
    return Hit(chunk=Chunk(id=title[:6], paper=paper, index=0, text=text), score=score)


# --- rendering ------------------------------------------------------------------------------------
def test_safe_markdown_turns_images_into_links_and_escapes_html() -> None:
    md = safe_markdown("see ![chart](http://127.0.0.1:9/leak) <img src=x onerror=alert(1)> "
                       "![r][ref] [ok](https://a.org) [bad](javascript:alert(1))")
    assert "![" not in md.replace("!\\[", "")
    assert "[image: chart](http://127.0.0.1:9/leak)" in md
    assert "<img" not in md and "&lt;img" in md
    assert "[ok](https://a.org)" in md
    assert "javascript:" not in md and "bad" in md


def test_citations_link_to_sources_and_round_trip() -> None:
    md = link_citations(safe_markdown("DeBERTa uses two vectors [1]. Also [3] and [9]."), 3)
    assert "[[1]](#src-1)" in md and "[[3]](#src-3)" in md
    assert "[9]" in md and "#src-9" not in md  # no such source: left as text
    assert plain_text(md) == "DeBERTa uses two vectors [1]. Also [3] and [9]."
    parts = [{"type": "text", "text": "a &lt;b&gt; [[2]](#src-2)"}]
    assert to_turns([{"role": "assistant", "content": parts}]) == [
        {"role": "assistant", "content": "a <b> [2]"}]


def test_sources_panel_escapes_documents_and_highlights_used_sentences() -> None:
    evil = _hit("<script>alert(1)</script> Paper", "Quokkas route tokens to seven blocks. "
                "![x](http://127.0.0.1:9/leak) <img src=http://127.0.0.1:9/leak2> Other text here.",
                score=0.8, url="javascript:alert(1)", authors=("A. Author",), venue="ICLR",
                year=2021)
    plain = _hit("Second paper", "Marsupial routers are trained with a load loss.", 0.4,
                 url="https://openreview.net/forum?id=1")
    answer = Answer(question="How do quokkas route tokens?",
                    text="Quokkas route tokens to seven blocks [1].", sources=[evil, plain],
                    citations=[1])
    out = render_sources(answer)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<img" not in out and "javascript:" not in out
    assert "id='src-1'" in out and "id='src-2'" in out
    assert "<mark class='used'>Quokkas route tokens to seven blocks. </mark>" in out
    assert "href='https://openreview.net/forum?id=1'" in out and "rel='noopener" in out
    assert "ICLR 2021" in out and "relevance 0.800" in out
    assert out.index("id='src-1'") < out.index("not cited")  # uncited source folded below


def test_sources_panel_marks_query_terms_when_no_sentence_was_used() -> None:
    answer = Answer(question="What is marsupial routing?", text="Nothing found.",
                    sources=[_hit("P", "Marsupial routers are trained with a load loss.")],
                    abstained=True)
    assert "<mark class='term'>Marsupial</mark>" in render_sources(answer)


def test_answer_json_has_the_documented_fields() -> None:
    answer = Answer(question="q", text="It works [1].", citations=[1],
                    sources=[_hit("T", "It works.", 0.25, url="https://x.org", authors=("A",),
                                  venue="NeurIPS", year=2020)])
    data = answer_json(answer)
    assert data["answer"] == "It works [1]." and data["abstained"] is False
    src = data["sources"][0]
    assert {"n", "title", "authors", "venue", "year", "url", "text", "score"} <= set(src)
    assert (src["n"], src["title"], src["authors"], src["year"], src["score"]) == (
        1, "T", ["A"], 2020, 0.25)


# --- launch options -------------------------------------------------------------------------------
def test_flags_override_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_PORT", "9000")
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "5")
    s = settings_from_args(["--host", "0.0.0.0", "--share", "--auth", "u:p", "--max-upload-mb",
                            "3"])
    assert (s.host, s.port, s.share, s.auth, s.max_upload_mb) == ("0.0.0.0", 9000, True, "u:p", 3)
    assert settings_from_args([]).share is False


def test_auth_pairs_from_flag_and_file(tmp_path: Path) -> None:
    f = tmp_path / "users.txt"
    f.write_text("# logins\nann:secret:with:colons\n\nbob:pw\n")
    s = Settings(data_dir=tmp_path, auth="root:toor", auth_file=f)
    assert auth_pairs(s) == [("root", "toor"), ("ann", "secret:with:colons"), ("bob", "pw")]
    assert auth_pairs(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ConfigError, match="user:password"):
        auth_pairs(Settings(data_dir=tmp_path, auth="nopassword"))
    f.write_text("ok:1\nbroken\n")
    with pytest.raises(ConfigError, match="line 2"):
        auth_pairs(Settings(data_dir=tmp_path, auth_file=f))
    with pytest.raises(ConfigError, match="cannot read"):
        auth_pairs(Settings(data_dir=tmp_path, auth_file=tmp_path / "missing"))


def test_blocked_paths_cover_store_project_and_environment(tmp_path: Path) -> None:
    blocked = blocked_paths(Settings(data_dir=tmp_path / "store"))
    assert str((tmp_path / "store").resolve()) in blocked
    assert str(Path(sys.prefix).resolve()) in blocked  # site-packages, hence the GGUF models
    assert str(Path(__file__).resolve().parent.parent) in blocked


def test_llamacpp_is_queued_one_at_a_time_and_the_rest_concurrently(tmp_path: Path) -> None:
    from rag.chain import Pipeline
    from rag.ui import build_demo

    demo = build_demo(Pipeline(Settings(data_dir=tmp_path)), warm_up=False)
    fns = {f.api_name: f for f in demo.fns.values()}
    local = [f for f in fns.values() if f.concurrency_id == "llamacpp"]
    assert len(local) == 1 and local[0].concurrency_limit == 1 and local[0].fn.__name__ == "respond"
    fast = [f for f in fns.values() if f.fn is not None and f.fn.__name__ == "respond"
            and f.concurrency_id != "llamacpp"]
    assert len(fast) == 1 and fast[0].concurrency_limit == "default"
    assert demo._queue.default_concurrency_limit > 1
    assert {"ask", "summarise", "papers", "upload"} <= set(fns)


# --- the running app over HTTP --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.server
def test_ask_returns_a_cited_answer(client: Client) -> None:
    data = client.predict("What is DeBERTa?", api_name="/ask")
    assert not data["abstained"]
    assert "DeBERTa" in data["answer"] and re.search(r"\[\d\]", data["answer"])
    assert data["sources"] and data["sources"][0]["n"] == 1
    assert any("deberta" in s["title"].lower() for s in data["sources"])
    assert all(isinstance(s["score"], float) and s["text"] for s in data["sources"])


@pytest.mark.slow
@pytest.mark.server
def test_follow_up_uses_the_history(client: Client) -> None:
    first = client.predict("What is DeBERTa?", api_name="/ask")
    history = [{"role": "user", "content": "What is DeBERTa?"},
               {"role": "assistant", "content": first["answer"]}]
    alone = client.predict("Who are its authors?", api_name="/ask")
    follow = client.predict("Who are its authors?", history, api_name="/ask")
    assert "deberta" in follow["sources"][0]["title"].lower()
    assert follow["sources"] != alone["sources"]


@pytest.mark.slow
@pytest.mark.server
def test_filters_restrict_the_sources(client: Client) -> None:
    data = client.predict("papers about optimization", None, None,
                          {"venue": "NeurIPS", "year": 2020}, 4, api_name="/ask")
    assert data["sources"] and len(data["sources"]) <= 4
    assert {(s["venue"], s["year"]) for s in data["sources"]} == {("NeurIPS", 2020)}
    by_author = client.predict("What is this paper about?", None, None,
                               {"author": "Pengcheng He"}, api_name="/ask")
    assert all("Pengcheng He" in s["authors"] for s in by_author["sources"])
    with pytest.raises(Exception, match="unknown filter"):
        client.predict("q", None, None, {"colour": "red"}, api_name="/ask")


@pytest.mark.slow
@pytest.mark.server
def test_summary_of_a_library_paper(client: Client) -> None:
    papers = client.predict(api_name="/papers")
    deberta = next(p for p in papers if "deberta" in p["title"].lower())
    data = client.predict(deberta["id"], api_name="/summarise")
    assert deberta["title"] in data["answer"] and not data["abstained"]
    assert {s["title"] for s in data["sources"]} == {deberta["title"]}
    assert any(n.startswith("read ") for n in data["notes"])


@pytest.mark.slow
@pytest.mark.server
def test_upload_then_ask_about_the_new_paper(client: Client, tmp_path: Path) -> None:
    doc = tmp_path / "quokka-attention.md"
    doc.write_text(app_fixtures.UPLOAD_DOC)
    status, table, *_ = client.predict([handle_file(doc)], "quokka", api_name="/upload")
    assert "Added **1 paper**" in status
    assert [row[0] for row in table["data"]] == ["Quokka Attention: Sparse Marsupial Transformers"]
    data = client.predict("How many key blocks does quokka attention route each query to?",
                          api_name="/ask")
    assert "Quokka" in data["sources"][0]["title"] and "seven" in data["answer"]


@pytest.mark.slow
@pytest.mark.server
def test_upload_limits_have_clear_messages(client: Client, app_server: Any,
                                           tmp_path: Path) -> None:
    wrong = tmp_path / "notes.docx"
    wrong.write_text("not allowed")
    with pytest.raises(Exception, match=r"\.pdf.*\.md.*\.markdown.*\.txt.*\.text"):
        client.predict([handle_file(wrong)], "", api_name="/upload")
    big = tmp_path / "big.txt"
    big.write_text("word " * int(0.5 * 1024 * 1024 * app_server.settings.max_upload_mb))
    with pytest.raises(Exception, match=r"(?i)size|large|limit"):
        client.predict([handle_file(big)], "", api_name="/upload")


@pytest.mark.slow
@pytest.mark.server
def test_unknown_backend_is_a_clear_error(client: Client) -> None:
    with pytest.raises(Exception, match=r"unknown backend 'nope'.*extractive"):
        client.predict("What is DeBERTa?", None, "nope", api_name="/ask")
