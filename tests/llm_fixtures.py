"""Fixtures for the LLM backend tests: a real `llama_cpp.server` serving the packaged SmolLM2,
and tiny loopback HTTP stubs that answer every request with one chosen status (or never)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import stop_process

from rag.llms.llamacpp import smollm2_model_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_serving(base_url: str, proc: subprocess.Popen, log: Path,
                        timeout: float = 60.0) -> None:
    """Wait for /v1/models to answer 200 (the port opens before the model is loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"llama_cpp.server not serving {base_url} after {timeout}s:\n"
                       f"{log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m llama_cpp.server` with SmolLM2 on loopback; yields its /v1 base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_model_path()),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
               "--n_threads", "2"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_until_serving(base_url, proc, log)
            yield base_url
        finally:
            stop_process(proc)


@dataclass
class Stub:
    """One loopback HTTP server; `requests` records (path, Authorization header) per request."""

    server: ThreadingHTTPServer
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def _handler(stub_ref: list[Stub], status: int, body: dict | None, hang_s: float,
             sse: list[dict] | None) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            stub_ref[0].requests.append((self.path, self.headers.get("Authorization", "")))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hang_s:
                time.sleep(hang_s)  # accept the request, never answer in time
                return
            if sse is not None:  # a stream that stops after these events, with no [DONE]
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in sse:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                return
            payload = json.dumps(body or {"error": {"message": f"stub says {status}",
                                                    "type": "stub_error"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stub_http() -> Iterator[Callable[..., Stub]]:
    """Start stubs with `stub_http(status, body=None, hang_s=0, sse=None)`: answer `status`
    with the JSON `body`, or sleep `hang_s` first, or stream the `sse` events and hang up.
    All stop after the test."""
    stubs: list[Stub] = []

    def start(status: int = 200, body: dict | None = None, hang_s: float = 0.0,
              sse: list[dict] | None = None) -> Stub:
        ref: list[Stub] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref, status, body, hang_s, sse))
        server.daemon_threads = True
        ref.append(Stub(server))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stubs.append(ref[0])
        return ref[0]

    yield start
    for stub in stubs:
        stub.server.shutdown()
        stub.server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound and released: connections are refused)."""
    return free_port()
