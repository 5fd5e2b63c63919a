"""The `rag` command end to end, as a user runs it: real process, real store, JSON outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def rag(*args: str, data_dir, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600, check=check)


def test_index_json_keys_and_second_run(corpus_settings) -> None:
    out = json.loads(rag("index", "--json", data_dir=corpus_settings.data_dir).stdout)
    assert {"papers", "chunks_added", "chunks_unchanged", "chunks_removed", "skipped",
            "seconds"} <= set(out)
    assert out["chunks_added"] == 0 and out["papers"] == 405 and out["skipped"] == []


def test_index_reports_bad_files_and_goes_on(tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good Paper\n\nIt has text that says something useful.\n")
    (docs / "empty.txt").write_text("")
    (docs / "bin.pdf").write_bytes(b"\x00\x01\x02garbage")
    proc = rag("index", str(docs), data_dir=tmp_path / "data")
    assert "1 papers from 3 files" in proc.stdout
    assert "empty.txt" in proc.stderr and "bin.pdf" in proc.stderr
    # the app's next start reads the library back instead of rebuilding it (rag.snapshot)
    assert len(list((tmp_path / "data" / "snapshot").glob("*.pkl"))) == 1
    out = json.loads(rag("index", str(docs), "--json", data_dir=tmp_path / "data").stdout)
    assert len(out["skipped"]) == 2 and out["chunks_added"] == 0


def test_search_papers_stats_config(corpus_settings) -> None:
    d = corpus_settings.data_dir
    hits = json.loads(rag("search", "disentangled attention", "--json", data_dir=d).stdout)
    assert hits[0]["title"].lower().startswith("deberta") and hits[0]["venue"] == "ICLR"
    assert {"rank", "score", "title", "venue", "year", "text"} <= set(hits[0])
    papers = json.loads(rag("papers", "--venue", "NeurIPS", "--year", "2020", "--json",
                            data_dir=d).stdout)
    assert papers and all(p["venue"] == "NeurIPS" and p["year"] == 2020 for p in papers)
    assert any(p["title"] == "On the training dynamics of deep networks with L2 regularization"
               for p in papers)
    stats = json.loads(rag("stats", "--json", data_dir=d).stdout)
    assert stats["papers"] == 405 and stats["chunks"] > 500
    cfg = json.loads(rag("config", "--json", data_dir=d).stdout)
    assert cfg["data_dir"] == str(d) and cfg["collection"].startswith("papers-")
    human = rag("papers", "--author", "Gur-Ari", data_dir=d).stdout
    assert "Gur-Ari" in human


def test_ask_json_and_errors(corpus_settings) -> None:
    d = corpus_settings.data_dir
    out = json.loads(rag("ask", "Who wrote Primal Wasserstein Imitation Learning?", "--json",
                         data_dir=d).stdout)
    assert "Dadashi" in out["answer"] and out["sources"][0]["n"] == 1
    bad = rag("ask", "anything", "--backend", "nope", data_dir=d, check=False)
    assert bad.returncode == 2 and "unknown LLM backend 'nope'" in bad.stderr


def test_chat_keeps_history(corpus_settings) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(corpus_settings.data_dir)}
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "chat"], env=env, text=True,
                          input="What's DeBERTa?\nwho wrote it?\n\n", capture_output=True,
                          timeout=600, check=True)
    assert "Pengcheng He" in proc.stdout


def test_eval_retrieval_only_writes_results(corpus_settings, tmp_path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "x", "type": "authors", "question": "Who wrote DeBERTa?",
                                     "sources": [{"file": "f", "title": "Deberta"}],
                                     "must_contain": [["Pengcheng He"]]}) + "\n")
    out = tmp_path / "r.jsonl"
    summary = json.loads(rag("eval", str(questions), "--out", str(out), "--retrieval-only",
                             "--json", data_dir=corpus_settings.data_dir).stdout)
    assert summary["title@5"] == 1.0 and summary["answer"] == 0.0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["answer"] == "" and record["sources"][0]["title"].lower().startswith("deberta")
