"""Soak (issue 12, item 12): `python app.py` answers questions from 2 users without pause while
papers are uploaded periodically; its RSS, open files (/proc/<pid>/fd) and threads must not
grow beyond a bound.

Bounds, each comparing like with like. At rest (after a warm-up of the same 2 users for 30 s, 2
minutes in `make stress`, with one upload; and at the end, after 35 quiet seconds, since an
upload's reload closes the replaced store 30 s later, `rag.store._CLOSE_AFTER_S`): RSS grows
less than 150 MB, and open files and threads are back to the warm-up figure within 10. That is
the leak check. While it runs, RSS stays less than 400 MB (300 MB in `make stress`) above the
resting figure: an upload's parse, embedding and two open stores (the new one and the replaced
one during its handover) are working memory that comes back, and this bound catches a runaway.
`make test`: 60 s, an upload every 15 s; `make stress`: 30 minutes, an upload every 60 s.
The uploads alternate a Markdown paper (5 names, rewritten each time) and a real PDF, so the
library keeps its size while the indexer, the PDF worker and the BM25 refresh keep working."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import load_fixtures
import pytest
from conftest import SHARED
from load_fixtures import Tally, Usage, ask_loop, load_avg, run_users, sample_every, usage
from stress import record, size

from rag.store import _CLOSE_AFTER_S

pytestmark = [pytest.mark.slow, pytest.mark.server]
served_app = load_fixtures.served_app

REST_GROWTH_MB = 150  # at rest, end against start: see the module docstring
PEAK_ABOVE_REST_MB = size(400, 300)  # while answering and uploading
FD_MARGIN = THREAD_MARGIN = 10
PDF = SHARED / "pdfs" / "real" / "multi-column-2p.pdf"


def _paper(folder: Path, i: int) -> Path:
    if i % 2:
        path = folder / f"soak-real-{i % 3}.pdf"
        shutil.copyfile(PDF, path)
        return path
    path = folder / f"soak-{i % 5}.md"
    path.write_text(f"# Soak Paper {i % 5}: Quokka Routing Round {i}\n\nAuthors: Ada Quill\n\n"
                    f"## Abstract\n\nRound {i} of the soak: quokka routing sends each token to "
                    f"{i % 7 + 2} pouch experts and reaches {50 + i % 40} accuracy.\n")
    return path


def test_soak_questions_and_uploads(served_app: Any, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    seconds, every, warm_s = size(60, 1800), size(15, 60), size(30, 120)
    pid, url = served_app.proc.pid, served_app.url
    uploader = Client(url + "/", verbose=False)
    folder = tmp_path / "papers"
    folder.mkdir()
    clients = [Client(url + "/", verbose=False) for _ in range(2)]
    # warm-up, as the run but shorter: the same clients asking at once while a paper is
    # uploaded, so models, thread pools, connections and allocator arenas are all in use
    warm = threading.Thread(target=run_users, args=(url, 2, warm_s, clients), daemon=True)
    warm.start()
    uploader.predict([handle_file(str(_paper(folder, 1)))], "", api_name="/upload")
    warm.join(warm_s + 600)
    time.sleep(5)
    base, load_before = usage(pid), load_avg()
    samples: list[tuple[float, Usage]] = []
    stop = threading.Event()
    sampler = sample_every(pid, 5.0, stop, lambda t, u: samples.append((t, u)))
    tally = Tally()
    stop_at = time.monotonic() + seconds
    users = [threading.Thread(target=ask_loop, args=(url, tally, stop_at), daemon=True,
                              kwargs={"offset": i, "client": clients[i]}) for i in range(2)]
    for u in users:
        u.start()
    uploads, upload_errors = 0, []
    i = 2
    while time.monotonic() < stop_at:
        try:
            status = uploader.predict([handle_file(str(_paper(folder, i)))], "",
                                      api_name="/upload")[0]
            uploads += 1
            if "Added" not in status:
                upload_errors.append(status[:200])
        except Exception as exc:
            upload_errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        i += 1
        time.sleep(max(0.0, min(every, stop_at - time.monotonic())))
    for u in users:
        u.join(600)
    # quiet: a store replaced by an upload's reload is closed this long after (searches under
    # way finish on it first), with its files and threads
    time.sleep(_CLOSE_AFTER_S + 5)
    stop.set()
    sampler.join(10)
    end, load_after = usage(pid), load_avg()
    peak = max([end.rss_mb, *(u.rss_mb for _, u in samples)])
    trend = " -> ".join(f"{u.rss_mb:.0f}" for _, u in samples[:: max(1, len(samples) // 6)])
    p50, p95, p99 = tally.percentiles()
    fds_peak = max([end.fds, *(u.fds for _, u in samples)])
    threads_peak = max([end.threads, *(u.threads for _, u in samples)])
    problems = []
    if end.rss_mb - base.rss_mb >= REST_GROWTH_MB:
        problems.append(f"RSS at rest grew {end.rss_mb - base.rss_mb:.0f} MB")
    if peak - base.rss_mb >= PEAK_ABOVE_REST_MB:
        problems.append(f"RSS peaked {peak - base.rss_mb:.0f} MB above rest")
    if end.fds > base.fds + FD_MARGIN:
        problems.append(f"open files {base.fds} -> {end.fds}")
    if end.threads > base.threads + THREAD_MARGIN:
        problems.append(f"threads {base.threads} -> {end.threads}")
    if tally.errors or upload_errors:
        problems.append(f"errors: {(tally.errors + upload_errors)[:2]}")
    summary = (f"answered {len(tally.latencies)} (p50 {p50} s, p95 {p95} s, p99 {p99} s), busy "
               f"{len(tally.busy)}, uploads {uploads}; RSS {base.rss_mb:.0f} MB after warm-up, "
               f"peak {peak:.0f}, end at rest {end.rss_mb:.0f} (growth at rest "
               f"{end.rss_mb - base.rss_mb:+.0f} MB, bound {REST_GROWTH_MB}; peak "
               f"{peak - base.rss_mb:.0f} MB above rest, bound {PEAK_ABOVE_REST_MB}; samples "
               f"{trend}); open files {base.fds} -> {end.fds} (peak {fds_peak}); "
               f"threads {base.threads} -> {end.threads} (peak {threads_peak}); {load_before} "
               f"before, {load_after} after")
    print(summary)
    record("Soak: questions and uploads", f"`python app.py` over the corpus index: 2 gradio_client"
           f" users asking `/ask` without pause for {seconds} s after {warm_s} s of warm-up, an upload every "
           f"{every} s "
           "(Markdown, 5 names rewritten, and a real 2-page PDF, alternately); RSS, "
           "/proc/<pid>/fd and threads sampled every 5 s", f"1 run, {seconds} s",
           summary, "; ".join(problems) or "—")
    assert not problems, problems
