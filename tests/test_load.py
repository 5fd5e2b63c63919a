"""Load bursts (issue 12, item 11): many gradio_client users asking `/ask` of one `python app.py`
at once. The only failure allowed is a clean "busy, try again" refusal; every other request is
answered. Reported: p50/p95/p99 latency and the serving process's RSS before and after.

`make test`: 5 users for 20 s (extractive) and 2 users x 1 question (local model);
`make stress`: 20 users for 2 minutes and 4 users x 3 questions."""

from __future__ import annotations

import time
from typing import Any

import load_fixtures
import pytest
from app_fixtures import copy_index, start_app, stop_app
from load_fixtures import load_avg, run_users, usage
from stress import STRESS, record, size

pytestmark = [pytest.mark.slow, pytest.mark.server]
served_app = load_fixtures.served_app


@pytest.fixture
def small_queue_app(corpus_settings: Any, tmp_path: Any) -> Any:
    """`python app.py` over a copy of the corpus index whose queue holds 2 requests."""
    data = copy_index(corpus_settings.data_dir, tmp_path / "data")
    (tmp_path / "docs").mkdir()
    app = start_app([], data, tmp_path / "app.log",
                    env={"RAG_CORPUS_DIR": str(tmp_path / "docs"), "RAG_QUEUE_SIZE": "2"})
    try:
        yield app
    finally:
        stop_app(app)


def _burst(app: Any, prop: str, users: int, seconds: float, what: str, **kw: Any) -> None:
    # warm: the first answer loads the models
    run_users(app.url, 1, 600, **{**kw, "questions": 1})
    before, load_before = usage(app.proc.pid), load_avg()
    tally, wall = run_users(app.url, users, seconds, **kw)
    time.sleep(2)
    after, load_after = usage(app.proc.pid), load_avg()
    p50, p95, p99 = tally.percentiles()
    answered = len(tally.latencies)
    problem = "—"
    if tally.errors:
        problem = f"**{len(tally.errors)} errors**: {tally.errors[0]}"
    requests = answered + len(tally.busy) + len(tally.errors)
    record(prop, what, f"{users} users, {wall:.0f} s, {requests} requests",
           f"answered {answered} ({answered / wall:.2f}/s), busy refusals {len(tally.busy)}, "
           f"other errors {len(tally.errors)}; latency p50 {p50} s, p95 {p95} s, p99 {p99} s; "
           f"server RSS {before.rss_mb:.0f} -> {after.rss_mb:.0f} MB, threads {before.threads} "
           f"-> {after.threads}, fds {before.fds} -> {after.fds}; {load_before} before, "
           f"{load_after} after", problem)
    print(f"{prop}: {users} users {wall:.0f} s answered {answered} busy {len(tally.busy)} "
          f"errors {len(tally.errors)} p50/p95/p99 {p50}/{p95}/{p99} s RSS {before.rss_mb} -> "
          f"{after.rss_mb} MB ({load_before}; {load_after})")
    assert not tally.errors, tally.errors[:5]
    assert answered > 0
    assert app.proc.poll() is None, "the app died under load"


def test_burst_of_users_extractive(served_app: Any) -> None:
    users, seconds = size(5, 20), size(20, 120)
    _burst(served_app, "Load burst, extractive",
           users, seconds, f"{users} gradio_client users asking `/ask` (6 questions in turn) "
           f"for {seconds} s against `python app.py` over the corpus index, extractive backend",
           backend="extractive")


def test_burst_of_users_local_model(served_app: Any) -> None:
    """`make test`: 2 users, one question each; `make stress`: 4 users asking for 2 minutes."""
    if STRESS:
        users, seconds, kw = 4, 120.0, {}
        what = "4 gradio_client users asking `/ask` (6 questions in turn) for 120 s"
    else:
        users, seconds, kw = 2, 3600.0, {"questions": 1}
        what = "2 gradio_client users x 1 question to `/ask`"
    _burst(served_app, "Load burst, local model (llamacpp)", users, seconds,
           f"{what} with the local model (llamacpp, Gemma 3 270M) against `python app.py`",
           backend="llamacpp", **kw)


def test_a_full_queue_refuses_cleanly_and_serves_the_rest(small_queue_app: Any) -> None:
    """More users than the queue holds (RAG_QUEUE_SIZE=2): the extra ones get Gradio's "Queue is
    full, try again", never another error, and the app keeps answering."""
    run_users(small_queue_app.url, 1, 600, backend="extractive", questions=1)  # warm
    users, seconds = size(12, 60), size(15, 60)
    tally, wall = run_users(small_queue_app.url, users, seconds, backend="extractive")
    p50, p95, p99 = tally.percentiles()
    record("Load burst, bounded queue", f"{users} gradio_client users asking `/ask` for "
           f"{seconds} s of `python app.py` with RAG_QUEUE_SIZE=2",
           f"{users} users, {wall:.0f} s", f"answered {len(tally.latencies)}, busy refusals "
           f"{len(tally.busy)} ({tally.busy[0] if tally.busy else '—'}), other errors "
           f"{len(tally.errors)}; latency p50 {p50} s, p95 {p95} s, p99 {p99} s",
           f"**{len(tally.errors)} errors**: {tally.errors[0]}" if tally.errors else "—")
    assert not tally.errors, tally.errors[:5]
    assert tally.busy, "no request was refused: the queue is not bounded"
    assert tally.latencies, "nothing was answered"
    assert small_queue_app.proc.poll() is None
