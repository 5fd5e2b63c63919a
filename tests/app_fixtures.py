"""Fixtures for the app tests: a copy of the corpus index, the app served over real HTTP (in this
process and as `python app.py`), a loopback server that counts requests, and headless Chromium.

Test modules bind the fixtures they use (`page = app_fixtures.page`); conftest.py belongs to the
whole suite. A fixture bound in several modules is still one object per session: the session
fixtures below keep what they make in `_SHARED`, so there is one index copy, one app and one
browser however many modules ask.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for_port

from rag.settings import PROJECT_ROOT, Settings

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("RAG_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# A paper that exists only in the upload tests: its facts cannot come from the corpus.
UPLOAD_DOC = """# Quokka Attention: Sparse Marsupial Transformers

Authors: Ada Quill, Bo Tenbrook

Venue: TMLR 2024

## Abstract

Quokka attention routes every query token to exactly seven key blocks chosen by a learned
pouch router. On the Wombat-1k benchmark quokka attention reaches 91.4 accuracy while using
one third of the memory of dense attention. The pouch router is trained with a straight-through
estimator and a load-balancing loss.
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




_SHARED: dict[str, Any] = {}


def copy_index(src: Path, dst: Path) -> Path:
    """A private copy of a built store, so the app's uploads never touch the shared one."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                 ) -> Settings:
    """The corpus index (built once per session by conftest's `corpus_settings`, or copied
    from RAG_TEST_APP_INDEX, a prebuilt data dir, to save minutes in local runs)."""
    if "settings" not in _SHARED:
        prebuilt = os.environ.get("RAG_TEST_APP_INDEX")
        src = Path(prebuilt) if prebuilt else request.getfixturevalue("corpus_settings").data_dir
        data = copy_index(src, tmp_path_factory.mktemp("app") / "data")
        _SHARED["settings"] = Settings(data_dir=data, port=free_port(), max_upload_mb=2)
    settings: Settings = _SHARED["settings"]
    return settings


@dataclass
class RunningApp:
    url: str
    settings: Settings
    demo: Any
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def app_server(app_settings: Settings) -> Iterator[RunningApp]:
    """`demo` from rag.ui served in this process over real HTTP on a free port."""
    from rag.chain import Pipeline
    from rag.server import launch
    from rag.ui import build_demo

    if "app" in _SHARED:
        yield _SHARED["app"]
        return
    demo = build_demo(Pipeline(app_settings))
    url = launch(demo, app_settings, block=False, quiet=True)
    _SHARED["app"] = RunningApp(url=url.rstrip("/") + "/", settings=app_settings, demo=demo)
    try:
        yield _SHARED["app"]
    finally:
        demo.close()
        del _SHARED["app"]


@pytest.fixture(scope="session")
def client(app_server: RunningApp) -> Any:
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


@dataclass
class AppProcess:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_app(args: list[str], data_dir: Path, log: Path, timeout: float = 180.0,
              env: dict[str, str] | None = None) -> AppProcess:
    """`python app.py ARGS` with its store in `data_dir` (and extra `env` variables); waits
    until the port answers."""
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "ANONYMIZED_TELEMETRY": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    out = open(log, "wb")  # noqa: SIM115 - the child owns it; closed with the process
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "app.py"), "--port", str(port),
                             *args], cwd=PROJECT_ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    out.close()
    app = AppProcess(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        wait_for_port(port, timeout, proc, log)
    except BaseException:
        stop_app(app)
        raise
    return app


def stop_app(app: AppProcess) -> None:
    app.proc.terminate()
    try:
        app.proc.wait(15)
    except subprocess.TimeoutExpired:
        app.proc.kill()
        app.proc.wait(5)


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    do_POST = do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class LeakServer:
    port: int
    hits: list[str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def leak_server() -> Iterator[LeakServer]:
    """A loopback HTTP server that records every request it gets."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LeakServer(server.server_address[1], server.hits)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module scope: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break any later asyncio test (LangChain's ainvoke standard test)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install it with `make chromium`")
    from playwright.sync_api import sync_playwright

    if "browser" in _SHARED:  # one Playwright per process: a second one would refuse to start
        yield _SHARED["browser"]
        return
    with sync_playwright() as pw:
        _SHARED["browser"] = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield _SHARED["browser"]
        finally:
            _SHARED.pop("browser").close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()


# The library table's rendered body rows (Gradio 6 draws a virtual grid of div rows).
TABLE_ROWS = """() => [...document.querySelectorAll('#papers [role=row].virtual-row')]
  .map((r) => r.innerText).filter((t) => t.trim())"""


# Counts finished answers: the question box is disabled while one is on its way.
TRACK_ANSWERS = """() => {
  if (window.__answers !== undefined) return;
  window.__answers = 0; let busy = false;
  setInterval(() => {
    const box = document.querySelector('#question textarea');
    if (!box) return;
    if (box.disabled) busy = true;
    else if (busy) { busy = false; window.__answers += 1; }
  }, 20);
}"""


def answers_done(page: Any) -> int:
    page.evaluate(TRACK_ANSWERS)
    return int(page.evaluate("window.__answers"))


def ask_in_browser(page: Any, question: str) -> int:
    """Type and send a question; returns the answer count to pass to `wait_for_answer`."""
    before = answers_done(page)
    page.fill("#question textarea", question)
    page.press("#question textarea", "Enter")
    return before


def wait_for_answer(page: Any, before: int, timeout_ms: int = 90_000) -> str:
    """The newest bot message, once the answer after `before` has finished."""
    page.wait_for_function(f"window.__answers > {before}", timeout=timeout_ms)
    return str(page.locator("#chat [data-testid='bot']").last.inner_text())
