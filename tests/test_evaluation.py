"""`rag eval` metrics equal shared/eval/score.py's, and the dev set's retrieval targets hold."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

from rag.evaluation import format_summary, load_jsonl, run_questions, score
from rag.responders import make_responder

SCORE_PY = SHARED / "eval" / "score.py"
DEV = SHARED / "eval" / "dev.jsonl"
needs_shared = pytest.mark.skipif(not SCORE_PY.exists(), reason="shared/eval beside the checkout")


def _reference():
    spec = importlib.util.spec_from_file_location("reference_score", SCORE_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SYNTHETIC_Q = [
    {"id": "a", "type": "fact", "question": "q", "sources": [{"file": "f", "title": "Deep Nets"}],
     "must_contain": [["78%", "78 percent"]]},
    {"id": "b", "type": "list", "question": "q", "sources": [{"file": "f", "title": "Long Title Here"}],
     "must_contain": [["alpha"], ["beta"]]},
    {"id": "c", "type": "unanswerable", "question": "q", "sources": [], "must_contain": []},
    {"id": "d", "type": "fact", "question": "q", "sources": [{"file": "f", "title": "X"}],
     "must_contain": [["never"]]},
]
SYNTHETIC_R = [
    {"id": "a", "answer": "It needs  78%\nless.", "abstained": False, "latency_s": 0.5, "ttft_s": 0.1,
     "sources": [{"title": "Deep Nets!", "source": "f", "text": "x" * 1600 + "78%"}]},
    {"id": "b", "answer": "x" * 1200 + " alpha beta", "abstained": False, "latency_s": 1.5,
     "sources": [{"title": "Long Title", "source": "f", "text": "alpha and BETA"}]},
    {"id": "c", "answer": "none", "abstained": True, "latency_s": 0.2, "sources": []},
]


@needs_shared
def test_metrics_identical_to_score_py_on_synthetic_dump() -> None:
    assert score(SYNTHETIC_Q, SYNTHETIC_R, 5) == _reference().score(SYNTHETIC_Q, SYNTHETIC_R, 5)
    assert score(SYNTHETIC_Q, SYNTHETIC_R, 1) == _reference().score(SYNTHETIC_Q, SYNTHETIC_R, 1)


@needs_shared
@pytest.mark.slow
def test_dev_retrieval_meets_targets_and_matches_score_py(corpus_settings, pipeline, tmp_path) -> None:
    questions = load_jsonl(DEV)
    respond = make_responder(corpus_settings, k=5, retrieval_only=True, pipeline=pipeline)
    results = list(run_questions(questions, respond))
    ours = score(questions, results, 5)
    assert ours == _reference().score(questions, results, 5)
    dump = tmp_path / "results.jsonl"
    dump.write_text("".join(json.dumps(r) + "\n" for r in results))
    printed = subprocess.run([sys.executable, str(SCORE_PY), str(DEV), str(dump)],
                             capture_output=True, text=True, check=True).stdout
    assert printed.strip() == format_summary(ours).strip()
    assert ours["evidence@5"] >= 0.95 and ours["title@5"] >= 0.95, ours
    for qtype, row in ours["by_type"].items():
        if qtype != "unanswerable":
            assert row["evidence"] >= 0.85 and row["title"] >= 0.85, (qtype, row)


@needs_shared
@pytest.mark.slow
def test_dev_extractive_answers_meet_targets(corpus_settings, pipeline) -> None:
    questions = load_jsonl(DEV)
    respond = make_responder(corpus_settings, backend="extractive", k=5, pipeline=pipeline)
    s = score(questions, list(run_questions(questions, respond)), 5)
    assert s["answer"] >= 0.80 and s["abstain"] >= 0.75 and s["answered"] >= 0.95, s


def test_follow_up_questions_are_asked_with_history() -> None:
    seen = []

    def respond(question, history):
        from rag.evaluation import Response

        seen.append((question, [t["content"] for t in history]))
        return Response(answer=f"re: {question}", abstained=False, sources=[])

    q = [{"id": "f", "type": "followup", "question": ["first?", "second?"], "sources": [],
          "must_contain": []}]
    (record,) = run_questions(q, respond)
    assert seen == [("first?", []), ("second?", ["first?", "re: first?"])]
    assert record["answer"] == "re: second?" and record["id"] == "f"
    assert set(record) == {"id", "answer", "abstained", "latency_s", "ttft_s", "sources"}


def test_load_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}\n')
    assert [r["id"] for r in load_jsonl(path)] == [1, 2]
