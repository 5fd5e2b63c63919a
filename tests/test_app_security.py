"""What the app must never do: fetch what a document or answer points at, run its HTML, serve a
file it did not create; and how it launches: --share offline, --auth, --max-upload-mb."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import app_fixtures
import httpx
import pytest
from app_fixtures import (
    TABLE_ROWS,
    AppProcess,
    LeakServer,
    RunningApp,
    ask_in_browser,
    wait_for_answer,
)

app_settings = app_fixtures.app_settings
app_server = app_fixtures.app_server
chromium = app_fixtures.chromium
page = app_fixtures.page
leak_server = app_fixtures.leak_server

SECRET = "TOP-SECRET-7d1f"


# --- no remote images, no HTML from documents or answers ----------------------------------------
def injected_doc(leak: LeakServer) -> str:
    return f"""# Marmot Routing <img src="{leak.url('/title-img')}"> for Sparse Models

Authors: Ann Injector

## Abstract

Marmot routing sends each token to three burrow experts ![chart]({leak.url('/md-image')}).
On the Burrow-9 benchmark marmot routing reaches 77.7 accuracy <img src="{leak.url('/html-img')}"
onerror="fetch('{leak.url('/onerror')}')">. Marmot routing was proposed in 2031
<script>fetch('{leak.url('/script')}')</script> and uses ![logo][ref] reference images.
<iframe src="{leak.url('/iframe')}"></iframe> Marmot routing is cheap.

[ref]: {leak.url('/ref-image')}
"""


@pytest.mark.slow
@pytest.mark.browser
def test_injected_images_and_html_cause_no_request(page: Any, app_server: RunningApp,
                                                   leak_server: LeakServer,
                                                   tmp_path: Path) -> None:
    doc = tmp_path / "marmot-routing.md"
    doc.write_text(injected_doc(leak_server))
    page.goto(app_server.url)
    page.wait_for_selector("#question textarea")

    # upload through the Library tab, as a user would
    page.get_by_role("tab", name="Library").click()
    page.set_input_files("#upload input[type=file]", str(doc))
    page.wait_for_selector("#upload >> text=marmot-routing")  # uploaded to the app
    page.click("#add-files")
    page.wait_for_selector("#upload-status >> text=Added", timeout=120_000)
    page.get_by_placeholder("Search title, author, venue…").fill("marmot")
    page.wait_for_function(f"({TABLE_ROWS})().some((r) => r.includes('Ann Injector'))")
    assert "<img" in " ".join(page.evaluate(TABLE_ROWS))  # the title shows as plain text

    page.get_by_role("tab", name="Chat").click()
    answer = wait_for_answer(page, ask_in_browser(
        page, "What accuracy does marmot routing reach on the Burrow-9 benchmark?"))
    assert "77.7" in answer
    page.wait_for_selector("#sources .src-card.cited")
    sources = page.locator("#sources").inner_text()
    assert "<img" in sources  # shown as text, not rendered
    wait_for_answer(page, ask_in_browser(
        page, f"Marmot routing ![q]({leak_server.url('/question-image')}) "
              f"<img src={leak_server.url('/question-html')}> experts?"))
    page.get_by_text("Options: backend").click()  # the summary picker lists the titles too
    time.sleep(1.5)

    assert leak_server.hits == [], f"the page requested {leak_server.hits}"
    assert page.locator(f"img[src*='127.0.0.1:{leak_server.port}']").count() == 0
    assert page.locator(f"iframe[src*='127.0.0.1:{leak_server.port}']").count() == 0
    assert page.locator("#chat script, #sources script").count() == 0


# --- files: only the app's own uploads are served ------------------------------------------------
def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of ../ or %2e)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.server
def test_file_route_serves_no_file_outside_the_upload_cache(app_server: RunningApp,
                                                            leak_server: LeakServer,
                                                            tmp_path: Path) -> None:
    from rag.llms import smollm2_model_path

    data = app_server.settings.data_dir
    (data / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    store_files = [p for p in (data / "chroma").rglob("*") if p.is_file()][:3]
    targets = [data / "secret.txt", outside, *store_files, smollm2_model_path(),
               Path("/etc/passwd"), Path(app_fixtures.PROJECT_ROOT / "app.py")]
    probes = []
    for t in targets:
        s = str(t)
        probes += [s, quote(s, safe=""), s.upper(), s.replace("/", "//"),
                   "../../../../../../.." + s, quote("../../../../../../.." + s, safe="")]
    probes += [
        "../../../../../../../etc/passwd", "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "%252e%252e%252f%252e%252e%252fetc",
        "..\\..\\..\\..\\etc\\passwd", "/tmp/../etc/passwd", "~/.bashrc", "pyproject.toml",
        "app.py", ".rag/", str(data), f"{data}/", f"{data}/chroma",
        leak_server.url("/ssrf"),  # the file route proxies URLs: never to loopback
    ]
    served = []
    for probe in probes:
        for route in ("/gradio_api/file=", "/file=", "/GRADIO_API/FILE=", "/gradio_api/file%3D"):
            status, body = raw_get(app_server.url, route + probe)
            if status == 200 and body:
                served.append((route + probe, body[:60]))
            assert SECRET.encode() not in body
    assert served == []
    assert leak_server.hits == []

    # positive control: a file uploaded to the app is served back
    with httpx.Client(base_url=app_server.url, timeout=30) as http_:
        upload = http_.post("gradio_api/upload", files={"files": ("ok.txt", b"uploaded")})
        assert upload.status_code == 200, upload.text
        cached = upload.json()[0]
        got = http_.get(f"gradio_api/file={cached}")
    assert got.status_code == 200 and got.content == b"uploaded"


# --- launch flags: python app.py --share --auth ... --------------------------------------------
@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """`python app.py --share --auth ann:pw1 --auth-file F --max-upload-mb 1`, empty library."""
    root = tmp_path_factory.mktemp("launched")
    users = root / "users.txt"
    users.write_text("# team\nbob:pw2\n")
    proc = app_fixtures.start_app(["--share", "--auth", "ann:pw1", "--auth-file", str(users),
                                   "--max-upload-mb", "1"], root / "data", root / "app.log")
    try:
        yield proc
    finally:
        app_fixtures.stop_app(proc)


@pytest.mark.slow
@pytest.mark.server
def test_share_offline_is_reported_and_the_app_keeps_serving(launched: AppProcess) -> None:
    deadline = time.monotonic() + 90
    while "share link" not in launched.output() and time.monotonic() < deadline:
        time.sleep(0.5)
    out = launched.output()
    if "Running on public URL" in out:
        pytest.skip("this machine is online: the share link was created")
    assert "could not create a share link:" in out, out
    assert f"the app is still serving at http://127.0.0.1:{launched.port}" in out, out
    assert launched.proc.poll() is None
    assert httpx.get(launched.url + "/", timeout=30).status_code == 200


@pytest.mark.slow
@pytest.mark.server
def test_auth_is_required_and_accepts_flag_and_file_logins(launched: AppProcess) -> None:
    from gradio_client import Client

    with httpx.Client(base_url=launched.url, timeout=30) as anon:
        assert anon.get("/config").status_code == 401
        assert anon.get("/gradio_api/info").status_code == 401
        bad = anon.post("/login", data={"username": "ann", "password": "wrong"})
        assert bad.status_code in (400, 401)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a bare ValueError
        Client(launched.url, verbose=False)
    for user, password in (("ann", "pw1"), ("bob", "pw2")):
        client = Client(launched.url, auth=(user, password), verbose=False)
        assert client.predict(api_name="/papers") == []
    with httpx.Client(base_url=launched.url, timeout=30) as http_:
        assert http_.post("/login", data={"username": "bob", "password": "pw2"}).status_code == 200
        config = http_.get("/config")
        assert config.status_code == 200
        assert json.loads(config.text)["max_file_size"] == 1024 * 1024  # --max-upload-mb 1
