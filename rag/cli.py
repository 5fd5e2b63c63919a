"""The `rag` command: a thin shell over the library. Every command takes `--json`.

Only this edge turns `RagError`s into messages and exit codes; the logic lives in the modules.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rag.errors import RagError
from rag.settings import Settings, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Chat with a library of research papers.")
console = Console(stderr=False)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead.")]


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _settings() -> Settings:
    return get_settings()


@contextmanager
def papers_bar(out: Console, description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar counting papers; yields the (done, total) callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} papers"), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _first_start(settings: Settings) -> None:
    """Reading commands on an empty store build the shipped library first (once), with
    progress on stderr; a store holding anything, or RAG_CORPUS_DIR pointed elsewhere, is left
    alone (`rag.indexing.builds_default_library`)."""
    from rag.indexing import Indexer, builds_default_library
    from rag.store import ChunkStore

    store = ChunkStore(settings)
    if not builds_default_library(settings, store):
        return
    err.print(f"The library is empty: indexing the default library ({settings.corpus_dir}) "
              "first; this happens once.")
    with papers_bar(err, "indexing the default library") as bar:
        indexer = Indexer(settings, store=store)
        report = indexer.index([settings.corpus_dir], papers_progress=bar)
        _save_snapshot(settings, indexer)
    for file, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {file}: {reason}")
    err.print(f"indexed {report.papers} papers ({report.chunks_added} chunks) in "
              f"{report.seconds:.1f} s")


def _save_snapshot(settings: Settings, indexer: Any) -> None:
    """Leave a current library snapshot (`rag.snapshot`), so the app's start reads it back
    instead of building the library's statistics (that cost moves here, where indexing already
    costs more)."""
    from rag.chain import Pipeline
    from rag.errors import RagError
    from rag.retrieval import Retriever

    retriever = Retriever(settings, embedder=indexer.embedder, store=indexer.store)
    try:
        Pipeline(settings, retriever=retriever).save_snapshot()
    except (OSError, RagError) as exc:  # the index is whole; only the next start is slower
        err.print(f"[yellow]could not save the library snapshot[/yellow] ({exc}); the app "
                  "will build the library's statistics at its start instead")


def _reading_settings() -> Settings:
    """Settings for a command that reads the library, after building it on first start."""
    settings = _settings()
    _first_start(settings)
    return settings


def _guard(fn: Callable[[], None]) -> None:
    try:
        fn()
    except RagError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        err.print("interrupted: the next `rag index` completes the store")
        raise typer.Exit(130) from None


@app.command()
def index(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (default: corpus/)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index documents: parse, chunk, embed only what changed, remove what was deleted."""

    def run() -> None:
        from rag.indexing import Indexer

        settings = _settings()
        targets = paths or [settings.corpus_dir]
        indexer = Indexer(settings)
        if as_json:
            report = indexer.index(targets)
            _save_snapshot(settings, indexer)
            _emit(report.to_dict())
            return
        # The bar moves by input bytes (known before parsing starts, so the ETA is steady);
        # the text says which file and how many files and papers are done.
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[files]}"), TimeElapsedColumn(),
                      TextColumn("ETA"), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("indexing", total=None, files="")
            files = [0, 0]

            def progress(name: str, done: int, total: int) -> None:
                files[:] = [done, total]
                bar.update(task, description=f"indexing {name}"[:50] if name else "indexing",
                           files=f"{done}/{total} files")

            def papers(done: int, found: int) -> None:
                bar.update(task, files=f"{files[0]}/{files[1]} files, {done} papers")

            def volume(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = indexer.index(targets, progress, papers, volume)
            bar.update(task, description="saving the library snapshot", files="")
            _save_snapshot(settings, indexer)
        for file, reason in report.skipped:
            err.print(f"[yellow]skipped[/yellow] {file}: {reason}")
        console.print(
            f"{report.papers} papers from {report.files} files: {report.chunks_added} chunks "
            f"added, {report.chunks_unchanged} unchanged, {report.chunks_removed} removed, "
            f"{len(report.skipped)} files skipped, {report.seconds:.1f} s"
        )

    _guard(run)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int, typer.Option("--k", help="How many passages")] = 5,
    venue: Annotated[str | None, typer.Option(help="Only this venue, e.g. ICLR")] = None,
    year: Annotated[int | None, typer.Option(help="Only this year")] = None,
    author: Annotated[str | None, typer.Option(help="Only papers with this author")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source file name")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ranked passages for a query, with title, venue and score."""

    def run() -> None:
        from rag.retrieval import Filters, Retriever

        hits = Retriever(_reading_settings()).search(query, k, Filters(venue, year, author, source))
        if as_json:
            _emit([{"rank": i + 1, "score": round(h.score, 5), "title": h.paper.title,
                    "venue": h.paper.venue, "year": h.paper.year, "source": h.paper.source,
                    "page": h.chunk.page, "text": h.chunk.text} for i, h in enumerate(hits)])
            return
        table = Table("#", "score", "title", "venue", "passage", show_lines=True)
        for i, h in enumerate(hits, 1):
            table.add_row(str(i), f"{h.score:.4f}", h.paper.title, h.paper.venue_year,
                          h.chunk.text[:240] + ("…" if len(h.chunk.text) > 240 else ""))
        console.print(table)

    _guard(run)


@app.command()
def papers(
    venue: Annotated[str | None, typer.Option(help="Only this venue")] = None,
    year: Annotated[int | None, typer.Option(help="Only this year")] = None,
    author: Annotated[str | None, typer.Option(help="Only papers with this author")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source file name")] = None,
    title: Annotated[str | None, typer.Option(help="Title contains this text")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the papers in the index."""

    def run() -> None:
        from rag.retrieval import Filters
        from rag.store import ChunkStore

        f = Filters(venue, year, author, source)
        found = [p for p in ChunkStore(_reading_settings()).papers()
                 if f.accepts(p) and (not title or title.lower() in p.title.lower())]
        if as_json:
            _emit([p.to_dict() for p in found])
            return
        table = Table("title", "authors", "venue", "source", "pages", "sections", "warnings")
        for p in found:
            authors = ", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else "")
            table.add_row(p.title, authors, p.venue_year, p.source,
                          str(p.pages) if p.pages is not None else "",
                          str(len([s for s in p.sections if s.kind != "front"])) if p.sections else "",
                          "; ".join(p.warnings))
        console.print(table)
        console.print(f"{len(found)} papers")

    _guard(run)


@app.command()
def stats(as_json: JsonOpt = False) -> None:
    """What the index holds."""

    def run() -> None:
        from collections import Counter

        from rag.store import ChunkStore

        settings = _reading_settings()
        store = ChunkStore(settings)
        chunks = store.chunks()
        papers = {c.paper.id: c.paper for c in chunks}
        data = {
            "collection": store.name,
            "store": (f"http://{settings.chroma_host}:{settings.chroma_port}"
                      if settings.use_server else str(settings.data_dir / "chroma")),
            "papers": len(papers),
            "chunks": len(chunks),
            "sources": dict(Counter(p.source for p in papers.values())),
            "venues": dict(Counter(p.venue_year or "unknown" for p in papers.values())),
            "embedding_model": settings.embedding_model,
        }
        if as_json:
            _emit(data)
            return
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {value}")

    _guard(run)


@app.command()
def config(as_json: JsonOpt = False) -> None:
    """The effective settings (environment variables RAG_*)."""
    settings = _settings()
    data = json.loads(settings.model_dump_json())
    data["collection"] = settings.collection_name()
    if data.get("openai_api_key"):
        data["openai_api_key"] = "***"
    if as_json:
        _emit(data)
        return
    table = Table("setting", "value", "description")
    for name, fld in Settings.model_fields.items():
        table.add_row(f"RAG_{name.upper()}", str(data.get(name)), fld.description or "")
    console.print(table)
    console.print(f"collection: {data['collection']}")


def _print_sources(answer: Any) -> None:
    console.print()
    for n, hit in enumerate(answer.sources, 1):
        mark = "*" if n in answer.citations else " "
        p = hit.paper
        console.print(f"{mark}[{n}] [bold]{p.title}[/bold] — {p.venue_year or p.source}"
                      + (f"  {p.url}" if p.url else ""), highlight=False)


def _stream_answer(stream: Any, as_json: bool) -> Any:
    """Print the answer as it grows; return the final Answer."""
    shown = ""
    final = None
    for final in stream:
        if not as_json and final.text.startswith(shown):
            sys.stdout.write(final.text[len(shown):])
            sys.stdout.flush()
            shown = final.text
    assert final is not None
    if not as_json and final.text != shown:  # verification rewrote the streamed draft
        console.print("\n[dim]— checked against the sources:[/dim]")
        console.print(final.text, markup=False, highlight=False)
    return final


def _answer_json(a: Any) -> dict[str, Any]:
    return {
        "answer": a.text, "abstained": a.abstained, "citations": a.citations,
        "backend": a.backend, "notes": a.notes, "timings": a.timings,
        "sentences": [{"text": c.text, "verified": c.verified, "reason": c.reason}
                      for c in a.sentences],
        "sources": [{"n": n, "title": h.paper.title, "authors": list(h.paper.authors),
                     "venue": h.paper.venue, "year": h.paper.year, "url": h.paper.url,
                     "source": h.paper.source, "page": h.chunk.page, "score": h.score,
                     "text": h.chunk.text} for n, h in enumerate(a.sources, 1)],
    }


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question")],
    backend: Annotated[str | None, typer.Option(help="extractive, llamacpp or openai")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Passages to use")] = None,
    venue: Annotated[str | None, typer.Option(help="Only this venue")] = None,
    year: Annotated[int | None, typer.Option(help="Only this year")] = None,
    author: Annotated[str | None, typer.Option(help="Only papers with this author")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the library, streamed, with its sources."""

    def run() -> None:
        from rag.chain import Pipeline
        from rag.retrieval import Filters

        pipe = Pipeline(_reading_settings())
        stream = pipe.answer_stream(question, filters=Filters(venue, year, author), k=k,
                                    backend=backend)
        final = _stream_answer(stream, as_json)
        if as_json:
            _emit(_answer_json(final))
            return
        _print_sources(final)

    _guard(run)


@app.command()
def chat(
    backend: Annotated[str | None, typer.Option(help="extractive, llamacpp or openai")] = None,
) -> None:
    """An interactive conversation with history (follow-ups work). Empty line or Ctrl-D ends."""

    def run() -> None:
        from rag.chain import Pipeline

        pipe = Pipeline(_reading_settings())
        history: list[dict[str, str]] = []
        while True:
            try:
                question = console.input("[bold cyan]you>[/bold cyan] ").strip()
            except EOFError:
                break
            if not question:
                break
            try:
                final = _stream_answer(pipe.answer_stream(question, history, backend=backend),
                                       False)
            except RagError as exc:  # one failed turn does not end the conversation
                err.print(f"[red]error:[/red] {exc}")
                continue
            _print_sources(final)
            history += [{"role": "user", "content": question},
                        {"role": "assistant", "content": final.text}]

    _guard(run)


@app.command("eval")
def eval_(
    questions: Annotated[Path, typer.Argument(help="Questions JSONL (see shared/eval/README.md)")],
    out: Annotated[Path, typer.Option("--out", help="Where to write one result line per question")],
    backend: Annotated[str | None, typer.Option(help="Answering backend (default: setting)")] = None,
    k: Annotated[int, typer.Option("--k", help="Passages per question")] = 5,
    retrieval_only: Annotated[bool, typer.Option("--retrieval-only", help="Skip answering")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run questions through the app's code path, write RESULTS.jsonl, print the score."""

    def run() -> None:
        from rag.evaluation import format_summary, load_jsonl, run_questions, score
        from rag.responders import make_responder

        qs = load_jsonl(questions)
        settings = _reading_settings()
        respond = make_responder(settings, backend=backend, k=k, retrieval_only=retrieval_only)
        out.parent.mkdir(parents=True, exist_ok=True)
        results = []
        with open(out, "w", encoding="utf-8") as fh:
            for record in run_questions(qs, respond):
                results.append(record)
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
        summary = score(qs, results, k)
        if as_json:
            _emit(summary)
        else:
            console.print(format_summary(summary), markup=False, highlight=False)

    _guard(run)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
