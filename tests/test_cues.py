"""The question-cue vocabularies (rag.cues), on phrasings written for this test: each cue is
about the form of a question, so the topics here are deliberately unlike the library's."""

from __future__ import annotations

import pytest

from rag import cues


@pytest.mark.parametrize("question", [
    "How many bridges did the survey inspect?",
    "by how much did the new glaze cut firing time?",
    "What was the error rate of the handwriting reader?",
    "what's the average length of the recorded calls?",
    "What F1 does the tagger reach?",
    "How long does the solver take on a laptop?",
])
def test_quantity_cues(question: str) -> None:
    assert cues.asks_quantity(question)
    assert cues.quantity_tail(question)


@pytest.mark.parametrize("question", [
    "Who wrote the glacier melt study?",
    "What is the main idea of the beekeeping paper?",
    "Which paper describes soil sensors?",
])
def test_not_quantity(question: str) -> None:
    assert not cues.asks_quantity(question)
    assert cues.quantity_tail(question) == ""


@pytest.mark.parametrize("question", [
    "Which papers in my collection study coral reefs?",
    "list all articles about rail freight",
    "any talks on medieval trade routes?",
    "papers from the workshop on soil",
])
def test_list_cues(question: str) -> None:
    assert cues.asks_list(question)


def test_a_single_paper_is_not_a_list() -> None:
    assert not cues.asks_list("Which paper describes the tide gauge network?")


@pytest.mark.parametrize("question", [
    "Summarize the tide gauge paper",
    "tl;dr of the orchard pollination study?",
    "what's the wind tunnel paper about?",
    "What is the ferry scheduling article arguing?",
    "give me an overview of the harbour dredging work",
])
def test_summary_cues(question: str) -> None:
    assert cues.asks_summary(question)


@pytest.mark.parametrize("question", [
    "who wrote the avalanche forecasting paper?",
    "Who's behind the canal lock simulator?",
    "who are the authors on the lichen survey",
    "papers written by a hydrologist",
])
def test_author_cues(question: str) -> None:
    assert cues.asks_authors(question)


@pytest.mark.parametrize("question", [
    "How does the kiln model differ from the furnace model?",
    "what's the difference between the two sampling schemes?",
    "sonar vs lidar for mapping reefs",
    "How does method A compare with method B?",
    "is the new loom better than the old one?",
])
def test_comparison_cues(question: str) -> None:
    assert cues.asks_comparison(question)


@pytest.mark.parametrize("question", [
    "What is the boiling point reported for the brine?",
    "Who funded the rainfall study?",
])
def test_not_comparison(question: str) -> None:
    assert not cues.asks_comparison(question)


@pytest.mark.parametrize("question", [
    "Which paper introduces a dataset of bird calls?",
    "is there a paper on reading old maps?",
])
def test_which_cues(question: str) -> None:
    assert cues.asks_which(question)


def test_a_named_thing_asked_about_is_a_fact_not_a_paper() -> None:
    assert not cues.asks_which("what dataset did the authors build to test the sensor?")
    assert not cues.asks_which("what did human raters give the model's answers on average?")


def test_result_cues() -> None:
    assert cues.asks_result("Which studies improve on the baseline, and by how much?")
    assert cues.asks_result("what results did the irrigation trial report?")
    assert not cues.asks_result("Which studies use satellite images?")


def test_query_kinds_come_from_the_cues() -> None:
    from rag.query import _kind

    assert _kind("Summarise the glacier paper") == "summary"
    assert _kind("Who wrote the glacier paper?") == "authors"
    assert _kind("Which papers study glaciers?") == "list"
    assert _kind("How thick was the ice?") == "fact"
    # a paper is selected; "summarise" only describes it
    assert _kind("Which paper argues that tools should do more than summarise notes?") == "fact"


@pytest.mark.parametrize(("question", "tail"), [
    # the measured thing can come after a few words of scaffold, or before a trailing cue
    ("and how many of those ferries come with a bar?", "how many of those ferries come with a bar"),
    ("what did the tasters give the new cheese on average?",
     "what did the tasters give the new cheese on average"),
    ("What share of the hives survived, and why?", "What share of the hives survived"),
])
def test_quantity_tail_names_the_measured_thing(question: str, tail: str) -> None:
    assert cues.quantity_tail(question) == tail


def test_a_definition_is_not_a_quantity() -> None:
    assert not cues.asks_quantity("what does dead reckoning mean?")


def test_a_total_named_further_on_is_not_a_quantity() -> None:
    assert not cues.asks_quantity("what does the total variation prior remove from the scans?")


@pytest.mark.parametrize(("question", "searched"), [
    ("which papers in my library are about coral bleaching?", "which papers are about coral bleaching?"),
    ("do I have anything on tidal energy", "anything on tidal energy"),
    ("papers on glaciers across our collection", "papers on glaciers"),
    ("How do library catalogues rank books?", "How do library catalogues rank books?"),
])
def test_the_library_named_as_the_place_is_not_searched_for(question: str, searched: str) -> None:
    assert cues.without_library_words(question) == searched



@pytest.mark.parametrize(("question", "term"), [
    ("What is tidal resonance in estuaries?", "tidal resonance"),
    ("what does over-wintering mean for bees?", "over-wintering"),
    ("define the hive mind hypothesis", "hive mind hypothesis"),
    ("what's the lowest salinity the reef survives?", ""),  # not a definition
    ("how do glaciers move?", ""),
    # an owner is context; a paper's parts are no term to define
    ("Explain Tidebench's resonance model in detail.", ""),
    ("Explain the survey’s salinity gradient in detail.", "salinity gradient"),
    ("what's the lowest bit-width TideNet manages for forecasting", ""),  # a clause, no term
    ("What is the main contribution of the glacier paper?", ""),
    ("What are the limitations of the survey?", ""),
])
def test_definition_questions_name_their_term(question: str, term: str) -> None:
    assert cues.defined_term(question) == term


@pytest.mark.parametrize(("question", "unit"), [
    ("How many PDFs per second can the toolkit process on one CPU?", "second"),
    ("how many tokens per GPU did they train with?", "gpu"),
    ("What throughput in queries per second does the index reach?", ""),  # no count cue
    ("How many participants took part in each session?", ""),  # not a unit of time or work
    ("What is the error per pixel?", ""),
])
def test_rate_questions_name_their_unit(question: str, unit: str) -> None:
    assert cues.rate_unit(question) == unit



@pytest.mark.parametrize(("question", "upon"), [
    ("Which 2023 papers improve on TideNet, and by how much?", "TideNet"),
    ("Which papers outperform GlowNet-50 on the harbour benchmark?", "GlowNet-50"),
    ("What papers are better than Orca-3 at counting fish?", "Orca-3"),
    ("What is a tide gauge?", ""),
])
def test_what_a_question_asks_to_be_improved_upon(question: str, upon: str) -> None:
    assert cues.improved_upon(question) == upon


@pytest.mark.parametrize(("sentence", "objects"), [
    ("BuoyNet improves the TideNet and WaveNet models using two novel techniques.",
     ["the TideNet and WaveNet models"]),
    # what is outperformed are the baselines; TideNet is where (a workload)
    ("Our planner outperforms greedy and evolutionary baselines on TideNet, GlowNet-101 and "
     "GlowNet-50.", ["greedy and evolutionary baselines"]),
    ("It achieves improvements on HarbourQA by +0.9%.", []),  # "improvements on" a benchmark
    ("Our buoy beats Orca-3 while using half the power.", ["Orca-3"]),
])
def test_what_a_sentence_improves_on(sentence: str, objects: list[str]) -> None:
    assert cues.improves_on(sentence) == objects


@pytest.mark.parametrize(("question", "attribute"), [
    ("What license is the buoy dataset released under?", "license"),
    ("Which optimizer did they train the tide model with?", "optimizer"),
    ("Which hardware did they run the tide model on?", "hardware"),
    ("under what condition are the buoys accurate?", ""),  # an "if" clause answers it
    ("What does the buoy paper propose?", ""),  # a verb, not a kind of thing
    ("What method do they use?", ""),  # a part of the paper: answered from the passages
    ("What accuracy does it reach?", ""),  # a quantity: checked as one
    ("Which recent paper studies tides?", ""),  # an adjective follows: no single noun
])
def test_the_kind_of_thing_a_question_asks_for(question: str, attribute: str) -> None:
    assert cues.asked_attribute(question) == attribute


@pytest.mark.parametrize(("question", "link"), [
    ("What's the arXiv id of the buoy paper?", True),
    ("Give me a link to the tide gauge paper", True),
    ("Where can I read the buoy paper?", True),
    ("What is the DOI of the buoy paper?", True),
    ("How do buoys link tide height to GPS?", False),
    ("Which papers study links between tides and storms?", False),
])
def test_link_cues(question: str, link: bool) -> None:
    assert cues.asks_link(question) == link
