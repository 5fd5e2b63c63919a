"""The Gradio app: chat with streamed, cited answers, a sources panel, a library tab, and `/ask`.

`build_demo(pipeline)` returns the Blocks; `rag.server` launches it. Everything shown to the
browser passes through `safe_markdown` (chat) or `render_sources` (panel): HTML is escaped and
Markdown images become plain links, so text from documents or a model can neither run script nor
make the browser fetch anything. This module answers nothing itself: it calls `Pipeline`.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import gradio as gr

from rag.chain import Pipeline
from rag.errors import RagError
from rag.indexing import DEFAULT_CORPUS, DefaultLibrary, builds_default_library
from rag.models import Answer, Paper
from rag.render import (
    EMPTY_SOURCES,
    answer_json,
    answer_markdown,
    plain_text,
    plural,
    render_sources,
    safe_markdown,
    to_turns,
)
from rag.retrieval import Filters

ALLOWED_SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".text")
MAX_NAME_BYTES = 200  # what Gradio keeps of an uploaded name; the copy's name stays < 255
ANY_VENUE, ANY_YEAR = "Any venue", "Any year"
SMOLLM2, GEMMA3 = "SmolLM2-135M-Instruct", "Gemma-3-270M (base)"
NO_MODEL = "none: quotes the sources"
EXAMPLES = [
    "What is DeBERTa and how does it improve BERT?",
    "Which NeurIPS 2020 papers are about optimization?",
    "How can neural networks be trained with 4-bit precision?",
]
LOCAL_BACKENDS = {"llamacpp"}  # one generation at a time: queued, with the position shown

# --- rendering: everything user-visible is escaped here ------------------------------------------
def model_choices(backend: str, pipeline: Pipeline) -> list[str]:
    s = pipeline.settings
    if backend == "llamacpp":
        custom = [str(s.llm_model_path)] if s.llm_model_path else []
        return [*custom, GEMMA3, SMOLLM2]
    if backend == "openai":
        return [s.openai_model]
    return [NO_MODEL]


def parse_report(paper: Paper) -> str:
    """How well a PDF was read, at a glance: pages, sections found, and any warning."""
    if paper.pages is None:
        return ""
    found = [s for s in paper.sections if s.kind != "front"]
    text = f"{paper.pages} pages, {len(found)} sections"
    return text + "".join(f"; ⚠ {w}" for w in paper.warnings)


def parse_filters(venue: str | None = None, year: Any = None, author: str | None = None) -> Filters:
    venue = None if not venue or venue == ANY_VENUE else str(venue).strip()
    if year in (None, "", ANY_YEAR):
        year = None
    else:
        try:
            year = int(str(year).strip())
        except ValueError:
            raise gr.Error(f"year filter '{year}' is not a year; use e.g. 2020") from None
    return Filters(venue=venue or None, year=year, author=(author or "").strip() or None)


class ChatApp:
    """One per demo: the pipeline (plus per-model variants) and the event handlers."""

    def __init__(self, pipeline: Pipeline, first_start: DefaultLibrary | None = None) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.first_start = first_start or DefaultLibrary()
        self._variants: dict[tuple[str, str], Pipeline] = {}
        self._lock = threading.Lock()

    # -- first start ----------------------------------------------------------------------------
    def build_default_library(self) -> None:
        """Index the shipped corpus into the empty store (background thread), then warm up.
        The terminal shows the same progress as `rag index`."""
        from rich.console import Console

        from rag.cli import papers_bar

        print(f"* the library is empty: indexing the default library ({DEFAULT_CORPUS}) in the "
              "background; the app answers once it is ready", flush=True)
        with papers_bar(Console(stderr=True), "indexing the default library") as bar:
            def progress(done: int, total: int) -> None:
                self.first_start.progress(done, total)
                bar(done, total)

            report = self.first_start.build(
                lambda paths, papers_progress: self.pipeline.add_documents(
                    paths, papers_progress=progress))
        if report is not None:
            print(f"* indexed the default library: {report.papers} papers, "
                  f"{report.chunks_added} chunks in {report.seconds:.0f} s", flush=True)
        else:
            print(f"error: {self.first_start.status()}", file=sys.stderr, flush=True)
        self.warm_up()

    def indexing(self) -> bool:
        return self.first_start.state == "indexing"

    def status_tick(self, query: str = "") -> tuple[Any, ...]:
        """The status line (every second while the default library is built); when it is done,
        the Library tab is refreshed and the timer stops."""
        text = self.first_start.status()
        if self.indexing():
            skip = (gr.skip(),) * 5
            return (gr.update(value=f"⏳ {text}", visible=True), gr.Timer(active=True), *skip)
        return (gr.update(value=f"⚠️ {text}" if text else "", visible=bool(text)),
                gr.Timer(active=False), *self.library_updates(query))

    def wait_for_library(self) -> Iterator[str]:
        """While the default library is being built: its status every second, then nothing."""
        while self.indexing():
            yield self.first_start.status()
            self.first_start.finished.wait(1.0)

    # -- pipelines --------------------------------------------------------------------------
    def pipeline_for(self, backend: str, model: str | None) -> Pipeline:
        """The pipeline whose settings select `model`; shares the retriever with the base one."""
        if backend not in self.pipeline.backends():
            raise gr.Error(f"unknown backend '{backend}'; choose one of "
                           f"{', '.join(self.pipeline.backends())}")
        update: dict[str, Any] = {}
        if backend == "llamacpp" and model in (SMOLLM2, GEMMA3):
            from rag.llms import gemma_model_path, smollm2_model_path
            try:
                path = smollm2_model_path() if model == SMOLLM2 else gemma_model_path(self.settings)
            except RagError as exc:
                raise gr.Error(str(exc)) from exc
            if path != self.settings.llm_model_path:
                update["llm_model_path"] = path
        elif backend == "llamacpp" and model and model != str(self.settings.llm_model_path):
            raise gr.Error(f"unknown model '{model}' for llamacpp; choose {SMOLLM2} or {GEMMA3}")
        elif backend == "openai" and model and model != self.settings.openai_model:
            update["openai_model"] = model.strip()[:200]
        if not update:
            return self.pipeline
        key = (backend, repr(sorted(update.items())))
        with self._lock:
            if key not in self._variants:
                self._variants[key] = Pipeline(self.settings.model_copy(update=update),
                                               retriever=self.pipeline.retriever)
            return self._variants[key]

    def warm_up(self) -> None:
        """Load the embedder, the library and the extractive reader before the first question."""
        with suppress(Exception):  # a cold start is only slower
            self.pipeline.warm_up()

    # -- library ------------------------------------------------------------------------------
    def papers(self) -> list[Paper]:
        try:
            return self.pipeline.papers()
        except RagError as exc:
            raise gr.Error(str(exc)) from exc

    def paper_rows(self, query: str = "") -> list[list[Any]]:
        needle = (query or "").strip().lower()
        rows = []
        for p in self.papers():
            row = [p.title, ", ".join(p.authors), " ".join(str(x) for x in (p.venue, p.year) if x),
                   p.source, parse_report(p)]
            if not needle or needle in " ".join(map(str, row)).lower():
                rows.append(row)
        return rows

    def library_updates(self, query: str = "") -> tuple[Any, ...]:
        papers = self.papers()
        venues = sorted({p.venue for p in papers if p.venue})
        years = sorted({p.year for p in papers if p.year}, reverse=True)
        picks = [(f"{p.title}" + (f" ({p.venue_year})" if p.venue_year else ""), p.id)
                 for p in papers]
        count = (f"**{len(papers)} papers** in the library" if papers else
                 "**The library is empty.** Upload files below, or run `rag index`.")
        return (self.paper_rows(query), count,
                gr.update(choices=picks), gr.update(choices=[ANY_VENUE, *venues]),
                gr.update(choices=[ANY_YEAR, *map(str, years)]))

    def check_uploads(self, paths: Sequence[str]) -> tuple[list[Path], list[str]]:
        """Split `paths` into files to index and one reason per refused file; nothing is read
        or stored here. Refused: other types, files over the limit, names with control
        characters, `..` parts or over MAX_NAME_BYTES, and anything that is not a regular file."""
        limit = self.settings.max_upload_mb
        ok, problems = [], []
        for raw in paths:
            raw = str(raw)
            shown = repr(raw[:60]) if len(raw) > 60 else repr(raw)
            if any(ord(c) < 32 or ord(c) == 127 for c in raw):
                problems.append(f"{shown}: the file name holds control characters; rename it")
                continue
            path = Path(raw)
            if ".." in path.parts:
                problems.append(f"{shown}: a file name may not contain '..'; rename it")
            elif len(path.name.encode()) > MAX_NAME_BYTES:
                problems.append(f"{shown}: the file name is over {MAX_NAME_BYTES} bytes; "
                                "rename it")
            elif path.suffix.lower() not in ALLOWED_SUFFIXES:
                problems.append(f"{path.name}: file type '{path.suffix or 'none'}' is not "
                                f"accepted; upload {', '.join(ALLOWED_SUFFIXES)} files")
            elif not path.is_file():
                problems.append(f"{path.name}: not a readable file")
            elif path.stat().st_size > limit * 1024 * 1024:
                problems.append(f"{path.name}: {path.stat().st_size / 1048576:.1f} MB is over "
                                f"the {limit:g} MB upload limit (--max-upload-mb)")
            else:
                ok.append(path)
        return ok, problems

    def upload(self, files: list[str] | None, query: str,
               progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]
        if not paths:
            raise gr.Error("Choose one or more files first: " + ", ".join(ALLOWED_SUFFIXES))
        ok, problems = self.check_uploads(paths)
        if not ok:
            raise gr.Error("Nothing was added. " + " ".join(problems))
        target = self.settings.data_dir / "uploads"
        target.mkdir(parents=True, exist_ok=True)
        copies = []
        for path in ok:  # kept beside the store: a later `rag index <data_dir>/uploads` re-syncs
            name = re.sub(r"[^\w.\- ]", "_", path.name).lstrip(".") or "upload.txt"
            copies.append(Path(shutil.copyfile(path, target / name)))
        progress((0, len(copies)), desc="Indexing", unit="files")

        def step(name: str, done: int, total: int) -> None:
            progress((done, total), desc=f"Indexing {name}" if name else "Indexed", unit="files")

        try:
            report = self.pipeline.add_documents(copies, progress=step)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        problems += [f"{Path(f).name}: {reason}" for f, reason in report.skipped]
        for f, _ in report.skipped:  # a copy the library does not hold is not kept either
            with suppress(OSError):
                Path(f).unlink()
        files_ok = report.files - len(report.skipped)
        added = plural(report.papers, "paper")
        passages = plural(report.chunks_added, "new passage")
        lines = [f"Added **{added}** ({passages}) from {plural(files_ok, 'file')} in "
                 f"{report.seconds:.1f} s; ask about them in the Chat tab."]
        lines += [f"- skipped {p}" for p in problems]
        if problems:
            gr.Warning("Some files were skipped: " + " ".join(problems))
        return ("\n".join(lines), *self.library_updates(query))

    # -- chat -----------------------------------------------------------------------------------
    def start(self, message: str, history: list[dict[str, Any]], backend: str,
              kind: str = "ask", paper_id: str | None = None) -> tuple[Any, ...]:
        """Add the user's turn and hand the job to the queue of its backend."""
        if kind == "summary":
            if not paper_id:
                raise gr.Error("Pick a paper to summarise first.")
            paper = next((p for p in self.papers() if p.id == paper_id), None)
            if paper is None:
                raise gr.Error("That paper is no longer in the library; pick another.")
            message = f"Summarise “{paper.title}”"
        message = (message or "").strip()
        if not message:
            raise gr.Error("Type a question first.")
        job = {"id": uuid.uuid4().hex, "kind": kind, "question": message, "paper_id": paper_id}
        history = [*(history or []), {"role": "user", "content": safe_markdown(message)}]
        local = backend in LOCAL_BACKENDS
        return (history, gr.update(value="", interactive=False), gr.update(visible=True),
                job if local else gr.skip(), gr.skip() if local else job, job)

    def respond(self, job: dict[str, Any] | None, history: list[dict[str, Any]], backend: str,
                model: str | None, venue: str | None, year: Any, author: str | None,
                k: float | None) -> Iterator[tuple[Any, str]]:
        """Stream the answer into the last chat turn and fill the sources panel."""
        if not job:
            return
        pipe = self.pipeline_for(backend, model)
        history = list(history or [])
        prior = to_turns(history[:-1])
        history.append({"role": "assistant", "content": "…"})
        for status in self.wait_for_library():  # first start: answer once the library is built
            history[-1] = {"role": "assistant", "content": safe_markdown(
                f"⏳ {status}. Your question is answered as soon as it is ready.")}
            yield history, EMPTY_SOURCES
        try:
            if job["kind"] == "summary":
                stream = pipe.summarise_stream(job["paper_id"], backend=backend)
            else:
                stream = pipe.answer_stream(job["question"], prior,
                                            filters=parse_filters(venue, year, author),
                                            k=int(k) if k else None, backend=backend)
            answer: Answer | None = None
            panel = ""
            for answer in stream:  # the panel fills with the first piece, the text grows
                history[-1] = {"role": "assistant", "content": answer_markdown(answer)}
                panel = panel or render_sources(answer)
                yield history, panel
            if answer is not None:  # final: highlight what the whole answer used
                yield history, render_sources(answer)
        except RagError as exc:
            history[-1] = {"role": "assistant", "content": safe_markdown(f"⚠️ {exc}")}
            yield history, EMPTY_SOURCES
            raise gr.Error(str(exc)) from exc

    def retry(self, history: list[dict[str, Any]], last: dict[str, Any] | None,
              backend: str) -> tuple[Any, ...]:
        """Ask the last question again (Chatbot's retry button)."""
        history = list(history or [])
        while history and history[-1].get("role") != "user":
            history.pop()
        if not history:
            raise gr.Error("Nothing to retry yet.")
        turn = plain_text(history.pop().get("content"))
        if last and last.get("kind") == "summary" and last.get("question") == turn:
            return self.start("", history, backend, "summary", last.get("paper_id"))
        return self.start(turn, history, backend)

    @staticmethod
    def undo(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, str]:
        """Drop the last exchange and put its question back in the box."""
        history = list(history or [])
        while history and history[-1].get("role") != "user":
            history.pop()
        turn = plain_text(history.pop().get("content")) if history else ""
        return history, turn, EMPTY_SOURCES

    def api_ask(self, question: str, history: list[dict[str, Any]] | None = None,
                backend: str | None = None, filters: dict[str, Any] | None = None,
                k: int | None = None, model: str | None = None) -> dict[str, Any]:
        """Answer a question from the library. history: earlier turns as [{"role", "content"}];
        backend: "extractive", "llamacpp" or "openai"; filters: {"venue", "year", "author"}."""
        if not (question or "").strip():
            raise gr.Error("question is empty")
        unknown = set(filters or {}) - {"venue", "year", "author"}
        if unknown:
            raise gr.Error(f"unknown filter(s) {sorted(unknown)}; use venue, year, author")
        backend = backend or self.settings.llm_backend
        pipe = self.pipeline_for(backend, model)
        for _ in self.wait_for_library():  # first start: answer once the library is built
            pass
        try:
            answer = pipe.answer(question.strip(), to_turns(history), backend=backend,
                                 filters=parse_filters(**(filters or {})), k=k)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return answer_json(answer)

    def api_papers(self) -> list[dict[str, Any]]:
        """Every paper in the library (metadata only)."""
        return [p.to_dict() for p in self.papers()]

    def api_summarise(self, paper: str, backend: str | None = None) -> dict[str, Any]:
        """Summarise one paper of the library, given its id or exact title."""
        match = [p for p in self.papers() if paper in (p.id, p.title)]
        if not match:
            raise gr.Error(f"no paper '{paper}' in the library; see the Library tab")
        try:
            answers = list(self.pipeline.summarise_stream(match[0].id, backend=backend))
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return answer_json(answers[-1])


# --- layout --------------------------------------------------------------------------------------
def build_demo(pipeline: Pipeline, *, warm_up: bool = True,
               index_default: bool = False) -> gr.Blocks:
    """The whole app; launch it with `rag.server.launch` (it adds the CSS, script and limits).

    `index_default` (what `python app.py` does): if the store is empty and RAG_CORPUS_DIR is the
    shipped corpus, build that library in the background, with a status line, while serving."""
    app = ChatApp(pipeline)
    first_start = index_default and builds_default_library(pipeline.settings,
                                                           pipeline.retriever.store)
    if first_start:
        app.first_start.state = "indexing"  # before the first page or question arrives
    settings = pipeline.settings
    backends = pipeline.backends()
    default_backend = settings.llm_backend if settings.llm_backend in backends else backends[0]
    limit = f"{settings.max_upload_mb:g} MB"
    # Gradio keeps every uploaded file in its cache; an app left running for weeks must not
    # fill the disk, so files older than a day are removed, checked every hour.
    with gr.Blocks(title="Paper Chat", fill_width=True, delete_cache=(3600, 86400)) as demo:
        gr.HTML("<header class='app-head'><h1>Paper Chat</h1><p>Ask questions about the "
                "research papers in your library. Answers quote the papers and cite them as "
                "[n]; the passages they rest on are listed on the right.</p></header>")
        library_status = gr.Markdown(f"⏳ {app.first_start.status()}", visible=first_start,
                                     elem_id="library-status")
        last_job, job_local, job_fast = gr.State(None), gr.State(None), gr.State(None)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=7, min_width=420):
                    chatbot = gr.Chatbot(
                        elem_id="chat", show_label=False, height=560, buttons=["copy", "copy_all"],
                        sanitize_html=True, allow_tags=False, feedback_options=None,
                        placeholder="### Ask about the papers in the library\nEvery answer "
                        "cites its sources. Try one of these:",
                        examples=[{"text": q} for q in EXAMPLES])
                    with gr.Row(elem_id="ask-row"):
                        msg = gr.Textbox(show_label=False, placeholder="Ask a question…",
                                         elem_id="question", scale=8, submit_btn="Ask",
                                         autofocus=True, max_lines=6)
                        stop = gr.Button("Stop", variant="stop", visible=False, scale=1,
                                         min_width=80, elem_id="stop")
                    with gr.Accordion("Options: backend, model, filters, summaries",
                                      open=False, elem_id="options"):
                        with gr.Row():
                            backend = gr.Dropdown(backends, value=default_backend,
                                                  label="Answering backend")
                            model = gr.Dropdown(model_choices(default_backend, pipeline),
                                                value=model_choices(default_backend, pipeline)[0],
                                                label="Model", allow_custom_value=True)
                            k = gr.Slider(1, 20, value=settings.top_k, step=1,
                                          label="Sources per answer")
                        with gr.Row():
                            venue = gr.Dropdown([ANY_VENUE], value=ANY_VENUE, label="Venue")
                            year = gr.Dropdown([ANY_YEAR], value=ANY_YEAR, label="Year")
                            author = gr.Textbox(label="Author", placeholder="any author")
                        with gr.Row(equal_height=False, elem_id="summary-row"):
                            paper = gr.Dropdown([], label="Summarise a paper", scale=4,
                                                filterable=True)
                            summarise = gr.Button("Summarise", scale=1, min_width=110,
                                                  variant="secondary", elem_id="summarise")
                with gr.Column(scale=5, min_width=340):
                    sources = gr.HTML(EMPTY_SOURCES, elem_id="sources")
            with gr.Tab("Library", id="library"):
                count = gr.Markdown()
                search = gr.Textbox(show_label=False, placeholder="Search title, author, venue…")
                table = gr.Dataframe(elem_id="papers",
                                     headers=["Title", "Authors", "Venue", "Source", "Parsed"],
                                     datatype=["str", "str", "str", "str", "str"],
                                     interactive=False, wrap=True, max_height=420,
                                     column_widths=["34%", "24%", "11%", "13%", "18%"])
                gr.Markdown(f"**Add papers**: PDF, Markdown or text ({', '.join(ALLOWED_SUFFIXES)}"
                            f"), up to {limit} each. They are parsed, chunked and indexed, and "
                            "can be asked about at once.")
                files = gr.File(file_count="multiple", file_types=list(ALLOWED_SUFFIXES),
                                label="Files to add", elem_id="upload")
                add = gr.Button("Add to library", variant="primary", elem_id="add-files")
                status = gr.Markdown(elem_id="upload-status")

        # chat: a quick step adds the turn, then the job waits in its backend's queue
        answer_io = dict(inputs=[chatbot, backend, model, venue, year, author, k],
                         outputs=[chatbot, sources])
        fast = job_fast.change(app.respond, [job_fast, *answer_io["inputs"]],
                               answer_io["outputs"], api_visibility="private")
        local = job_local.change(app.respond, [job_local, *answer_io["inputs"]],
                                 answer_io["outputs"], concurrency_limit=1,
                                 concurrency_id="llamacpp", show_progress="full",
                                 api_visibility="private")
        def ready() -> tuple[Any, Any]:
            return gr.update(interactive=True), gr.update(visible=False)

        for ev in (fast, local):
            ev.then(ready, None, [msg, stop], api_visibility="private", queue=False)
        started = [chatbot, msg, stop, job_local, job_fast, last_job]
        # queued (not queue=False): Gradio only reports State changes from queued events
        quick: dict[str, Any] = dict(api_visibility="private", concurrency_limit=None,
                                     show_progress="hidden")
        msg.submit(app.start, [msg, chatbot, backend], started, **quick)
        def example(h: list[dict[str, Any]], b: str, d: gr.SelectData) -> tuple[Any, ...]:
            return app.start(d.value["text"], h, b)

        chatbot.example_select(example, [chatbot, backend], started, **quick)
        summarise.click(lambda h, b, p: app.start("", h, b, "summary", p),
                        [chatbot, backend, paper], started, **quick)
        chatbot.retry(app.retry, [chatbot, last_job, backend], started, **quick)
        chatbot.undo(app.undo, [chatbot], [chatbot, msg, sources], api_visibility="private",
                     queue=False)
        chatbot.clear(lambda: EMPTY_SOURCES, None, sources, api_visibility="private", queue=False)
        stop.click(ready, None, [msg, stop], api_visibility="private", queue=False,
                   cancels=[fast, local])
        backend.change(lambda b: gr.update(choices=model_choices(b, pipeline),
                                           value=model_choices(b, pipeline)[0]),
                       backend, model, api_visibility="private", queue=False)

        # library
        lib_out = [table, count, paper, venue, year]
        demo.load(app.library_updates, search, lib_out, api_visibility="private")
        search.change(app.paper_rows, search, table, api_visibility="private", queue=False)
        add.click(app.upload, [files, search], [status, *lib_out], api_name="upload",
                  concurrency_limit=1, concurrency_id="index")
        if first_start:
            timer = gr.Timer(1.0)
            timer.tick(app.status_tick, search, [library_status, timer, *lib_out],
                       api_visibility="private", queue=False)
            demo.load(app.status_tick, search, [library_status, timer, *lib_out],
                      api_visibility="private", queue=False)

        gr.api(app.api_ask, api_name="ask")
        gr.api(app.api_summarise, api_name="summarise")
        gr.api(app.api_papers, api_name="papers")
    # bounded: under a burst, late arrivals are told to try again rather than wait minutes
    demo.queue(default_concurrency_limit=4, max_size=settings.queue_size)
    _import_matplotlib()
    if first_start:
        threading.Thread(target=app.build_default_library, name="rag-first-start",
                         daemon=True).start()
    elif warm_up:
        threading.Thread(target=app.warm_up, name="rag-warm-up", daemon=True).start()
    return demo


def _import_matplotlib() -> None:
    """subtle: Gradio wraps every event in `MatplotlibBackendMananger`, which imports matplotlib.
    If the warm-up thread is importing it at that moment (the model libraries do), the event's
    import can fail half-way and the request dies with "no attribute '_original_backend'"
    (seen on the first /ask to a just-started app). Importing it once, before any thread, avoids
    the race."""
    with suppress(ImportError):
        import matplotlib  # noqa: F401


CSS = """
.gradio-container { max-width: 1440px !important; margin: 0 auto !important; }
.app-head { padding: 6px 4px 2px; }
.app-head h1 { font-size: 1.65rem; font-weight: 700; margin: 0 0 4px; }
.app-head p { margin: 0; color: var(--body-text-color-subdued); font-size: 0.98rem; }
.panel-title { font-size: 1.1rem; font-weight: 650; margin: 0; }
#sources { max-height: 700px; overflow-y: auto; padding: 0 4px 0 0; }
.src-panel { display: flex; flex-direction: column; gap: 10px; font-size: 0.92rem; }
.src-empty { color: var(--body-text-color-subdued); border: 1px dashed var(--border-color-primary);
  border-radius: 10px; padding: 16px; margin: 0; }
.src-head { color: var(--body-text-color-subdued); font-size: 0.85rem; }
.src-notes { margin: 0; padding-left: 18px; color: var(--body-text-color-subdued);
  font-size: 0.82rem; }
.src-card { border: 1px solid var(--border-color-primary); border-radius: 10px;
  padding: 10px 12px; background: var(--background-fill-primary);
  transition: box-shadow .3s, border-color .3s; }
.src-card.cited { border-left: 4px solid var(--color-accent); }
.src-card.flash { border-color: var(--color-accent); box-shadow: 0 0 0 3px var(--color-accent-soft); }
.src-card summary { cursor: pointer; display: flex; gap: 8px; align-items: baseline;
  list-style: none; font-weight: 600; line-height: 1.35; }
.src-card summary::-webkit-details-marker { display: none; }
.src-n { flex: none; min-width: 1.6em; height: 1.6em; border-radius: 999px; display: inline-flex;
  align-items: center; justify-content: center; font-size: 0.8rem;
  background: var(--color-accent-soft); color: var(--color-accent); }
.src-title a { color: inherit; text-decoration: underline; text-decoration-color:
  var(--color-accent); text-underline-offset: 2px; }
.src-meta { color: var(--body-text-color-subdued); font-size: 0.84rem; margin: 4px 0 2px; }
.src-score { display: flex; align-items: center; gap: 8px; font-size: 0.78rem;
  color: var(--body-text-color-subdued); }
.src-score .bar { width: 80px; height: 6px; border-radius: 3px;
  background: var(--border-color-primary); overflow: hidden; }
.src-score .bar span { display: block; height: 100%; background: var(--color-accent); }
.src-text { margin: 6px 0 0; padding: 2px 10px; border-left: 3px solid var(--border-color-primary);
  line-height: 1.5; white-space: pre-line; overflow-wrap: anywhere; }
.src-text mark.used { background: #fff3b0; color: inherit; padding: 0 1px; }
.src-text mark.term { background: transparent; color: inherit; font-weight: 700;
  text-decoration: underline dotted; }
.dark .src-text mark.used { background: #5c4b00; }
.src-more > summary { cursor: pointer; color: var(--body-text-color-subdued); margin: 4px 0; }
.src-more .src-card { margin-top: 8px; }
#summary-row { align-items: flex-end; }
#summarise { max-height: 44px; margin-bottom: 4px; }
#papers td, #papers th, #papers span { font-family: var(--font) !important; }
#chat a[href^="#src-"] { text-decoration: none; font-weight: 600; font-size: 0.85em;
  color: var(--color-accent); }
/* A list answer's table: the source number and the venue ("ICLR 2021") are short labels; a
   narrow chat column squeezed them to a letter or two per line. They keep one line; the title
   and the passage wrap instead. */
#chat table td:first-child, #chat table td:nth-child(3) { white-space: nowrap; }
"""

# Citation links point at #src-n: scroll the panel to that source and flash it.
JS = """
() => {
  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[href^="#src-"]');
    if (!a) return;
    e.preventDefault(); e.stopPropagation();
    const card = document.getElementById(a.getAttribute('href').slice(1));
    if (!card) return;
    const more = card.closest('details.src-more'); if (more) more.open = true;
    card.open = true;
    const panel = document.getElementById('sources');  // scroll the panel, not the page
    if (panel) panel.scrollBy({top: card.getBoundingClientRect().top
                               - panel.getBoundingClientRect().top - 8, behavior: 'smooth'});
    document.querySelectorAll('.src-card.flash').forEach((c) => c.classList.remove('flash'));
    card.classList.add('flash');
    setTimeout(() => card.classList.remove('flash'), 2500);
  }, true);
}
"""
