"""Plain text of unknown layout: the whole file is one record.

The title is the first non-empty line when it is short enough to be a title (markdown marks
removed); otherwise the first words of the text followed by "…". The text is the file as it is,
trimmed. It does not try to find structure (sections, authors, references) in the text.
"""

from __future__ import annotations

from rag.models import Paper
from rag.parsers.common import Draft, finish, plain

_MAX_TITLE = 150
_TITLE_WORDS = 12


def detect(text: str) -> bool:
    return bool(text.strip())


def parse(text: str, source: str) -> list[Paper]:
    body = text.strip()
    if not body:
        return []
    return finish([Draft(title=title_from(body), text=body, kind="document")], source)


def title_from(text: str) -> str:
    first = next((plain(line) for line in text.split("\n") if plain(line)), "")
    if len(first) <= _MAX_TITLE:
        return first
    words = first.split()
    return " ".join(words[:_TITLE_WORDS]) + "…"
