"""Every route the installed Gradio serves, listed from the running app's FastAPI routes (so a
route a new version adds is probed too):

- with a login (`--auth`), each refuses a caller who has not signed in, except the login page
  and its static files, which hold no data (issue 12 item 9);
- without one, no route serves a file outside Gradio's upload cache for any traversal spelling,
  and no URL given to any route or input (`/proxy=`, `file=`, a FileData url) makes the app
  fetch it (issue 12 items 8).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import app_fixtures
import httpx
import pytest
from app_fixtures import AppProcess, free_port, start_app, stop_app
from injection_library import InjectionLibrary, injection_library  # noqa: F401 - fixture
from starlette.routing import Mount

from rag.server import PUBLIC_PATHS, PUBLIC_PREFIXES
from rag.settings import PROJECT_ROOT, Settings

chromium = app_fixtures.chromium
page = app_fixtures.page

SECRET = "TOP-SECRET-route-3e9a"
USER, PASSWORD = "ann", "pw-route-1"
LIBRARY_WORDS = ("Lemur pooling", "Treetop-5", "CANARY01ZQ", "api_ask")  # data, never public


def app_routes(app: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) for every route of a running Gradio app, included routers and mounts."""
    out: list[tuple[str, str]] = []
    for route in app.routes:
        if hasattr(route, "original_router"):  # FastAPI >= 0.165 keeps included routers whole
            sub = prefix + (getattr(route.include_context, "prefix", "") or "")
            out += app_routes(route.original_router, sub)
        elif isinstance(route, Mount):
            out += app_routes(route.app, prefix + route.path) if hasattr(route.app, "routes") \
                else [("GET", prefix + route.path + "/x")]
        else:
            out += [(m, prefix + route.path) for m in sorted(getattr(route, "methods", None)
                                                             or {"GET"}) if m != "HEAD"]
    return sorted(set(out))


PARAMS = {"api_name": "ask", "session_hash": "s3ss10n", "event_id": "ev", "size": "192",
          "url_path": "http://127.0.0.1:9/x", "path_or_url": "x.txt", "path": "x.txt",
          "component_id": "1", "run": "1", "segment_id": "1", "ext": "ts", "key": "k",
          "id": "1", "environment": "client", "type": "index", "file_name": "x.js",
          "endpoint": "ask", "record_id": "1", "asset_id": "1"}
BODY = {"data": ["What accuracy does lemur pooling reach?", None, "extractive", None, None,
                 None], "fn_index": 0, "session_hash": "s3ss10n", "event_id": "ev",
        "trigger_id": None, "prompt": "x", "hash": "x", "code": "x"}


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m[1], "x"), path)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@pytest.fixture(scope="module")
def inproc(injection_library: InjectionLibrary,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The app built and launched in this process (its routes are listed from it) with a
    login, over a copy of the injection library."""
    from rag.chain import Pipeline
    from rag.server import launch
    from rag.ui import build_demo

    data = injection_library.copy_to(tmp_path_factory.mktemp("routes") / "data")
    settings = Settings(data_dir=data, corpus_dir=injection_library.docs, port=free_port(),
                        auth=f"{USER}:{PASSWORD}")
    demo = build_demo(Pipeline(settings), warm_up=False)
    url = launch(demo, settings, block=False, quiet=True)
    try:
        yield demo, url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def with_auth(injection_library: InjectionLibrary,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """`python app.py --auth ann:pw-route-1` over a copy of the injection library."""
    root = tmp_path_factory.mktemp("auth-app")
    app = start_app(["--auth", f"{USER}:{PASSWORD}"], injection_library.copy_to(root / "data"),
                    root / "app.log", env={"RAG_CORPUS_DIR": str(injection_library.docs)})
    try:
        yield app
    finally:
        stop_app(app)


def probe(http_: httpx.Client, method: str, path: str) -> tuple[int, str]:
    try:
        r = http_.request(method, path, json=BODY if method != "GET" else None)
    except httpx.TimeoutException:
        return -1, "timed out: the route kept the connection open"
    except httpx.TransportError as exc:  # the server failed after it began its answer
        return -2, f"{type(exc).__name__}: {exc}"
    return r.status_code, r.text[:4000]


@pytest.mark.slow
@pytest.mark.server
def test_with_auth_every_route_refuses_an_anonymous_caller(inproc: tuple[Any, str],
                                                           with_auth: AppProcess) -> None:
    demo, inproc_url = inproc
    routes = app_routes(demo.app)
    assert ("POST", "/gradio_api/upload") in routes and ("POST", "/gradio_api/queue/join") in \
        routes and any("proxy=" in p for _, p in routes), "precondition: the routes are listed"
    assert len(routes) > 60, routes
    leaks, public = [], []
    for url in (with_auth.url, inproc_url):
        with httpx.Client(base_url=url, timeout=10) as anon:
            for method, path in routes:
                status, body = probe(anon, method, fill(path, PARAMS))
                if any(w in body for w in LIBRARY_WORDS):
                    leaks.append((url, method, path, status, body[:120]))
                elif is_public(path):
                    public.append(path)
                elif status != 401:
                    leaks.append((url, method, path, status, body[:120]))
    assert leaks == [], "\n".join(map(str, leaks))
    print(f"{len(routes)} routes, {len(set(public))} public (login page, static files)")

    # the /ask API and upload by name, and the positive control: signed in, they answer
    with httpx.Client(base_url=with_auth.url, timeout=60) as http_:
        assert http_.post("/gradio_api/call/ask", json=BODY).status_code == 401
        assert http_.post("/gradio_api/upload", files={"files": ("a.md", b"# x")}
                          ).status_code == 401
        assert http_.post("/login", data={"username": USER, "password": PASSWORD}
                          ).status_code == 200
        assert http_.get("/config").status_code == 200
        event = http_.post("/gradio_api/call/ask", json=BODY)
        assert event.status_code == 200, event.text
        answer = http_.get(f"/gradio_api/call/ask/{event.json()['event_id']}").text
        assert "81.3" in answer, answer[-300:]
        assert http_.post("/gradio_api/upload", files={"files": ("a.md", b"# x")}
                          ).status_code == 200


@pytest.mark.slow
@pytest.mark.browser
def test_the_login_page_still_works_in_a_browser(page: Any, with_auth: AppProcess) -> None:
    page.goto(with_auth.url)
    page.fill("input[type=text]", USER)
    page.fill("input[type=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#question textarea", timeout=60_000)


# --- item 8: no file outside the cache, no request to a URL a caller names ----------------------
@pytest.fixture(scope="module")
def open_app(injection_library: InjectionLibrary,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Settings]]:
    from rag.chain import Pipeline
    from rag.server import launch
    from rag.ui import build_demo

    data = injection_library.copy_to(tmp_path_factory.mktemp("open") / "data")
    settings = Settings(data_dir=data, corpus_dir=injection_library.docs, port=free_port())
    demo = build_demo(Pipeline(settings), warm_up=False)
    url = launch(demo, settings, block=False, quiet=True)
    try:
        yield demo, url, settings
    finally:
        demo.close()


def traversal_probes(targets: list[Path]) -> list[str]:
    probes = []
    for t in targets:
        s = str(t)
        up = "../../../../../../.." + s
        probes += [s, quote(s, safe=""), quote(quote(s, safe=""), safe=""), s.replace("/", "//"),
                   up, quote(up, safe=""), up.replace("/", "\\"), "file://" + s]
    return probes


@pytest.mark.slow
@pytest.mark.server
def test_no_route_serves_a_file_outside_the_cache_or_fetches_a_url(
        open_app: tuple[Any, str, Settings], injection_library: InjectionLibrary,  # noqa: F811
        tmp_path: Path) -> None:
    demo, url, settings = open_app
    listener = injection_library.listener
    before = len(listener.hits)
    (settings.data_dir / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    targets = [settings.data_dir / "secret.txt", outside, Path("/etc/passwd"),
               PROJECT_ROOT / "pyproject.toml"]
    urls = [listener.url("/ssrf-a"), listener.url("/ssrf-b").replace("127.0.0.1", "localhost"),
            f"http://[::1]:{listener.port}/ssrf-c", f"http://2130706433:{listener.port}/ssrf-d"]
    # every route with a parameter a file name or URL can go in (the others take ids)
    routes = [(m, p) for m, p in app_routes(demo.app)
              if re.search(r"\{(path|path_or_url|url_path|file_name|asset_id|segment_id)\b"
                           r"|:path\}", p)]
    assert any("proxy=" in p for _, p in routes) and any("file=" in p for _, p in routes)
    served, tried, broken = [], 0, set()
    marks = (SECRET, "root:x:0:0", "[tool.ruff]")
    with httpx.Client(base_url=url, timeout=5) as http_:
        for method, path in routes:
            for value in traversal_probes(targets) + urls:
                target = fill(path, {**PARAMS, **{k: value for k in
                                                  ("path", "path_or_url", "url_path",
                                                   "file_name", "asset_id", "segment_id")}})
                status, body = probe(http_, method, target)
                tried += 1
                if status == -2:
                    broken.add(path)
                if any(m in body for m in marks):
                    served.append((method, target, status))
        # every URL-taking input: the upload event's FileData (url and path), the upload route
        for fd in [{"path": str(t), "meta": {"_type": "gradio.FileData"}} for t in targets] + \
                  [{"path": "x.md", "url": u, "meta": {"_type": "gradio.FileData"}}
                   for u in urls]:
            event = http_.post("/gradio_api/call/upload", json={"data": [[fd], ""]})
            tried += 1
            if event.status_code == 200:
                body = http_.get(f"/gradio_api/call/upload/{event.json()['event_id']}").text
                assert not any(m in body for m in marks), body[:300]
        upload = http_.post("/gradio_api/upload", files={"files": ("../../../../etc/x.md",
                                                                   b"# fine")})
        assert upload.status_code == 200
    time.sleep(1.0)
    uploads = settings.data_dir / "uploads"
    copied = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
    print(f"{len(routes)} routes with a path parameter, {tried} requests; broke off: {broken}")
    assert served == [], served
    assert listener.hits[before:] == [], f"the app fetched {listener.hits[before:]}"
    assert not any(n in ("passwd", "secret.txt", "outside.txt", "pyproject.toml")
                   for n in copied), copied
