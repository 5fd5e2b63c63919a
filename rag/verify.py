"""Sentence-level checks of a generated answer against the numbered passages it cites.

A small local model writes answers such as "DeBERTa surpasses human performance on SuperGLUE
(89.9 vs 89.8) [1]." and readily invents numbers, names and titles. `verify_answer` splits the
answer into sentences and, trusting nothing the model says, checks each one against the
passages it cites ([1] is `passages[0]`):

1. numbers: every integer, decimal, percentage, range ("4-13"), scaled number ("1.5 billion"),
   timed number ("43 seconds") and alphanumeric ("INT2", "GPT-3") must occur verbatim in the
   cited passages, after normalising whitespace, unicode dashes and "%" / " %" / "percent";
2. names: capitalised words (except a plain first word), CamelCase, acronyms, quoted titles,
   URLs and hyphenated terms must occur there too (case- and accent-insensitive). Paper titles
   count only when the caller puts them in the passage text (as `Chunk.embed_text` does);
3. support: the share of the sentence's distinct content words (stemmed with
   `rag.lexical.tokenize`, attribution and scaffolding words left out) found in the cited
   passages must reach `threshold` (0.6: the best of 0.3-0.7 on the labelled pairs in
   tests/test_verify.py). Optionally a `similarity(sentence, text)` function, such as
   `embedding_similarity(get_embedder("all-MiniLM-L6-v2"))`, can rescue a sentence that fails
   on overlap when its best score against one passage sentence reaches `sim_threshold` (0.75
   for MiniLM, whose on-topic false sentences reach 0.70). Similarity never overrides rules
   1 and 2: a fluent paraphrase still fails on an invented number or name.

A sentence citing several passages is checked against them taken together. A sentence without
citations passes when one passage alone satisfies all three rules; a citation outside
1..len(passages) fails its sentence; scaffolding with no content ("Here is what the sources
say:") passes as "no claim".

What the user is shown (`ground_answer`, then `grounded_text`): only sentences that carry a
citation which verifies. A sentence that cites nothing, or whose citations fail, is given the
[n] of the one source that supports it on its own under the same rules (the best overlap), or
is dropped; scaffolding is dropped. `repeats` tells a sentence that adds nothing to an earlier
one (same text once case, whitespace and citations are ignored, or 80% of its stemmed words
already said and no new number), so a model that loops is shown each sentence once.

What it catches in a sentence copied from a source with one term changed: an invented or
altered number ("INT4" for "INT2", "89.7" for "89.9"), and a term that is capitalised
("Tedium Trap"), quoted ('"tedium trap"'), hyphenated ("tedium-trap"), CamelCase or an
acronym. What it cannot catch: the same swap in ordinary lower-case words ("the tedium trap"
for "the boredom trap": 12 of 13 content words still match), a number or name moved to the
wrong role when both occur in the passage ("humans 89.9, DeBERTa 89.8"), facts combined
unfaithfully ("86% certified accuracy" passes when the passage says 86% clean and 60%
certified), and negation ("does not improve"), which word overlap cannot see. It is a filter
for invented specifics and off-passage sentences, not an entailment model. Numbers written as
words are only matched for small integers ("two" = 2), and units only for time ("43 seconds").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from rag.lexical import tokenize
from rag.models import SentenceCheck
from rag.text import fold

if TYPE_CHECKING:
    from rag.embeddings import Embedder

Similarity = Callable[[str, str], float]

DEFAULT_THRESHOLD = 0.6  # calibrated in tests/test_verify.py
DEFAULT_SIM_THRESHOLD = 0.75  # for all-MiniLM-L6-v2, ditto
NO_CLAIM = "no claim"

# --- sentence splitting -------------------------------------------------------------------------
# A citation group: [1], [1, 2], [1; 3], [2-4], [Source 1]. Groups holding a 0 are left alone:
# in these papers "[0, 1]" is an interval, never a 1-based citation.
_MARKER = re.compile(r"\[(?:sources?\s*)?(\d+(?:\s*[,;\-–]\s*(?:sources?\s*)?\d+)*)\]", re.I)
_MARKERS_AFTER = r"(?:\s*,?\s*\[(?:sources?\s*)?\d+(?:\s*[,;\-–]\s*\d+)*\])*"
# A candidate end: terminator, closing quotes/brackets, any citation markers, then whitespace.
_END = re.compile(r"[.!?]+[\"'”’)]*" + _MARKERS_AFTER + r"(?=\s|$)", re.I)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)]|[a-z][.)]|#{1,6}|>)\s+")
# Words after which a period does not end a sentence; "etc." may end one, so it is not here.
_ABBREVIATIONS = frozenset({
    "al", "e.g", "eg", "i.e", "ie", "vs", "cf", "fig", "figs", "eq", "eqs", "sec", "approx",
    "resp", "no", "nos", "dr", "mr", "mrs", "ms", "prof", "st", "vol",
})


def split_sentences(answer: str) -> list[str]:
    """The sentences of `answer`, each keeping the [n] markers that close it.

    Markdown bullets, numbered items and headings start a new sentence and lose their marker;
    decimals (89.9), initials (J. Smith) and abbreviations (et al., e.g., vs.) do not end one.
    """
    sentences: list[str] = []
    for block in _blocks(answer):
        sentences.extend(_split_block(block))
    return sentences


def _blocks(answer: str) -> Iterator[str]:
    """Paragraphs: a blank line, list item or heading starts one, and a line ending in a
    terminator, colon or citation closes one; other lines are wrapped text and are joined."""
    current: list[str] = []
    for raw in answer.splitlines():
        line = raw.strip()
        item = _LIST_MARKER.match(line)
        if (not line or item) and current:
            yield " ".join(current)
            current = []
        if line:
            current.append(line[item.end():] if item else line)
        if current and (line.startswith("#") or re.search(r"(?:[.!?:]\W*|\])$", line)):
            yield " ".join(current)
            current = []
    if current:
        yield " ".join(current)


def _split_block(block: str) -> Iterator[str]:
    start = 0
    for m in _END.finditer(block):
        rest = block[m.end():].lstrip()
        # subtle: "e.g. the", "et al. (2019)" and "v. 2" continue; only a capital, digit,
        # quote, bracket or the end of the text can open the next sentence.
        if rest and (rest[0].islower() or rest[0] in ",;:)"):
            continue
        if _is_abbreviation(block[start:m.start()]) and m.group().startswith(".") and rest:
            continue
        piece = block[start:m.end()].strip()
        if piece:
            yield piece
        start = m.end()
    tail = block[start:].strip()
    if tail:
        yield tail


def _is_abbreviation(before: str) -> bool:
    """Whether the text before a period ends in an abbreviation or a single initial."""
    word = re.search(r"([A-Za-z][A-Za-z.]*)$", before)
    if not word:
        return False
    w = word.group(1)
    return w.lower().rstrip(".") in _ABBREVIATIONS or (len(w) == 1 and w.isupper())


def citations_in(sentence: str) -> list[int]:
    """The 1-based source numbers cited by [n], [n, m], [n][m] or [n-m] markers, in order."""
    found: list[int] = []
    for m in _MARKER.finditer(sentence):
        numbers = _marker_numbers(m.group(1))
        for n in numbers:
            if n not in found:
                found.append(n)
    return found


def _marker_numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group):
        bounds = [int(x) for x in re.findall(r"\d+", part)]
        if len(bounds) == 2 and 0 < bounds[1] - bounds[0] <= 20:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return [] if 0 in numbers else numbers


def _strip_markers(sentence: str) -> str:
    def drop(m: re.Match[str]) -> str:
        return "" if _marker_numbers(m.group(1)) else m.group()

    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub(drop, sentence)).strip()


# --- normalisation shared by the sentence and the passages -------------------------------------
_DASHES = re.compile(r"[‐‑‒–—―−]")
_SCALES = {"k": "thousand", "K": "thousand", "M": "million", "B": "billion", "bn": "billion",
           "T": "trillion"}


def _normalise(text: str, keep_case: bool = False) -> str:
    """Folded text where numbers compare as written: '90.2 %' = '90.2%', '1.5B' = '1.5 billion'."""
    t = _DASHES.sub("-", text).replace("×", "x").replace("\u202f", " ").replace("\xa0", " ")
    t = re.sub(r"(\d)\s*(bn|[kKMBT])\b", lambda m: f"{m.group(1)} {_SCALES[m.group(2)]}", t)
    t = t if keep_case else fold(t)
    t = re.sub(r"(\d)\s*(?:%|per\s?cent\b)", r"\1%", t, flags=re.I)
    t = re.sub(r"(\d)\s*-\s*(\d)", r"\1-\2", t)  # "4 - 13" is the range "4-13"
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t)  # "10,000" is 10000
    return re.sub(r"\s+", " ", t)


# --- the specific terms a sentence commits to (rules 1 and 2) ----------------------------------
@dataclass(frozen=True)
class _Term:
    kind: str  # "number", "name" or "term"
    shown: str  # as quoted in a reason
    pattern: re.Pattern[str]  # searched in _normalise(passage)
    stem: str = ""  # for hyphenated terms: also found as this stem in the passage vocabulary

    def found_in(self, normalised: str, vocabulary: frozenset[str]) -> bool:
        if self.pattern.search(normalised):
            return True
        return bool(self.stem) and (self.stem in vocabulary
                                    or self.stem.replace("-", "") in vocabulary)


_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)
_TIME_UNITS = {
    "millisecond": "ms|msec|milliseconds?", "second": "s|secs?|seconds?",
    "minute": "mins?|minutes?", "hour": "h|hrs?|hours?", "day": "days?", "week": "weeks?",
    "month": "months?", "year": "years?",
}
_UNIT_AFTER = re.compile(
    r"(?:\s*(thousand|million|billion|trillion)(?![a-z]))?(?:\s*("
    + "|".join(_TIME_UNITS.values()) + r")(?![a-z]))?",
    re.I,
)
_URL = re.compile(r"https?://[^\s)\]>]+")


def _number_terms(claim: str) -> list[_Term]:
    text = _normalise(_URL.sub(" ", claim), keep_case=True)
    terms: list[_Term] = []
    for m in re.finditer(r"[\w.%+\-]+", text):
        token = m.group().lstrip("+-.").rstrip(".-")
        if not re.search(r"\d", token):
            continue
        if any(ch.isalpha() for ch in token):
            # verbatim, hyphen optional: names "INT2", "GPT-3"; numbers "4-13x", "2019a"
            kind = "name" if token[0].isalpha() else "number"
            terms.append(_Term(kind, f"'{token}'", _word_pattern(token)))
            continue
        after = _UNIT_AFTER.match(text, m.start() + len(m.group().rstrip(".-")))
        scale, unit = (x and x.lower() for x in after.groups()) if after else (None, None)
        shown = " ".join(x for x in (token, scale, unit) if x)
        pattern = _number_core(token)
        if scale:
            pattern += rf"\s*{scale}"
        if unit:
            pattern += r"\s*(?:" + _unit_aliases(unit) + r")\b"
        terms.append(_Term("number", shown, re.compile(pattern)))
    return terms


def _number_core(token: str) -> str:
    # subtle: "89" must not match inside "89.9", nor "9" inside "89"; "+0.9%" holds "0.9%".
    digits = re.escape(token)
    if token.isdigit() and len(token) >= 4 and not token.startswith("0"):
        # 10000 also as "10,000", "10.000" or "10 000"
        head, tail = token[: len(token) % 3 or 3], token[len(token) % 3 or 3:]
        digits = head + "".join(r"[,. ]?" + tail[i:i + 3] for i in range(0, len(tail), 3))
    core = rf"(?<![\d.]){digits}(?!\d|\.\d)"
    if token.isdigit() and int(token) < len(_NUMBER_WORDS):
        core = rf"(?:{core}|\b{_NUMBER_WORDS[int(token)]}\b)"
    return core


def _unit_aliases(unit: str) -> str:
    for aliases in _TIME_UNITS.values():
        if re.fullmatch(aliases, unit):
            return aliases
    return re.escape(unit)  # pragma: no cover - _UNIT_AFTER only matches known units


def _word_pattern(term: str) -> re.Pattern[str]:
    """A folded term as a whole word; its hyphens may be spaces or absent, a plural 's' optional."""
    base = fold(term)
    plural = ""
    if len(base) > 3 and base.endswith("s") and base[-2].isalpha():
        base, plural = base[:-1], "s?"
    parts = [re.escape(p) for p in re.split(r"[\s\-]+", base) if p]
    return re.compile(rf"(?<![a-z0-9]){'[ -]?'.join(parts)}{plural}(?:s|es)?(?![a-z0-9])")


# Everyday hyphenated words a writer adds without the source: not coined terms.
_GENERIC_COMPOUNDS = frozenset({
    "state-of-the-art", "well-known", "so-called", "large-scale", "small-scale", "real-world",
    "high-quality", "long-term", "short-term", "up-to-date", "non-trivial", "first-ever",
    "wide-ranging", "well-established", "easy-to-use", "high-level", "low-level",
})
_WORD = re.compile(r"(?<![\w\-])(?:[^\W\d_][\w\-]*[^\W_]|[^\W\d_])")
_QUOTED = re.compile(r"[\"“]([^\"”]{3,}?)[\"”]|``(.{3,}?)''")


def _name_terms(claim: str) -> list[_Term]:
    terms = [_Term("name", f"'{u}'", re.compile(re.escape(fold(u).rstrip(".,;")))) for u in
             _URL.findall(claim)]
    text = _URL.sub(" ", claim)
    for m in _QUOTED.finditer(text):
        words = re.findall(r"\w+", fold(m.group(1) or m.group(2)))
        if words:
            pattern = re.compile(r"\W+".join(re.escape(w) for w in words))
            terms.append(_Term("name", f"'{(m.group(1) or m.group(2)).strip()}'", pattern))
    text = _QUOTED.sub(" ", text)
    for m in _WORD.finditer(text):
        word = m.group()
        if any(ch.isdigit() for ch in word) or not _is_specific(word, _at_start(text, m.start())):
            continue
        if word == word.lower():
            # a coined term: as written, or inflected ('pre-trained' ~ 'pre-training')
            stem = (tokenize(word) or [word])[0]
            terms.append(_Term("term", f"'{word}'", _word_pattern(word), stem))
        else:
            terms.append(_Term("name", f"'{word}'", _word_pattern(word)))
    return terms


def _at_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" *_`(\"'“‘")
    return not before or before[-1] in ":;.!?"


def _is_specific(word: str, at_start: bool) -> bool:
    """Whether a word names something a source must mention (see rule 2)."""
    lower = word.lower()
    if not any(ch.isupper() for ch in word):
        return "-" in word and lower not in _GENERIC_COMPOUNDS
    if lower in _ignored_words() or lower == "i" or not tokenize(word):
        return False  # scaffolding or a stop word ("The", "In") after a colon
    # A plain capitalised word ("The", "Recent", "Self-supervised") is only grammar at the start.
    plain = word[0].isupper() and word[1:] == word[1:].lower()
    return not (plain and at_start)


# --- content-word overlap (rule 3) --------------------------------------------------------------
# Words of answer scaffolding and attribution, ignored both for overlap and for "no claim":
# "According to the sources, the authors show ..." commits to nothing the passage must say.
_SCAFFOLD = """here following below above answer question summary sure sorry unfortunately
according source sources passage passages document documents context provided given based
information info mention mentions mentioned say says said state states stated note notes
author authors describe describes described report reports reported show shows shown
demonstrate demonstrates find finds found present presents suggest suggests know known
overall addition additionally furthermore moreover however also specifically particular
particularly e.g. i.e. et al. vs. versus etc. cf. unable enough contain contains
what which whose cite cites cited let but while although though because since still already
across each every all both either neither thus hence therefore via whereas upon within among
don't can't cannot won't isn't doesn't"""


@lru_cache(maxsize=1)
def _ignored_words() -> frozenset[str]:
    """Lower-case words and their stems that never count as content."""
    words = _SCAFFOLD.split()
    return frozenset(words) | frozenset(tokenize(" ".join(words)))


def _content_units(claim: str) -> list[tuple[str, list[str]]]:
    """(stem, parts) per distinct content word; digits are left to rule 1."""
    units: dict[str, list[str]] = {}
    text = fold(_URL.sub(" ", claim)).replace("’", "'")
    for word in re.findall(r"[a-z0-9]+(?:[.\-'][a-z0-9]+)*", text):
        if any(ch.isdigit() for ch in word):
            continue
        stems = [s for s in tokenize(word) if s not in _ignored_words()]
        if stems and stems[0] not in units:
            units[stems[0]] = stems[1:] if "-" in word else []
    return list(units.items())


@lru_cache(maxsize=512)
def _normalised_passage(passage: str) -> str:
    return _normalise(passage)


@lru_cache(maxsize=512)
def _vocabulary(passage: str) -> frozenset[str]:
    """Stems of a passage, with hyphenated words also joined ('pre-trained' -> 'pretrain')."""
    joined = [w.replace("-", "") for w in re.findall(r"[a-z]+(?:-[a-z]+)+", fold(passage))]
    return frozenset(tokenize(passage)) | frozenset(tokenize(" ".join(joined)))


def _overlap(units: list[tuple[str, list[str]]], passage: str) -> float:
    vocab = _vocabulary(passage)
    # subtle: a hyphenated word counts once, found whole, joined or part by part.
    hits = sum(
        1 for stem, parts in units
        if stem in vocab or stem.replace("-", "") in vocab or (parts and set(parts) <= vocab)
    )
    return hits / len(units) if units else 1.0


# --- checking --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Claim:
    text: str
    terms: list[_Term]
    units: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class _Result:
    ok: bool
    reason: str
    score: float


def _claim(sentence: str) -> _Claim:
    text = _strip_markers(_LIST_MARKER.sub("", sentence.strip(), count=1))
    text = re.sub(r"\*\*|__|`|(?<!\w)[*_]|[*_](?!\w)", "", text).strip()
    return _Claim(text, _number_terms(text) + _name_terms(text), _content_units(text))


def _check(claim: _Claim, passages: Sequence[str], label: str, threshold: float,
           similarity: Similarity | None, sim_threshold: float) -> _Result:
    """Rules 1-3 for one claim against the text of `passages` taken together."""
    joined = "\n".join(passages)
    normalised, vocabulary = _normalised_passage(joined), _vocabulary(joined)
    overlap = _overlap(claim.units, joined)
    for term in claim.terms:
        if not term.found_in(normalised, vocabulary):
            # scored below any sentence passing rule 1-2, to pick the best uncited failure
            return _Result(False, f"{term.kind} {term.shown} not in {label}", overlap - 1)
    if overlap >= threshold:
        return _Result(True, f"overlap {overlap:.2f}", overlap)
    reason = f"overlap {overlap:.2f} < {threshold:g}"
    if similarity is not None:
        candidates = [w for p in passages for w in _passage_sentences(p)]
        prime = getattr(similarity, "prime", None)
        if prime is not None:  # embed in one batch: one text at a time is ~10x slower
            prime([claim.text, *candidates])
        best = max((similarity(claim.text, w) for w in candidates), default=0.0)
        if best >= sim_threshold:
            return _Result(True, f"{reason}; similarity {best:.2f}", overlap)
        reason += f", similarity {best:.2f} < {sim_threshold:g}"
    return _Result(False, reason, overlap)


@lru_cache(maxsize=512)
def _passage_sentences(passage: str) -> tuple[str, ...]:
    # A sentence is compared with sentences: against whole passages MiniLM's cosines for true
    # and false claims overlap (0.27-0.78 vs 0.35-0.63), and long passages get truncated.
    return tuple(split_sentences(passage)) or (passage,)


def check_sentence(
    sentence: str,
    passages: Sequence[str],
    cited: Sequence[int],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarity: Similarity | None = None,
    sim_threshold: float = DEFAULT_SIM_THRESHOLD,
) -> SentenceCheck:
    """Check one sentence against the passages it cites (1-based), or against each passage when
    it cites none; see the module docstring for the rules."""
    cites = list(cited)
    bad = [n for n in cites if not 1 <= n <= len(passages)]
    if bad:
        return SentenceCheck(sentence, cites, False,
                             f"citation [{bad[0]}] out of range ({len(passages)} sources)")
    claim = _claim(sentence)
    if not claim.terms and not claim.units:
        return SentenceCheck(sentence, cites, True, NO_CLAIM)
    if cites:
        label = "".join(f"[{n}]" for n in cites)
        result = _check(claim, [passages[n - 1] for n in cites], label, threshold, similarity,
                        sim_threshold)
        return SentenceCheck(sentence, cites, result.ok, result.reason)
    return _check_uncited(sentence, claim, passages, threshold, similarity, sim_threshold)


def _check_uncited(sentence: str, claim: _Claim, passages: Sequence[str], threshold: float,
                   similarity: Similarity | None, sim_threshold: float) -> SentenceCheck:
    """Rule 4: an uncited claim must be carried by one passage on its own."""
    if not passages:
        return SentenceCheck(sentence, [], False, "uncited; no sources")
    results = [_check(claim, [p], f"[{i}]", threshold, similarity, sim_threshold)
               for i, p in enumerate(passages, 1)]
    for i, result in enumerate(results, 1):
        if result.ok:
            return SentenceCheck(sentence, [], True, f"uncited; [{i}] {result.reason}")
    best = max(range(len(results)), key=lambda i: results[i].score)
    return SentenceCheck(sentence, [], False, f"uncited; best [{best + 1}]: {results[best].reason}")


def verify_answer(
    answer: str,
    passages: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarity: Similarity | None = None,
    sim_threshold: float = DEFAULT_SIM_THRESHOLD,
) -> list[SentenceCheck]:
    """One SentenceCheck per sentence of `answer`; `passages[0]` is source [1]."""
    return [
        check_sentence(s, passages, citations_in(s), threshold=threshold,
                       similarity=similarity, sim_threshold=sim_threshold)
        for s in split_sentences(answer)
    ]


def supporting_source(
    sentence: str,
    passages: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarity: Similarity | None = None,
    sim_threshold: float = DEFAULT_SIM_THRESHOLD,
) -> tuple[int, str] | None:
    """(n, reason) for the source that supports `sentence` on its own under rules 1-3, the one
    with the highest overlap (the lowest n on a tie); None when no source does."""
    claim = _claim(sentence)
    best: tuple[int, _Result] | None = None
    for n, passage in enumerate(passages, 1):
        result = _check(claim, [passage], f"[{n}]", threshold, similarity, sim_threshold)
        if result.ok and (best is None or result.score > best[1].score):
            best = (n, result)
    return (best[0], best[1].reason) if best else None


_TERMINATED = re.compile(r"[.!?][\"'”’)]*" + _MARKERS_AFTER + r"\s*$", re.I)


def _terminated(sentence: str) -> str:
    """The sentence with a closing period when it has none ("X [1]" -> "X [1]."), so shown
    sentences joined with spaces split back into the same sentences."""
    text = sentence.strip()
    return text if _TERMINATED.search(text) else text.rstrip(",;:") + "."


def cite(sentence: str, n: int) -> str:
    """`sentence` with its markers replaced by one [n], placed before the closing terminator:
    "X is Y." -> "X is Y [2]."; a sentence without one gets a period."""
    text = _strip_markers(sentence)
    end = re.search(r"[.!?]+[\"'”’]*$", text)
    cut = end.start() if end else len(text)
    return f"{text[:cut].rstrip()} [{n}]{text[cut:] or '.'}"


def ground_answer(
    answer: str,
    passages: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarity: Similarity | None = None,
    sim_threshold: float = DEFAULT_SIM_THRESHOLD,
    truncated: bool = False,
) -> list[SentenceCheck]:
    """One SentenceCheck per sentence of `answer`, `verified` meaning "may be shown": every
    verified sentence carries a citation that supports it.

    A sentence passing against what it cites is kept as written. One that cites nothing, or
    whose citations fail, is cited to the source that supports it on its own by the same rules
    (its text gets that [n], see `cite`), or fails. Scaffolding without a claim ("Here is what
    the sources say:") cites nothing and is not shown (verified False, reason NO_CLAIM).
    `truncated`: generation stopped at its token limit, so an unterminated, uncited last
    sentence is a cut-off one and is not shown."""
    checks: list[SentenceCheck] = []
    sentences = list(_without_lead_ins(split_sentences(answer)))
    for i, sentence in enumerate(sentences):
        cited = citations_in(sentence)
        claim = _claim(sentence)
        if not claim.terms and not claim.units:
            checks.append(SentenceCheck(sentence, cited, False, NO_CLAIM))
            continue
        if (truncated and i == len(sentences) - 1 and not cited
                and not _TERMINATED.search(sentence)):
            # subtle: the model ran out of tokens mid-sentence; "It improves accuracy by" is
            # no claim to show, however well its words overlap a source
            checks.append(SentenceCheck(sentence, cited, False, "unfinished"))
            continue
        before = "uncited"
        if cited:
            check = check_sentence(sentence, passages, cited, threshold=threshold,
                                   similarity=similarity, sim_threshold=sim_threshold)
            if check.verified:
                checks.append(replace(check, text=_terminated(sentence)))
                continue
            before = f"cited: {check.reason}"
        found = supporting_source(sentence, passages, threshold=threshold,
                                  similarity=similarity, sim_threshold=sim_threshold)
        if found is None:
            reason = before if cited else "uncited; no source supports it on its own"
            checks.append(SentenceCheck(sentence, cited, False, reason))
        else:
            n, why = found
            checks.append(SentenceCheck(cite(sentence, n), [n], True,
                                        f"{before}; re-cited to [{n}]: {why}"))
    return checks


def _without_lead_ins(sentences: list[str]) -> Iterator[str]:
    """Sentences with a lead-in that claims nothing ("Here is what the sources say: X [1].")
    split off, so the claim is shown without it."""
    for sentence in sentences:
        m = re.match(r"([^:]{1,80}):\s+(?=\S)", sentence)
        if m and not _claim(m.group(1)).terms and not _claim(m.group(1)).units:
            yield m.group(1) + ":"
            sentence = sentence[m.end():]
        yield sentence


# --- repeated sentences ----------------------------------------------------------------------------
REPEAT_THRESHOLD = 0.8  # share of a sentence's words already said for it to add nothing


def _said(sentence: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """(normalised text, stemmed words, numbers) of a sentence without its markers."""
    text = _strip_markers(_LIST_MARKER.sub("", sentence.strip(), count=1))
    key = re.sub(r"\W+", " ", fold(text)).strip()
    numbers = frozenset(t.shown for t in _number_terms(text))
    return key, frozenset(tokenize(text)), numbers


def repeats(sentence: str, earlier: str, threshold: float = REPEAT_THRESHOLD) -> bool:
    """Whether `sentence` says nothing `earlier` did not: the same text once case, whitespace,
    punctuation and citations are normalised away, or at least `threshold` of its distinct
    stemmed words found in `earlier` with no number of its own ("3 billion" after "1.5 billion"
    is new)."""
    key, words, numbers = _said(sentence)
    key_before, words_before, numbers_before = _said(earlier)
    if key == key_before:
        return True
    if not words or not numbers <= numbers_before:
        return False
    return len(words & words_before) / len(words) >= threshold


def grounded_text(checks: Sequence[SentenceCheck]) -> str:
    """The verified sentences that carry a citation, markers kept; empty when none is left
    (scaffolding alone, "Here is what the sources say:", is not an answer)."""
    return " ".join(c.text for c in checks
                    if c.verified and c.reason != NO_CLAIM and citations_in(c.text))


def share_unsupported(checks: Sequence[SentenceCheck]) -> float:
    """Fraction of the sentences making a claim that failed; 0.0 when none makes one."""
    claims = [c for c in checks if c.reason != NO_CLAIM]
    return sum(not c.verified for c in claims) / len(claims) if claims else 0.0


class EmbeddingSimilarity:
    """Cosine similarity through an embedder's unit vectors (so a dot product), with a cache:
    the same passage sentences are compared with every sentence of an answer. `prime` embeds
    many texts in one batch; `check_sentence` calls it when a similarity function has it."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._cache: dict[str, list[float]] = {}

    def prime(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            self._cache.update(zip(todo, self.embedder.embed(todo), strict=True))

    def __call__(self, a: str, b: str) -> float:
        self.prime([a, b])
        return float(sum(x * y for x, y in zip(self._cache[a], self._cache[b], strict=True)))


def embedding_similarity(embedder: Embedder) -> Similarity:
    """A `similarity` for `verify_answer` from an embedder such as all-MiniLM-L6-v2."""
    return EmbeddingSimilarity(embedder)
