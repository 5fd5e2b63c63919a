"""Launching the Gradio app: command-line flags, login, file-serving limits, and `--share`.

`settings_from_args` turns `python app.py --host H --port P ...` into `Settings` (flags override
RAG_* variables); `launch` starts the server with the app's CSS and script, no extra served paths
and the store, the project and the Python environment blocked; a share link that cannot be made
(offline) is reported while the app keeps serving locally. This module builds no UI (`rag.ui`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.errors import ConfigError
from rag.settings import PROJECT_ROOT, Settings

MIN_GRADIO = (6, 16)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py",
                                description="Serve the Paper Chat app (Gradio).")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; RAG_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (default 7860; RAG_PORT)")
    p.add_argument("--share", action="store_true", default=None,
                   help="also ask Gradio for a public share link (needs internet; RAG_SHARE)")
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="require this login (RAG_AUTH)")
    p.add_argument("--auth-file", type=Path, metavar="FILE",
                   help="require a login from FILE, one user:password per line (RAG_AUTH_FILE)")
    p.add_argument("--max-upload-mb", type=float, metavar="MB",
                   help="largest file the Library tab accepts (default 20; RAG_MAX_UPLOAD_MB)")
    return p.parse_args(list(argv) if argv is not None else None)


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """Settings from RAG_* variables, overridden by the flags given."""
    args = parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    return Settings(**given)


def _pair(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{where} must be 'user:password' with both parts non-empty "
                          f"(got '{user}{sep}…')")
    return user, password


def auth_pairs(settings: Settings) -> list[tuple[str, str]] | None:
    """The logins from --auth and --auth-file, or None when the app is open."""
    pairs: list[tuple[str, str]] = []
    if settings.auth:
        pairs.append(_pair(settings.auth, "--auth / RAG_AUTH"))
    if settings.auth_file:
        try:
            lines = Path(settings.auth_file).expanduser().read_text("utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --auth-file '{settings.auth_file}': "
                              f"{exc.strerror or exc}") from exc
        for i, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                pairs.append(_pair(line, f"line {i} of {settings.auth_file}"))
        if not pairs:
            raise ConfigError(f"--auth-file '{settings.auth_file}' holds no user:password line")
    return pairs or None


def blocked_paths(settings: Settings) -> list[str]:
    """Never served, whatever Gradio's own checks say: the store, the project and the Python
    environment (which holds the GGUF models)."""
    paths = {settings.data_dir, PROJECT_ROOT, Path(sys.prefix), Path(sys.base_prefix)}
    if settings.llm_model_path:
        paths.add(Path(settings.llm_model_path).parent)
    return sorted(str(Path(p).expanduser().resolve()) for p in paths)


# With a login required, only these answer a caller who has not signed in: the login page, the
# form it posts to, and the static files it is drawn with (Gradio's own code, no data); and
# startup-events, which `launch` itself calls before anyone can sign in (it runs them once).
PUBLIC_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/favicon.ico", "/robots.txt",
                          "/manifest.json", "/theme.css", "/gradio_api/theme.css",
                          "/gradio_api/startup-events"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")


class LoginRequired:
    """ASGI middleware: when the app has a login, refuse (401, the body Gradio's login page
    reads) every request without a signed-in session, except PUBLIC_PATHS.

    Gradio checks the login route by route, and some routes do not check it (the heartbeat
    stream, /openapi.json, /gradio_api/app_id...). Refusing by default here means a route a
    new Gradio version adds is closed too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gradio_app = scope.get("app")
        if (scope["type"] not in ("http", "websocket")
                or getattr(gradio_app, "auth", None) is None
                or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES)
                or _signed_in(gradio_app, scope)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = {"detail": {"error": "Not authenticated",
                           "auth_message": getattr(gradio_app, "auth_message", None)}}
        await JSONResponse(body, status_code=401)(scope, receive, send)


def _signed_in(gradio_app: object, scope: Scope) -> bool:
    """The session cookie Gradio's /login set names a live token (as its own routes check)."""
    cookies = HTTPConnection(scope).cookies
    cookie_id = getattr(gradio_app, "cookie_id", "")
    token = (cookies.get(f"access-token-{cookie_id}")
             or cookies.get(f"access-token-unsecure-{cookie_id}"))
    return token is not None and token in getattr(gradio_app, "tokens", {})


def check_gradio() -> None:
    have = tuple(int(x) for x in version("gradio").split(".")[:2])
    if have < MIN_GRADIO:
        raise ConfigError(f"gradio {version('gradio')} is too old; the app needs gradio >= "
                          f"{'.'.join(map(str, MIN_GRADIO))}: pip install -U gradio")


def launch(demo: gr.Blocks, settings: Settings, *, block: bool = True,
           quiet: bool = False) -> str:
    """Serve `demo`; returns the local URL (with block=False, the server runs in a thread)."""
    from rag.ui import CSS, JS

    check_gradio()
    auth = auth_pairs(settings)
    demo.launch(
        server_name=settings.host, server_port=settings.port, share=False,
        auth=auth, auth_message="Paper Chat: sign in with the user name and password you "
        "were given." if auth else None,
        prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False,
        allowed_paths=[], blocked_paths=blocked_paths(settings),
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        theme=theme(), css=CSS, js=JS,
        footer_links=["api"], app_kwargs={"middleware": [Middleware(LoginRequired)]},
    )
    local = f"http://{settings.host}:{demo.server_port}"
    if not quiet:
        print(f"* Paper Chat is serving at {local} (API: {local}/?view=api)", flush=True)
    if settings.share:
        share(demo, local)
    if block:
        demo.block_thread()
    return local


def theme() -> gr.themes.Base:
    """Soft indigo with system fonts: nothing is fetched from a font CDN."""
    sans = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue",
            "Arial", "Noto Sans", "Liberation Sans", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=sans, font_mono=mono)


def share(demo: gr.Blocks, local: str) -> str | None:
    """Open a share tunnel; offline, say so and keep serving locally."""
    from gradio import networking

    try:
        url = networking.setup_tunnel(
            local_host=demo.server_name, local_port=demo.server_port,
            share_token=demo.share_token, share_server_address=demo.share_server_address,
            share_server_tls_certificate=demo.share_server_tls_certificate)
    except Exception as exc:  # any tunnel failure leaves the local app up
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        print(f"could not create a share link: {exc}{cause}; the app is still serving at "
              f"{local}", file=sys.stderr, flush=True)
        return None
    demo.share_url = url  # type: ignore[assignment]
    demo.share = True
    print(f"* Running on public URL: {url}", flush=True)
    return url


def main(demo: gr.Blocks, settings: Settings) -> None:
    try:
        launch(demo, settings)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
