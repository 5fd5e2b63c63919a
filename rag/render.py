"""What the app shows, as safe HTML/Markdown: answers with clickable citations, the sources
panel with highlighted passages, and the JSON the /ask API returns.

Everything from a document or a model is escaped here: Markdown images become plain links and
only http(s)/mailto links survive, so an answer can never fetch a remote image or run HTML.
Pure functions of an `Answer`; no Gradio, no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from rag.lexical import tokenize
from rag.models import Answer, Hit

_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^\s)>]*)>?(?:\s+[^)]*)?\)")
_LINK = re.compile(r"\[((?:[^\[\]\n]|\[[^\]\n]*\])*)\]\(\s*<?([^\s)>]*)>?(?:\s+[^)]*)?\)")
_SAFE_URL = re.compile(r"^(https?://|mailto:|#src-\d+$)", re.I)
_CITE = re.compile(r"\[(\d{1,3})\]")
_CITE_LINK = re.compile(r"\[\[(\d{1,3})\]\]\(#src-\d+\)")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]{2,}")
# Display segments: every line, and every sentence end inside one ("0.9" does not end one). Finer
# than the chunker's splitter on purpose: a highlight must not run into markup or a heading.
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?]+(?=\s)|(?=\n)|$)\s*|\n+")


def safe_markdown(text: str) -> str:
    """Markdown that renders text but never HTML, images or script links.

    Images become ordinary links ("image: alt"), so nothing is fetched until someone clicks;
    links keep only http(s)/mailto targets; any other `![` is escaped, which also defuses
    reference-style images.
    """
    out = html.escape(text, quote=False)
    out = _IMAGE.sub(lambda m: (f"[image: {m[1] or 'untitled'}]({m[2]})"
                                if _SAFE_URL.match(m[2]) else f"(image: {m[1]})"), out)
    out = out.replace("![", "!\\[")
    return _LINK.sub(lambda m: m[0] if _SAFE_URL.match(m[2]) else m[1], out)


def link_citations(markdown: str, n_sources: int) -> str:
    """Turn [n] into a link to source n in the panel (the page script scrolls to it)."""
    def repl(m: re.Match[str]) -> str:
        n = int(m[1])
        return f"[[{n}]](#src-{n})" if 1 <= n <= n_sources else m[0]
    return _CITE.sub(repl, markdown)


def answer_markdown(answer: Answer) -> str:
    return link_citations(safe_markdown(answer.text), len(answer.sources))


def plain_text(content: Any) -> str:
    """A Chatbot message's text (string or list of parts) with the display markup undone."""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    elif isinstance(content, dict):
        content = content.get("text", "")
    text = _CITE_LINK.sub(r"[\1]", str(content or "")).replace("!\\[", "![")
    return html.unescape(text)


def to_turns(history: Sequence[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Gradio messages -> the pipeline's plain {"role", "content"} turns."""
    return [{"role": str(m.get("role")), "content": plain_text(m.get("content"))}
            for m in history or [] if m.get("role") in ("user", "assistant")]


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _cited_segments(answer: Answer) -> dict[int, list[str]]:
    """For each [n], the answer text that cites it (the words since the previous marker)."""
    segments: dict[int, list[str]] = {}
    last = 0
    for m in _CITE.finditer(answer.text):
        segments.setdefault(int(m[1]), []).append(answer.text[last:m.start()])
        if m.end() - last > 3:
            last = m.end()
    return segments


def _content_words(text: str) -> set[str]:
    """The words of `text` that name something: stop words (the index's own list) left out."""
    return {w for w in _words(text) if tokenize(w)}


def _mark_terms(text: str, terms: set[str]) -> str:
    if not terms:
        return html.escape(text)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(terms, key=len, reverse=True)))
                         + r")\b", re.I)
    parts = pattern.split(text)
    return "".join(f"<mark class='term'>{html.escape(p)}</mark>" if i % 2 else html.escape(p)
                   for i, p in enumerate(parts))


def highlight_passage(text: str, used: Sequence[str], terms: set[str]) -> str:
    """The passage as HTML: sentences the answer used in <mark class='used'>; when none was
    used, the query terms in <mark class='term'>."""
    text = re.sub(r"\n\s*\n\s*", "\n", text.strip())
    used_words = [_words(u) for u in used if u.strip()]
    out, marked = [], False
    for m in _SENTENCE.finditer(text):
        sentence = m.group()
        words = _words(sentence)
        if words and len(words) >= 3 and any(len(words & u) >= 0.6 * len(words)
                                             for u in used_words):
            out.append(f"<mark class='used'>{html.escape(sentence)}</mark>")
            marked = True
        else:
            out.append(sentence)
    if not marked:
        return _mark_terms(text, terms)
    return "".join(s if s.startswith("<mark class='used'>") else html.escape(s) for s in out)


def _source_card(n: int, hit: Hit, answer: Answer, top: float, used: list[str],
                 terms: set[str], cited: bool) -> str:
    paper = hit.paper
    title = html.escape(paper.title)
    if paper.url and re.match(r"^https?://", paper.url, re.I):
        title = (f"<a href='{html.escape(paper.url, quote=True)}' target='_blank' "
                 f"rel='noopener noreferrer nofollow'>{title}</a>")
    authors = list(paper.authors[:6]) + (["et al."] if len(paper.authors) > 6 else [])
    meta = [", ".join(authors), paper.venue_year,
            f"p. {hit.chunk.page}" if hit.chunk.page else "", paper.source]
    width = max(4, round(100 * hit.score / top)) if top > 0 else 0
    return (
        f"<details class='src-card{' cited' if cited else ''}' id='src-{n}'{' open' if cited else ''}>"
        f"<summary><span class='src-n'>{n}</span><span class='src-title'>{title}</span></summary>"
        f"<div class='src-meta'>{html.escape(' · '.join(x for x in meta if x))}</div>"
        f"<div class='src-score' title='fused retrieval score'><span class='bar'>"
        f"<span style='width:{width}%'></span></span>relevance {hit.score:.3f}</div>"
        f"<blockquote class='src-text'>{highlight_passage(hit.chunk.text, used, terms)}</blockquote>"
        "</details>")


_PANEL_TITLE = "<h2 class='panel-title'>Sources</h2>"
EMPTY_SOURCES = (f"<div class='src-panel'>{_PANEL_TITLE}<p class='src-empty'>Sources appear here. "
                 "Every answer cites passages from the library as <b>[1]</b>, <b>[2]</b>, …; "
                 "click a number in the answer to jump to its passage.</p></div>")


def render_sources(answer: Answer | None) -> str:
    """The sources panel: cited passages first (open), then the others read (folded)."""
    if answer is None or not answer.sources:
        return EMPTY_SOURCES
    segments = _cited_segments(answer)
    cited = (set(answer.citations) | set(segments)) & set(range(1, len(answer.sources) + 1))
    terms = _content_words(answer.standalone_question or answer.question)
    top = max(h.score for h in answer.sources)
    cards = {n: _source_card(n, h, answer, top, segments.get(n, []), terms, n in cited)
             for n, h in enumerate(answer.sources, 1)}
    head = [f"{len(cited)} cited of {len(answer.sources)} passages", answer.backend]
    if "total_s" in answer.timings:
        head.append(f"{answer.timings['total_s']:.2f} s")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in answer.notes)
    body = "".join(cards[n] for n in sorted(cited))
    rest = [cards[n] for n in cards if n not in cited]
    if rest:
        body += (f"<details class='src-more'{'' if cited else ' open'}><summary>"
                 f"{len(rest)} more passage{'s' if len(rest) > 1 else ''} read, not cited"
                 f"</summary>{''.join(rest)}</details>")
    return (f"<div class='src-panel'>{_PANEL_TITLE}"
            f"<div class='src-head'>{html.escape(' · '.join(head))}</div>"
            f"{f'<ul class=src-notes>{notes}</ul>' if notes else ''}{body}</div>")


def answer_json(answer: Answer) -> dict[str, Any]:
    """The `/ask` payload."""
    cited = set(answer.citations) | set(_cited_segments(answer))
    return {
        "answer": answer.text,
        "abstained": answer.abstained,
        "sources": [{"n": n, "title": h.paper.title, "authors": list(h.paper.authors),
                     "venue": h.paper.venue, "year": h.paper.year, "url": h.paper.url,
                     "page": h.chunk.page, "text": h.chunk.text, "score": round(h.score, 4),
                     "cited": n in cited} for n, h in enumerate(answer.sources, 1)],
        "backend": answer.backend,
        "notes": list(answer.notes),
        "timings": dict(answer.timings),
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- the app's state and handlers ----------------------------------------------------------------
