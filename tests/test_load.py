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
from load_fixtures import load_avg, run_users, usage
from stress import record, size

pytestmark = [pytest.mark.slow, pytest.mark.server]
served_app = load_fixtures.served_app


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
    users, questions = size(2, 4), size(1, 3)
    _burst(served_app, "Load burst, local model (llamacpp)",
           users, 3600, f"{users} gradio_client users x {questions} questions to `/ask` with "
           "the local model (llamacpp, Gemma 3 270M) against `python app.py`",
           backend="llamacpp", questions=questions)
