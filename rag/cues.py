"""Question cues: the words that say what *kind* of answer a question wants.

One vocabulary per cue, shared by question analysis (`rag.query`) and answer building
(`rag.extractive`), so the two never disagree about what "by how much" or "who wrote" means:

- quantity: a number is asked for ("how many", "by how much", "what accuracy");
- list: several papers are asked for ("which papers", "papers on ...");
- summary: a paper's gist is asked for ("summarise", "what is X about", "tl;dr");
- authors: the people behind a paper ("who wrote", "authors of");
- comparison: how two things differ ("how does X differ from Y", "X vs Y", "compared to");
- which: one paper or method is to be named ("which paper ...", "is there a paper ...");
- link: where a paper is found ("the arXiv id of", "a link to", "its URL", "where can I read").

The cues are about the form of English questions, never about a topic, so they hold for any
library. Pure regular expressions; nothing here reads the library or calls a model.
"""

from __future__ import annotations

import re

# Nouns a library question counts in ("which papers", "any talks").
_WORKS = r"(papers|articles|talks|orals|tutorials|spotlights|works|studies|publications)"

LIST = re.compile(
    r"\b(which|what|list|name|any|all)\s+(?:[\w'-]+\s+){0,4}?" + _WORKS +
    r"\b(?!\s+(best|well|better))"
    r"|\bpapers (in|from|at|on|about)\b|\bco-?authored\b",
    re.I,
)
AUTHORS = re.compile(r"\b(who (wrote|authored|are the authors|presented|proposed)|authors? (of|on)|"
                     r"written by|co-?author|who'?s behind|who is behind)", re.I)
SUMMARY = re.compile(
    r"\b(summari[sz]e|summary|main idea|main finding|in a nutshell|tl;?dr|gist|overview of|"
    r"what is .{2,80} about|what'?s .{2,80} about|what does .{2,80} (find|show|propose|argue)|"
    r"what is .{2,80} arguing|key (idea|contribution))"
    r"|^\s*(what|who)(?:'s|’s| is| are) (an? |the )?[\w-]+( paper| model| method)?\s*\??\s*$",
    re.I,
)
QUANTITY = re.compile(
    r"\b(how (much|many|fast|big|large|long|often|far|well)|by how|what(?:'s|’s)?\s+"
    r"(is |was |were |are )?(the )?([\w-]+ ){0,2}(rate|size|score|accuracy|fid|bleu|number|"
    r"percentage|speed-?up|error|perplexity|top-\d+|f1|auc|mrr|map|recall|precision|"
    r"correlation|length))\b"
    # a share or a total right after "what" ("what share of the hives"), not a noun further on
    # ("what does the total correlation recover")
    r"|\bwhat(?:'s|’s)?\s+(is |was |were |are )?(the )?(fraction|proportion|share|ratio|amount|"
    r"median|average|count|cost)\b|\bon average\b", re.I)
COMPARISON = re.compile(
    r"\b(differ(s|ent|ence|ences)?\s+(from|between|to)|difference between|compared?\s+(to|with)|"
    r"comparison (of|between|with)|versus|vs\.?|how does .{2,80} (compare|differ)|"
    r"(better|worse) than|in contrast to)\b", re.I)
# The selected noun follows the cue within a few words ("which recent paper", "is there a
# paper"), not somewhere later in the sentence ("what did raters give the model").
WHICH = re.compile(r"\b(which|what|is there an?y?|name the)\s+(?:[\w'-]+\s+){0,3}?(paper|talk|work|"
                   r"article|oral|tutorial|method|model|benchmark)s?\b", re.I)
LINK = re.compile(r"\b(arxiv (id|identifier|number|link|page|version)|urls?|links? (to|for)|"
                  r"web ?(page|address)|doi|where (can|do|could) (i|we|one) (find|read|get|"
                  r"download))\b", re.I)
# "by how much", "what result": each answer row should carry its number.
RESULT = re.compile(r"\b(by how much|how much (better|worse|faster|higher|lower)|what results?|"
                    r"improve[sd]? .{0,40}\bby\b|gains?)\b", re.I)


# An improvement over something ("improves on BERT", "outperform ResNet", "better than GPT-3",
# "gains over LoRA"): the cue, then what is improved upon up to where the clause turns to the
# setting ("... baselines on BERT" improves on the baselines, BERT is where).
IMPROVES_ON = re.compile(
    r"\b(?:improv(?:e[sd]?|ing)(?:\s+(?:on|upon|over))?|improvements?\s+over|outperform(?:s|ed|ing)?|"
    r"surpass(?:es|ed|ing)?|beat(?:s|ing)?|(?:better|stronger|faster|higher) than|superior to|"
    r"gains? over|(?:compared|relative) (?:to|with)|over|versus|vs\.?)\s+"
    r"(?P<object>[^.;:?!()]*?)(?=\s+(?:on|in|across|for|at|by|using|while|when|where|which|"
    r"that|through|via|and by|without)\b|[.;:?!()]|$)", re.I)


def improved_upon(question: str) -> str:
    """What a question asks to be improved upon ("BERT" in "Which papers improve on BERT, and
    by how much?"), or ''."""
    m = IMPROVES_ON.search(question)
    return m.group("object").split(",")[0].strip() if m else ""


def improves_on(sentence: str) -> list[str]:
    """The things a sentence says something improves on or is compared with ("the BERT and
    RoBERTa models" in "... that improves the BERT and RoBERTa models using two techniques")."""
    return [m.group("object").strip() for m in IMPROVES_ON.finditer(sentence)
            if m.group("object").strip()]

# The library itself named as the place to look ("in my library", "do I have"): it says where,
# not what, and its words ("library", "collection") would match papers about libraries.
LIBRARY_SELF = re.compile(
    r"\b(in|from|within|among|across) (my|the|this|our) (library|collection|folder|corpus|"
    r"reading list|papers|pdfs)\b|\b(do|did) (i|we) have\b|\b(that|which) (i|we) have\b", re.I)


def without_library_words(question: str) -> str:
    """The question with the words naming the library itself removed (for searching)."""
    return _without(LIBRARY_SELF, question)


def without_link_words(question: str) -> str:
    """The question without its ask for an address ("the arXiv id of", "a link to"): the form
    of a link question, not what it is about, so no passage has to contain it."""
    return _without(LINK, question)


def _without(cue: re.Pattern[str], question: str) -> str:
    return re.sub(r"\s{2,}", " ", cue.sub(" ", question)).strip()


# "What is X?", "what does X mean?", "define X": X is a term the answer must define.
DEFINITION = re.compile(
    r"^\s*(?:what(?:'s|’s| is| are)|define|explain)\s+(?:an?\s+|the\s+)?"
    r"(?P<a>[\w][\w'’-]*(?:\s+[\w][\w'’-]*){0,2}?)\s*(?:\?|$|\s+(?:in|for|of|and|when|with)\s)"
    r"|^\s*what does (?:an?\s+|the\s+)?(?P<b>[\w][\w'’-]*(?:\s+[\w][\w'’-]*){0,3}?)\s+mean\b",
    re.I)


# Heads of questions about a paper's parts, not about a term ("what is the main contribution
# of ...", "explain the proposed method"): a library need not use them as a phrase to answer.
_GENERIC_HEAD = re.compile(
    r"(?:contribution|idea|result|finding|method|approach|technique|goal|aim|purpose|"
    r"motivation|limitation|difference|advantage|benefit|drawback|weakness|strength|novelty|"
    r"problem|task|point|takeaway|conclusion|intuition|role|impact|effect|setup|setting|"
    r"architecture|model|dataset|baseline|objective|framework|system|algorithm|work|paper|"
    r"study|question|answer|outcome|insight|innovation)(?:s|es)?", re.I)
_POSSESSIVE = re.compile(r"\w(?:['’]s|s['’])$")


def defined_term(question: str) -> str:
    """The term a definition question asks about ("speculative decoding" in "What is
    speculative decoding in LLM inference?"), or ''. An owner is context, not the term
    ("disentangled attention" in "Explain DeBERTa's disentangled attention"); a paper's parts
    ("the main contribution") are no term."""
    m = DEFINITION.search(question)
    words = (m.group("a") or m.group("b") or "").split() if m else []
    owners = [i for i, w in enumerate(words) if _POSSESSIVE.search(w)]
    if owners:
        words = words[owners[-1] + 1:]
    if not words or _GENERIC_HEAD.fullmatch(words[-1]):
        return ""
    return " ".join(words)


# "What license is X released under?", "which optimizer did they use?": the one noun right after
# what/which, followed by a verb or preposition, names the kind of thing the answer is.
_ATTRIBUTE = re.compile(
    r"\b(?:what|which)\s+(?P<noun>[a-z][a-z-]{2,})\s+(?:is|are|was|were|do|does|did|has|have|"
    r"had|can|could|would|should|will|they|the|it|its|their|in|under|for|of|to|from|on|by)\b",
    re.I)
# Not a kind of thing: verbs, metadata, and relations a clause answers without naming them
# ("under what condition ..." is answered by "... if its layers contain ...").
_NOT_ATTRIBUTE = re.compile(
    r"(?:kind|type|sort|way|one|thing|part|extent|else|exactly|year|venue|conference|journal|"
    r"date|time|people|person|authors?|is|are|was|were|do|does|did|has|have|had|can|could|"
    r"would|should|will|happen(?:s|ed)?|makes?|made|"
    r"conditions?|circumstances?|cases?|reasons?|causes?|assumptions?|sense|degree|level|manner|"
    r"aspects?|scenarios?|situations?|steps?|stages?|points?)", re.I)


def asked_attribute(question: str) -> str:
    """The kind of thing a question asks for ("license" in "what license is S2ORC released
    under?"), or '' when it asks for a paper, a part of one, or a number."""
    m = _ATTRIBUTE.search(question)
    if not m or asks_quantity(question):
        return ""
    noun = m.group("noun")
    if _GENERIC_HEAD.fullmatch(noun) or _NOT_ATTRIBUTE.fullmatch(noun) or re.fullmatch(
            _WORKS, noun, re.I):
        return ""
    return noun.lower()

_RATE = re.compile(r"\b(?:per|every|each|a)\s+(second|minute|hour|day|week|month|year|"
                   r"sec|s|token|step|epoch|query|request|page|document|gpu|cpu|core)s?\b", re.I)


def rate_unit(question: str) -> str:
    """The unit of a rate asked for ("second" in "how many PDFs per second ..."), or ''. Only
    within the quantity asked ("how many", "what throughput"), not anywhere in the question."""
    tail = quantity_tail(question)
    m = _RATE.search(tail) if tail else None
    return m.group(1).lower() if m else ""


def asks_quantity(question: str) -> bool:
    return bool(QUANTITY.search(question))


def asks_list(question: str) -> bool:
    return bool(LIST.search(question))


def asks_summary(question: str) -> bool:
    return bool(SUMMARY.search(question))


def asks_authors(question: str) -> bool:
    return bool(AUTHORS.search(question))


def asks_comparison(question: str) -> bool:
    return bool(COMPARISON.search(question))


def asks_link(question: str) -> bool:
    return bool(LINK.search(question))


def asks_which(question: str) -> bool:
    return bool(WHICH.search(question))


def asks_result(question: str) -> bool:
    return bool(RESULT.search(question)) or asks_quantity(question)


def quantity_tail(question: str, words: int = 10) -> str:
    """The quantity cue and the words after it, to the end of its clause ("how many of those
    papers come with full text"): where the measured thing is named. '' when no quantity is
    asked. A cue at the end ("... on average?") names the thing before it: the clause then."""
    m = QUANTITY.search(question)
    if not m:
        return ""
    clause = re.split(r"[?;!]|,\s|\.\s", question[m.start():])[0].split()
    if len(clause) <= 2:  # "what did raters give the summaries on average?"
        clause = re.split(r"[?;!]|,\s|\.\s", question[:m.end()])[-1].split()
    return " ".join(clause[:words])
