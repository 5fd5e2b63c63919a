"""The local model runs in its own process: a crash, a kill or a hang there ends one answer
(which falls back to the sources with a note), never the app; the next question starts a fresh
model process; and no model process outlives the app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import app_fixtures
import pytest
from conftest import STUB

import rag.llms.model_process as model_process
from rag.chain import Pipeline
from rag.errors import LLMError, ModelStoppedError
from rag.llms import LlamaCppLLM, smollm2_model_path
from rag.llms.base import Message
from rag.settings import Settings

app_settings = app_fixtures.app_settings
app_server = app_fixtures.app_server
client = app_fixtures.client

FAKE = STUB / "fake_model_server.py"
QUESTION = [Message("user", "Say hello.")]
NOTE_END = "answered from the sources without it.*"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still has a pid; it has ended all the same
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch):
    """Swap the model process for the misbehaving stand-in; returns a setter for its mode."""
    monkeypatch.setattr(model_process, "server_command", lambda: [sys.executable, str(FAKE)])

    def mode(name: str) -> None:
        monkeypatch.setenv("FAKE_MODEL_MODE", name)

    return mode


def _llm(tmp_path: Path, **kw: object) -> LlamaCppLLM:
    settings = Settings(data_dir=tmp_path / "data", llm_model_path=smollm2_model_path(), **kw)
    return LlamaCppLLM(settings)


# --- with the stand-in: each failure kind, exactly ------------------------------------------------
def test_a_segfault_mid_answer_is_named_and_the_next_call_starts_afresh(
        tmp_path: Path, fake_server) -> None:
    fake_server("segfault")
    llm = _llm(tmp_path)
    pieces: list[str] = []
    with pytest.raises(ModelStoppedError, match=r"the local model stopped \(signal 11"):
        pieces.extend(llm.stream(QUESTION, max_tokens=16))
    assert "".join(pieces) == "Partial answer "  # what came before the crash was streamed
    first = llm.process.pid
    with pytest.raises(ModelStoppedError):
        list(llm.stream(QUESTION, max_tokens=16))
    assert llm.process.starts == 2 and llm.process.pid != first
    llm.close()


def test_a_model_that_never_answers_is_stopped_after_the_timeout(
        tmp_path: Path, fake_server) -> None:
    fake_server("hang")
    llm = _llm(tmp_path, llm_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(ModelStoppedError, match=r"did not answer within 2s and was stopped"):
        list(llm.stream(QUESTION, max_tokens=16))
    assert time.monotonic() - started < 10
    pid = llm.process.pid
    assert pid is not None and _wait_gone(pid, 5), "the hung model process was not killed"
    llm.close()


def test_a_crash_while_loading_is_a_stopped_model_not_a_bad_file(
        tmp_path: Path, fake_server) -> None:
    fake_server("crash-on-load")
    llm = _llm(tmp_path)
    with pytest.raises(ModelStoppedError, match=r"stopped \(signal 11 \(SIGSEGV\)\) while loading"):
        list(llm.stream(QUESTION, max_tokens=16))


def test_the_answer_falls_back_to_the_sources_with_a_note(
        pipeline: Pipeline, tmp_path: Path, fake_server) -> None:
    fake_server("segfault")
    settings = pipeline.settings.model_copy(update={"llm_model_path": smollm2_model_path(),
                                                    "llm_timeout_s": 31.0})
    local = Pipeline(settings, retriever=pipeline.retriever)
    steps = list(local.answer_stream("What is DeBERTa?", backend="llamacpp"))
    final = steps[-1]
    assert final.text.endswith(NOTE_END), final.text
    assert "the local model stopped (signal 11 (SIGSEGV))" in final.text
    assert final.citations and not final.abstained
    assert any("Partial answer" in s.text for s in steps[:-1])  # the raw stream was shown
    # the extractive backend is untouched meanwhile
    assert not local.answer("What is DeBERTa?", backend="extractive").text.endswith(NOTE_END)


def test_no_model_process_outlives_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to clean up: the child must notice by itself."""
    script = textwrap.dedent(f"""
        import sys, time
        import rag.llms.model_process as mp
        mp.server_command = lambda: [sys.executable, {str(FAKE)!r}]
        p = mp.ModelProcess(__import__('pathlib').Path('x.gguf'), n_ctx=512, threads=1)
        p.ensure()
        print(p.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env={**os.environ, "FAKE_MODEL_MODE": "hang"})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait(10)
    assert _wait_gone(child, 10), f"model process {child} outlived its parent"


def test_closing_stops_the_model_process(tmp_path: Path, fake_server) -> None:
    fake_server("hang")
    llm = _llm(tmp_path)
    llm.process.ensure()
    pid = llm.process.pid
    assert pid is not None and _alive(pid)
    model_process.stop_all()  # what runs at interpreter exit
    assert _wait_gone(pid, 5)


def test_a_file_that_is_not_gguf_names_the_file_and_the_fix(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    with pytest.raises(LLMError, match=r"not a GGUF file.*RAG_LLM_MODEL_PATH") as err:
        LlamaCppLLM(Settings(data_dir=tmp_path, llm_model_path=junk))
    assert str(junk) in str(err.value) and not isinstance(err.value, ModelStoppedError)


def test_a_gguf_that_crashes_llama_cpp_on_load_ends_only_its_process(tmp_path: Path) -> None:
    """llama.cpp aborts (SIGABRT) on this truncated header: in the app that would be fatal."""
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    llm = LlamaCppLLM(Settings(data_dir=tmp_path, llm_model_path=bad))
    with pytest.raises(LLMError) as err:
        llm.count_tokens("hello")
    assert "while loading" in str(err.value) or "RAG_LLM_MODEL_PATH" in str(err.value)


# --- with the real model --------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_of_the_real_model_mid_answer_then_the_next_question_works(
        pipeline: Pipeline) -> None:
    settings = pipeline.settings.model_copy(update={"llm_model_path": smollm2_model_path(),
                                                    "llm_timeout_s": 32.0})
    local = Pipeline(settings, retriever=pipeline.retriever)
    question = "What is DeBERTa?"
    stream = local.answer_stream(question, backend="llamacpp")
    from rag.llms import get_llm

    llm = get_llm("llamacpp", settings)
    assert isinstance(llm, LlamaCppLLM)
    final = None
    killed = None
    for step in stream:
        if killed is None and step.text and llm.process.pid:
            killed = llm.process.pid
            os.kill(killed, signal.SIGKILL)
        final = step
    assert killed is not None and final is not None
    assert final.text.endswith(NOTE_END), final.text
    assert "the local model stopped (signal 9 (SIGKILL))" in final.text
    again = local.answer(question, backend="llamacpp")
    assert not again.text.endswith(NOTE_END) and llm.process.pid != killed
    assert llm.process.starts == 2
    llm.close()


@pytest.mark.slow
@pytest.mark.server
def test_a_crashing_model_never_takes_the_app_down(client, fake_server) -> None:
    """Over real HTTP: the app answers from the sources with the note, keeps serving other
    backends, and the next llamacpp question starts a fresh model process."""
    model_process.stop_all()  # model processes other tests started use the real server
    fake_server("segfault")
    try:
        first = client.predict("What is DeBERTa?", None, "llamacpp", api_name="/ask")
        assert first["answer"].endswith(NOTE_END) and "signal 11" in first["answer"]
        assert first["sources"]
        other = client.predict("What is DeBERTa?", None, "extractive", api_name="/ask")
        assert other["answer"] and not other["answer"].endswith(NOTE_END)
        again = client.predict("What is DeBERTa?", None, "llamacpp", api_name="/ask")
        assert again["answer"].endswith(NOTE_END)  # a fresh process, which crashed again
    finally:
        model_process.stop_all()
