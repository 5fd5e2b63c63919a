"""A stand-in for `rag.llms.model_server` that misbehaves on purpose, for the supervision tests.

Same arguments; `FAKE_MODEL_MODE` says how it fails once asked to generate:
- `segfault`: streams two pieces, then kills itself with SIGSEGV;
- `hang`: accepts the request and never answers;
- `crash-on-load`: dies with SIGSEGV before it serves anything.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag.llms.model_server import _exit_when_parent_dies, _parse

MODE = os.environ.get("FAKE_MODEL_MODE", "segfault")


class Handler(BaseHTTPRequestHandler):
    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json({"n_ctx": 2048, "n_ctx_train": 8192, "chat_template": True, "pid": os.getpid()})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/rag/count_chat":
            self._json({"tokens": len(str(body).split())})
            return
        if self.path.startswith("/rag/"):
            self._json({"tokens": list(range(len(str(body).split())))})
            return
        if MODE == "hang":
            time.sleep(3600)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in ("Partial ", "answer "):
            event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": word},
                                  "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGSEGV)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    args = _parse(sys.argv[1:])
    if args.watch_parent:
        _exit_when_parent_dies()
    if MODE == "crash-on-load":
        os.kill(os.getpid(), signal.SIGSEGV)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
