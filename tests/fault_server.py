"""A loopback OpenAI-compatible chat server that fails on purpose, for the LLM fault matrix.

`FaultServer.script` says how each next request to /v1/chat/completions is answered (the last
entry repeats): "ok" streams a short cited answer; "hang" reads the request and never answers;
"stall" sends the headers and one piece, then nothing; "429" answers 429 with `retry_after` as
Retry-After; "500", "503", "400" answer that status with a JSON error; "reset" closes the
connection with a TCP reset; "bad-sse" streams events that are not JSON; "bad-json" answers 200
with a body that is not JSON. Hanging handlers return when the server stops.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "Fault-free answer from the stub server [1]."


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "stub",
             "choices": [{"index": 0, "delta": {"content": content} if content else {},
                          "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n".encode()


@dataclass
class FaultServer:
    script: list[str] = field(default_factory=lambda: ["ok"])
    retry_after: str = "1"
    times: list[float] = field(default_factory=list)  # monotonic arrival of each request
    stopping: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def set(self, *script: str, retry_after: str = "1") -> None:
        self.script, self.retry_after, self.times[:] = list(script), retry_after, []

    def next_mode(self) -> str:
        self.times.append(time.monotonic())
        return self.script[min(len(self.times), len(self.script)) - 1]


def _handler(fs: FaultServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _status(self, status: int, extra: dict[str, str] | None = None) -> None:
            body = json.dumps({"error": {"message": f"stub says {status}",
                                         "type": "stub_error"}}).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json",
                         "Content-Length": str(len(body)), **(extra or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _sse_head(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            mode = fs.next_mode()
            if mode == "hang":
                fs.stopping.wait(120)
            elif mode == "stall":
                self._sse_head()
                self.wfile.write(_chunk("A first piece "))
                self.wfile.flush()
                fs.stopping.wait(120)
            elif mode in ("429", "500", "503", "400"):
                extra = {"Retry-After": fs.retry_after} if mode == "429" else None
                self._status(int(mode), extra)
            elif mode == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
            elif mode == "bad-sse":
                self._sse_head()
                self.wfile.write(b'data: {"choices": [{"delta": oops\n\n')
            elif mode == "bad-json":
                body = b'{"id": "x", "choices": [oops'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:  # ok
                self._sse_head()
                for piece in ANSWER.split(" "):
                    self.wfile.write(_chunk(piece + " "))
                self.wfile.write(_chunk(None, "stop") + b"data: [DONE]\n\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def start_fault_server() -> FaultServer:
    fs = FaultServer()
    fs.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fs))
    fs.server.daemon_threads = True
    threading.Thread(target=fs.server.serve_forever, daemon=True).start()
    return fs


def stop_fault_server(fs: FaultServer) -> None:
    fs.stopping.set()
    fs.server.shutdown()
    fs.server.server_close()
