"""How much a piece of text reads like prose, for ranking sentences and rejecting bad parses.

Text pulled out of PDFs carries debris besides sentences: equations ("h t = σ ( W x t + b )"),
matrix and table cells ("0 1 0 1", "84.6 83.4 91.2"), figure labels. `prose_score` gives a
sentence a number in [0, 1] (1: an ordinary sentence) from what it is made of, so answer
selection can prefer sentences a reader can use; `looks_garbled` says whether a whole document's
text is mostly not words (fonts without a Unicode map give runs of symbols). No I/O, no models.
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"\S+")
_WORD = re.compile(r"^[(\"'\[]*[^\W\d_]{2,}(?:[-'’][^\W\d_]+)*[)\"'\].,;:!?]*$")
_NUMBER = re.compile(r"^[(\[]*[-+]?\d+(?:[.,]\d+)*%?[)\].,;:]*$")
_PLAIN_PUNCT = set(".,;:!?'\"()[]-–—’‘“”%/&")
_SINGLE_OK = {"a", "A", "I"}
# <tag ...>, ](target) of a Markdown link or image, and bare URLs
_MARKUP = re.compile(r"<[^<>]{1,500}>|\]\([^()\s]{1,500}\)|\b(?:https?|ftp)://\S+")


def prose_score(text: str) -> float:
    """1.0 for a sentence of words, towards 0 for math, matrices, tables and symbol soup.

    Starts from the share of tokens that are words (two or more letters; a number counts half)
    and subtracts for
    symbol characters (math operators, Greek, arrows), digits beyond a sentence's usual few,
    and runs of three or more one-character tokens (variables and matrix entries). Markup is not
    debris: HTML tags, Markdown link targets and URLs are left out before scoring, so a
    sentence that carries a link still counts as the prose it is.
    """
    text = _MARKUP.sub(" ", text)
    tokens = _TOKEN.findall(text)
    if not tokens:
        return 0.0
    words = sum(bool(_WORD.match(t)) for t in tokens)
    numbers = sum(bool(_NUMBER.match(t)) for t in tokens)  # "84.6%", "(2019)." half count
    score = (words + 0.5 * numbers) / len(tokens)
    visible = [ch for ch in text if not ch.isspace()]
    n = max(len(visible), 1)
    symbols = sum(_is_symbol(ch) for ch in visible) / n
    digits = sum(ch.isdigit() for ch in visible) / n
    singles = _single_runs(tokens) / len(tokens)
    score -= 2.0 * symbols + 1.5 * max(0.0, digits - 0.1) + 0.8 * singles
    return round(min(1.0, max(0.0, score)), 3)


def looks_garbled(text: str, sample: int = 20000) -> bool:
    """True when most of the text is not words: a PDF whose fonts lack a Unicode map, or an
    encoding gone wrong. Judged on up to `sample` characters from the start."""
    head = text[:sample]
    tokens = _TOKEN.findall(head)
    if len(tokens) < 30:
        return False
    bad = sum(ch == "\ufffd" or unicodedata.category(ch) in {"Co", "Cn", "Cc"}
              for ch in head if not ch.isspace())
    if bad > 0.05 * max(len(head), 1):
        return True
    words = sum(bool(_WORD.match(t)) for t in tokens)
    return words < 0.4 * len(tokens)


def _is_symbol(ch: str) -> bool:
    if ch in _PLAIN_PUNCT:
        return False
    cat = unicodedata.category(ch)
    if cat[0] in {"S", "C"}:
        return True
    if cat[0] == "L" and not ch.isascii():
        return unicodedata.name(ch, "").startswith(("GREEK", "MATHEMATICAL"))
    return cat[0] == "P" and ch not in _PLAIN_PUNCT and ch in "*^_{}|\\<>=+~#@$"


def _single_runs(tokens: list[str]) -> int:
    """Tokens in runs of three or more one-character tokens ("x i j", "0 1 0 1")."""
    total = run = 0
    for t in [*tokens, ""]:
        core = t.strip(".,;:()[]")
        if len(core) == 1 and core not in _SINGLE_OK:
            run += 1
            continue
        if run >= 3:
            total += run
        run = 0
    return total
