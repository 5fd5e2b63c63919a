"""The LLM path with the real local model (the default llamacpp GGUF) over the shipped corpus:
whatever the tiny model writes, the final text holds only sentences that carry a [n] which
verifies against that source, each said once. The raw text may stream first."""

from __future__ import annotations

import pytest

from rag.verify import check_sentence, citations_in, repeats, split_sentences

pytestmark = pytest.mark.slow

DEBERTA = [{"role": "user", "content": "What is DeBERTa?"},
           {"role": "assistant", "content": "DeBERTa improves BERT and RoBERTa with "
                                            "disentangled attention and an enhanced mask "
                                            "decoder [1]."}]
QUESTIONS = [  # (question, history): answerable from the corpus, so the model gets to write
    ("How fast is BagCert at certifying CIFAR10 against patches?", []),
    ("What is the boredom trap in neural text decoding?", []),
    ("How did the single DeBERTa model do on SuperGLUE compared with humans?", []),
    ("how many parameters does its largest version have?", DEBERTA),
]


def _check_final(question: str, final, earlier: list[str] = []) -> bool:  # noqa: B006
    """Assert what the user is shown; True when it is the model's own (verified) text.
    `earlier`: the previous answer's sentences."""
    assert not final.abstained, (question, final.notes)
    if "generate_s" not in final.timings:
        return False  # a table or summary: the model was not asked
    if any("showing the extractive answer" in n for n in final.notes):
        return False  # nothing the model wrote passed: the extractive answer stands
    passages = [f"{h.paper.title}\n{h.chunk.text}" for h in final.sources]
    sentences = split_sentences(final.text)
    assert sentences, (question, final.text)
    for i, sentence in enumerate(sentences):
        cited = citations_in(sentence)
        assert cited, (question, sentence, final.text)
        check = check_sentence(sentence, passages, cited)
        assert check.verified, (question, sentence, check.reason)
        assert not any(repeats(sentence, s) for s in sentences[:i]), (question, final.text)
        # nor a sentence of the previous answer in the conversation
        assert not any(repeats(sentence, s) for s in earlier), (question, sentence, earlier)
    # every shown sentence is one the checks let through, in order
    assert sentences == [c.text for c in final.sentences if c.verified], final.sentences
    assert final.citations == sorted({n for s in sentences for n in citations_in(s)})
    return True


def test_every_shown_sentence_is_cited_verified_and_said_once(pipeline) -> None:
    from rag.chain import Pipeline
    from rag.llms import smollm2_model_path

    smollm2 = Pipeline(pipeline.settings.model_copy(
        update={"llm_model_path": smollm2_model_path()}), retriever=pipeline.retriever)
    written: list[str] = []
    for name, pipe in (("default (Gemma 3 270M)", pipeline), ("SmolLM2-135M", smollm2)):
        for question, history in QUESTIONS:
            steps = list(pipe.answer_stream(question, history, backend="llamacpp"))
            earlier = [s for t in history if t["role"] == "assistant"
                       for s in split_sentences(t["content"])]
            if _check_final(question, steps[-1], earlier):
                written.append(f"{name}: {question}")
    # the property must have held on real model output, not only on extractive fallbacks
    assert len(written) >= 2, written
