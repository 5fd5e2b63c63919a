"""Helpers for the load and soak tests: the app as `python app.py` over a copy of the corpus
index, users driving it through gradio_client, and the serving process's RSS, open files and
threads read from /proc."""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import AppProcess, copy_index, start_app, stop_app

from rag.settings import Settings

QUESTIONS = ("What is DeBERTa?", "Which papers improve BERT, and by how much?",
             "What does RoBERTa change in pretraining?", "How do sparse transformers scale?",
             "What is knowledge distillation used for?", "Which papers study adversarial "
             "robustness?")
# The one failure a user under load may see: the app refusing, politely, for now.
BUSY = re.compile(r"busy|try again|queue is full", re.IGNORECASE)


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return Usage(round(rss, 1), len(os.listdir(f"/proc/{pid}/fd")), threads)


def load_avg() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


@pytest.fixture
def served_app(corpus_settings: Settings, tmp_path: Path) -> Iterator[AppProcess]:
    """`python app.py` serving a private copy of the corpus index (nothing indexed at start)."""
    data = copy_index(corpus_settings.data_dir, tmp_path / "data")
    docs = tmp_path / "docs"
    docs.mkdir()
    app = start_app(["--max-upload-mb", "10"], data, tmp_path / "app.log",
                    env={"RAG_CORPUS_DIR": str(docs)})
    try:
        yield app
    finally:
        stop_app(app)


@dataclass
class Tally:
    """What the users saw: latencies (s) of answers, busy refusals, anything else."""

    latencies: list[float] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def percentiles(self) -> tuple[float, float, float]:
        if len(self.latencies) < 2:
            v = self.latencies[0] if self.latencies else float("nan")
            return v, v, v
        q = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return round(q[49], 2), round(q[94], 2), round(q[98], 2)


def ask_loop(url: str, tally: Tally, stop_at: float, *, backend: str = "extractive",
             questions: int | None = None, offset: int = 0, client: Any = None) -> None:
    """One user: a gradio_client (`client`, or a new one) asking questions until `stop_at` (or
    `questions` of them)."""
    from gradio_client import Client

    try:
        client = client or Client(url + "/", verbose=False)
    except Exception as exc:
        with tally.lock:
            (tally.busy if BUSY.search(str(exc)) else tally.errors).append(f"connect: {exc}")
        return
    asked = 0
    while time.monotonic() < stop_at and (questions is None or asked < questions):
        q = QUESTIONS[(offset + asked) % len(QUESTIONS)]
        asked += 1
        started = time.perf_counter()
        try:
            answer = client.predict(q, None, backend, api_name="/ask")
        except Exception as exc:  # classified: busy refusals are allowed, nothing else
            with tally.lock:
                (tally.busy if BUSY.search(str(exc)) else tally.errors).append(
                    f"{type(exc).__name__}: {str(exc)[:200]}")
            time.sleep(0.5)  # a refused user waits a moment before asking again, as told
            continue
        took = time.perf_counter() - started
        with tally.lock:
            if isinstance(answer, dict) and answer.get("answer"):
                tally.latencies.append(took)
            else:
                tally.errors.append(f"empty answer: {str(answer)[:200]}")


def run_users(url: str, users: int, seconds: float, clients: list[Any] | None = None,
              **kw: Any) -> tuple[Tally, float]:
    """`users` threads running `ask_loop` for `seconds` (with `clients`, one each, if given);
    returns the tally and the wall time."""
    tally = Tally()
    stop_at = time.monotonic() + seconds
    started = time.perf_counter()
    threads = [threading.Thread(target=ask_loop, args=(url, tally, stop_at), daemon=True,
                                kwargs={**kw, "offset": i,
                                        "client": clients[i] if clients else None})
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 900)
    return tally, time.perf_counter() - started


def sample_every(pid: int, interval: float, stop: threading.Event,
                 on: Callable[[float, Usage], None]) -> threading.Thread:
    """Call `on(elapsed, usage(pid))` every `interval` s until `stop` is set."""

    def loop() -> None:
        started = time.monotonic()
        while not stop.wait(interval):
            try:
                on(time.monotonic() - started, usage(pid))
            except OSError:
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
