"""Follow-up questions made standalone, without asking a model to rewrite them.

"who wrote it?" after a question about DeBERTa must retrieve DeBERTa. Tiny local models rewrite
questions unreliably, so the standalone query is built deterministically: the follow-up, plus
the previous user turns' words, plus what the previous turns pinned down (a named paper, a venue
and year) when the follow-up names none of its own. This module does not retrieve or answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.query import QueryIntent, analyse

if TYPE_CHECKING:
    from rag.library import Library

Turn = dict[str, str]  # {"role": "user" | "assistant", "content": str}, Gradio's messages format

_ANAPHORA = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|he|she|his|her|the (paper|method|model|"
    r"approach|authors?|work|talk|same))\b",
    re.I,
)


@dataclass
class Standalone:
    """The question to retrieve with, and the intent carried over from the conversation."""

    question: str
    query: str
    intent: QueryIntent
    carried: bool


def user_turns(history: Sequence[Turn]) -> list[str]:
    return [t["content"] for t in history if t.get("role") == "user" and t.get("content")]


def standalone(question: str, history: Sequence[Turn], lib: Library,
               previous_paper_ids: Sequence[str] = ()) -> Standalone:
    """Make `question` self-contained using earlier user turns (most recent last)."""
    intent = analyse(question, lib)
    previous = user_turns(history)[-2:]
    if not previous:
        return Standalone(question, question, intent, carried=False)
    names_own_paper = bool(intent.paper_ids)
    if names_own_paper and not _ANAPHORA.search(question):
        return Standalone(question, question, intent, carried=False)
    if intent.kind == "list" and not _ANAPHORA.search(question):
        # "Which papers ...?" after a question about one paper asks the library, not that paper
        return Standalone(question, question, intent, carried=False)
    context = " ".join(previous)
    prev_intent = analyse(context, lib)
    if not intent.paper_ids:
        intent.paper_ids = list(prev_intent.paper_ids or previous_paper_ids)[:1]
    intent.venue = intent.venue or prev_intent.venue
    intent.year = intent.year or prev_intent.year
    if intent.kind == "fact" and prev_intent.kind == "list" and not intent.paper_ids:
        intent.kind = "list"
    return Standalone(question, f"{question} {context}", intent, carried=True)
