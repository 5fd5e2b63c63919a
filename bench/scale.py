"""Scale: how indexing, start-up, latency and memory grow with the library (1k to 250k chunks).

For each size a synthetic library is generated under a temporary folder: Markdown papers of 12
sections each (about 50 chunks a paper, as a real library of 5,000 papers has 250,000 chunks),
their sentences drawn, with a fixed seed, from the shipped corpus. Then, per size:

- index: `Indexer(settings, embedder=...).index([library])` into a fresh data directory, then
  the library snapshot `rag index` leaves (`Pipeline.save_snapshot`, timed apart: it builds the
  reader's statistics and the name index once, so that no start has to);
- ready: a fresh process (`python bench/scale.py --serve ...`) from its spawn until it can
  answer, as the app starts: imports, `Pipeline(settings)`, `Pipeline.warm_up()` (the embedder,
  the library from its snapshot, the reader and name index);
- first answer: the first `Pipeline.answer` after that;
- retrieval (`Retriever.search`) and whole answer (`Pipeline.answer`, extractive) p50/p95 over
  questions about the library's own papers (`library_questions`: what a paper says about a
  phrase of it, and summaries), in that serving process;
- add one paper: `Pipeline.add_documents([new file])` until `Pipeline.answer` about it returns
  a source from it;
- peak RSS of the serving process (its VmHWM: ru_maxrss would carry the parent's peak).

Up to 10k chunks the real embedder (MiniLM) is used; above, a stand-in (`StandIn`: hashed words,
384 dimensions like MiniLM, so the vector store holds the same amount) because embedding 250k
chunks with MiniLM takes hours on 2 cores (see BENCHMARKS.md "Indexing speed" for its rate); the
table says which. With `--server` the store is a `chroma run` server on loopback, a fresh one
started here for each size, and the app its client (its BM25 index and snapshot stay in its own data directory). A size that
does not finish within `--budget-min` minutes is stopped and reported as such. The plot (latency and memory against size) goes to
`bench/results/scale.png`, the numbers to `bench/results/scale.json`, and the section
"Scale" of BENCHMARKS.md is rewritten.

Usage (`make bench-scale`, also run by `make bench`; it takes about an hour on 2 cores):
`.venv/bin/python bench/scale.py [--sizes 1000 10000 100000 250000] [--budget-min 20]
[--real-up-to 10000] [--questions 20] [--server] [--keep]`; `--render` redraws the plot and the section
from the last scale.json. Everything is written under $TMPDIR and deleted afterwards
unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

from rag.settings import Settings
from rag.text import sentence_spans

SECTIONS = ("Introduction", "Related Work", "Background", "Method", "Model", "Training",
            "Experimental Setup", "Results", "Ablations", "Analysis", "Limitations",
            "Conclusion")
SENTENCES_PER_SECTION = 18  # ~50 chunks of 200 MiniLM word pieces a paper
NEW_TITLE = "Quokka Lattice Distillation for Sparse Retrieval"
NEW_QUESTION = "What does Quokka Lattice Distillation do?"
BENCHMARKS_MD = common.PROJECT_ROOT / "BENCHMARKS.md"


class StandIn:
    """Fast fixed-dimension embedder: each word lights two of 384 dimensions (crc32 hashes).
    Tokens are words. For scale runs only: it ranks by shared words, not meaning."""

    name = "stand-in-hash-384"
    max_tokens = 256
    dimension = 384

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for w in re.findall(r"\w+", text.lower()):
                h = zlib.crc32(w.encode())
                out[row, h % self.dimension] += 1.0
                out[row, (h >> 16) % self.dimension] += 0.5
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (out / norms).tolist()  # type: ignore[no-any-return]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))


# --- the synthetic library ---------------------------------------------------------------------
def sentence_pool() -> list[str]:
    """Prose sentences of the shipped corpus (no headings, tables or links)."""
    pool: list[str] = []
    for path in sorted(common.CORPUS.iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        for a, b in sentence_spans(text):
            s = " ".join(text[a:b].split())
            if 60 <= len(s) <= 400 and not re.search(r"[#|*\[\]<>]|https?:", s):
                pool.append(s)
    return pool


def paper_text(rng: random.Random, pool: list[str], words: list[str], n: int) -> str:
    title = " ".join(rng.sample(words, 5)).title() + f" ({n})"
    authors = ", ".join(f"{rng.choice(words).title()} {rng.choice(words).title()}"
                        for _ in range(3))
    parts = [f"# {title}", "", f"{authors}", ""]
    for i, name in enumerate(SECTIONS, 1):
        parts += [f"## {i} {name}", "", " ".join(rng.sample(pool, SENTENCES_PER_SECTION)), ""]
    return "\n".join(parts)


def generate(folder: Path, papers: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = sentence_pool()
    words = sorted({w.lower() for s in pool for w in re.findall(r"[A-Za-z]{5,}", s)})
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(papers):
        sub = folder / f"{n // 500:03d}"  # 500 files a folder
        sub.mkdir(exist_ok=True)
        (sub / f"paper-{n:05d}.md").write_text(paper_text(rng, pool, words, n), encoding="utf-8")


def chunks_per_paper(embedder: Any, folder: Path) -> int:
    """Chunks one generated paper makes with this embedder's tokens (the stand-in counts words,
    so its chunks are longer and a size needs more of its papers)."""
    from rag.chunking import Chunker
    from rag.parsers import parse_file

    generate(folder, 1, seed=99)
    path = next(folder.rglob("*.md"))
    n = len(Chunker(embedder, 200, 40).chunk_papers(parse_file(path)))
    shutil.rmtree(folder, ignore_errors=True)
    return max(1, n)


def new_paper(folder: Path) -> Path:
    body = (f"# {NEW_TITLE}\n\nAda Quill, Ben Marsh\n\n## 1 Method\n\n{NEW_TITLE} compresses a "
            "dense retriever into a sparse lattice of quokka codes. It keeps 97.1% of the "
            "teacher's recall at a tenth of the memory.\n")
    path = folder / "new-paper.md"
    path.write_text(body, encoding="utf-8")
    return path


# --- serving, in a fresh process ----------------------------------------------------------------
def settings_for(data_dir: Path, chroma_port: int | None) -> Settings:
    """Embedded store in `data_dir`, or the `chroma run` server on loopback at `chroma_port`
    (the snapshot and BM25 index stay in `data_dir`, on the app's side)."""
    settings = Settings(data_dir=data_dir, corpus_dir=data_dir / "no-corpus")
    if chroma_port:
        return settings.model_copy(update={"chroma_host": "127.0.0.1", "chroma_port": chroma_port})
    return settings


def library_questions(folder: Path, n: int, seed: int = 11) -> list[str]:
    """Questions about papers of the generated library, so every answer does the whole work
    (the dev set's questions name papers a synthetic library lacks, and are declined at once):
    three of four ask what a paper says about the opening words of one of its sentences, one
    asks for a summary."""
    rng = random.Random(seed)
    files = sorted(folder.rglob("*.md"))
    out: list[str] = []
    for i, path in enumerate(rng.sample(files, min(n, len(files)))):
        text = path.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").strip()
        if i % 4 == 3:
            out.append(f"Summarise the paper '{title}'.")
            continue
        body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")][2:]
        sentence = rng.choice([s for s in re.split(r"(?<=\.) ", rng.choice(body)) if len(s) > 60])
        words = " ".join(re.findall(r"[A-Za-z][\w-]*", sentence)[:7])
        out.append(f"What does '{title}' say about {words}?")
    return out


def serve(data_dir: Path, stand_in: bool, questions: int, new_dir: Path,
          chroma_port: int | None = None, library_dir: Path | None = None) -> dict[str, Any]:
    """Run in the child: everything a user waits for, timed (questions about `library_dir`)."""
    assert library_dir is not None
    from rag.chain import Pipeline
    from rag.retrieval import Retriever

    settings = settings_for(data_dir, chroma_port)
    t0 = time.perf_counter()
    if stand_in:
        pipeline = Pipeline(settings, retriever=Retriever(settings, embedder=StandIn()))
    else:
        pipeline = Pipeline(settings)
    qs = library_questions(library_dir, questions)
    pipeline.warm_up()  # what the app does before it serves: models, library, reader
    ready = time.time()
    pipeline_s = time.perf_counter() - t0
    started = time.perf_counter()
    pipeline.answer(qs[0])
    first = time.perf_counter() - started
    retrieval, whole = [], []
    for q in qs:
        started = time.perf_counter()
        pipeline.retriever.search(q)
        retrieval.append(time.perf_counter() - started)
        started = time.perf_counter()
        pipeline.answer(q)
        whole.append(time.perf_counter() - started)
    started = time.perf_counter()
    report = pipeline.add_documents([new_paper(new_dir)])
    answer = pipeline.answer(NEW_QUESTION)
    add_s = time.perf_counter() - started
    found = any(NEW_TITLE in h.paper.title for h in answer.sources) and not answer.abstained
    return {"ready_at": ready, "pipeline_s": round(pipeline_s, 3), "first_answer_s": round(first, 3),
            "retrieval": common.percentiles(retrieval), "answer": common.percentiles(whole),
            "add_paper_s": round(add_s, 3), "add_paper_found": found,
            "add_paper_chunks": report.chunks_added, "peak_rss_mb": common.peak_rss_mb()}


def embedder_label(settings: Settings) -> str:
    return f"MiniLM ({settings.embedding_backend})"


def measure_size(size: int, real: bool, questions: int, budget_s: float, root: Path,
                 chroma_port: int | None = None) -> dict[str, Any]:
    from rag.chain import Pipeline
    from rag.embeddings import get_embedder
    from rag.indexing import Indexer
    from rag.retrieval import Retriever

    settings = settings_for(root / f"data-{size}", chroma_port)
    embedder = get_embedder(settings.embedding_model, settings.embedding_batch_size) if real \
        else StandIn()
    per_paper = chunks_per_paper(embedder, root / "probe")
    papers = max(1, math.ceil(size / per_paper))
    library, data = root / f"lib-{size}", settings.data_dir
    started = time.perf_counter()
    generate(library, papers)
    gen_s = time.perf_counter() - started
    embedder.embed(["warm-up"])

    def over_budget(_signum: int, _frame: object) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, over_budget)
    signal.alarm(max(1, int(budget_s - gen_s)))
    started = time.perf_counter()
    try:
        report = Indexer(settings, embedder=embedder).index([library])
        index_s = time.perf_counter() - started
        # what `rag index` does after indexing: the snapshot the app's start reads back
        Pipeline(settings, retriever=Retriever(settings, embedder=embedder)).save_snapshot()
    except TimeoutError:
        return {"size": size, "papers": papers, "chunks": size, "error":
                f"indexing did not finish within the budget ({budget_s / 60:.0f} min)",
                "embedder": embedder_label(settings) if real else StandIn.name,
                "index_s": round(time.perf_counter() - started, 1), "index_chunks_per_s": 0}
    finally:
        signal.alarm(0)
    snapshot_s = time.perf_counter() - started - index_s
    out: dict[str, Any] = {"size": size, "papers": papers, "chunks": report.chunks_added,
                           "store": "server" if chroma_port else "embedded",
                           "embedder": embedder_label(settings) if real else StandIn.name,
                           "generate_s": round(gen_s, 1), "index_s": round(index_s, 1),
                           "snapshot_s": round(snapshot_s, 1),
                           "index_chunks_per_s": round(report.chunks_added / index_s, 1)}
    print(f"{size}: indexed {report.chunks_added} chunks in {index_s:.0f} s", flush=True)
    cmd = [sys.executable, __file__, "--serve", str(data), "--questions", str(questions),
           "--new-dir", str(root), "--library", str(library)] + (
           [] if real else ["--stand-in"]) + (
           ["--chroma-port", str(chroma_port)] if chroma_port else [])
    spawned = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                              timeout=budget_s)  # serving has a budget of its own
    except subprocess.TimeoutExpired:
        out["error"] = f"serving did not finish within the budget ({budget_s / 60:.0f} min)"
        return out
    except subprocess.CalledProcessError as exc:
        out["error"] = f"serving failed: {exc.stderr[-800:]}"
        return out
    served = json.loads(done.stdout.strip().splitlines()[-1])
    out.update(served)
    out["cold_start_s"] = round(served.pop("ready_at") - spawned, 2)
    return out


def chroma_server(path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`chroma run` on a free loopback port, once it answers."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    exe = Path(sys.executable).with_name("chroma")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start within 60 s")


# --- report ---------------------------------------------------------------------------------------
def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "answer" in r]
    if not ok:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    twin = right.twinx()
    for store, style in (("embedded", "-"), ("server", ":")):
        rows = [r for r in ok if r.get("store", "embedded") == store]
        if not rows:
            continue
        xs = [r["chunks"] for r in rows]
        for key, label, color in (("retrieval", "retrieval", "tab:blue"),
                                  ("answer", "whole answer", "tab:green")):
            left.plot(xs, [r[key]["p95_s"] * 1000 for r in rows], "o" + style, color=color,
                      label=f"{label} p95 ({store})")
        right.plot(xs, [r["peak_rss_mb"] for r in rows], "o" + style, color="tab:red",
                   label=f"peak RSS, MB ({store})")
        twin.plot(xs, [r["cold_start_s"] for r in rows], "s" + style, color="tab:gray",
                  label=f"start until ready, s ({store})")
    left.set(xscale="log", yscale="log", xlabel="chunks in the library", ylabel="ms",
             title="Latency (p95)")
    left.legend(fontsize=7)
    right.set(xscale="log", xlabel="chunks in the library", ylabel="MB",
              title="Serving process: memory and start")
    twin.set_ylabel("s")
    right.legend(loc="upper left", fontsize=7)
    twin.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(results: list[dict[str, Any]], machine: dict[str, Any], load_end: list[float]) -> str:
    rows = ["| store | chunks (papers) | embedder | index (+ snapshot) | start until ready "
            "| first answer | retrieval p50 / p95 | answer p50 / p95 | add a paper → "
            "answered | peak RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        snap = f" + {common.ms(r['snapshot_s'])}" if "snapshot_s" in r else ""
        head = f"| {r.get('store', 'embedded')} | {r['chunks']:,} ({r['papers']:,}) | " \
               f"{r['embedder']} | {common.ms(r['index_s'])} " \
               f"({r['index_chunks_per_s']:.0f} chunks/s){snap}"
        if "error" in r:
            rows.append(f"{head} | {r['error'].splitlines()[0][:120]} | | | | | |")
            continue
        found = ("" if r["add_paper_found"] else " (abstained or not in the sources)") + (
            " (nothing added: it was stored already)" if r.get("add_paper_chunks") == 0 else "")
        rows.append(
            f"{head} | {common.ms(r['cold_start_s'])} | {common.ms(r['first_answer_s'])} | "
            f"{common.ms(r['retrieval']['p50_s'])} / {common.ms(r['retrieval']['p95_s'])} | "
            f"{common.ms(r['answer']['p50_s'])} / {common.ms(r['answer']['p95_s'])} | "
            f"{common.ms(r['add_paper_s'])}{found} | {r['peak_rss_mb']:.0f} MB |")
    return "\n".join([
        common.machine_line(machine, load_end), "",
        "Synthetic libraries (Markdown papers of 12 sections, sentences recombined from the shipped "
        "corpus; about 50 chunks a paper). Generated by `bench/scale.py` (its docstring says what "
        "each column times). Above 10k chunks the embedder is a stand-in (hashed words, 384 "
        "dimensions): index times there exclude MiniLM, which would take hours; retrieval, memory "
        "and start-up are the project's own code over a store of that size (and without the "
        "model's own load, which the MiniLM rows include). Latencies are over 20 questions about "
        "the library's own papers (what a paper says about a phrase of it; every fourth a "
        "summary), extractive backend, in a fresh serving process; 'server' rows run the store "
        "as `chroma run` on loopback, the app its client.", "",
        *rows, "",
        "![latency and memory against library size](bench/results/scale.png)",
    ])


def update_benchmarks(body: str) -> None:
    """Replace (or append) the `scale` section of BENCHMARKS.md, keeping everything else."""
    block = f"<!-- bench:scale -->\n## Scale: 1k to 250k chunks\n\n{body.strip()}\n<!-- /bench:scale -->"
    text = BENCHMARKS_MD.read_text(encoding="utf-8")
    pattern = re.compile(r"<!-- bench:scale -->.*?<!-- /bench:scale -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", type=int, default=[1000, 10000, 100000, 250000])
    ap.add_argument("--budget-min", type=float, default=20.0)
    ap.add_argument("--real-up-to", type=int, default=10000)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default="scale", help="results file bench/results/OUT.json; the "
                    "section and plot merge every bench/results/scale*.json (sizes may run in "
                    "separate processes)")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--server", action="store_true", help="the store is a `chroma run` server on "
                    "loopback (started here), the app its client; results go to "
                    "bench/results/OUT-server.json")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--chroma-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--library", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--new-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve, args.stand_in, args.questions, args.new_dir,
                                args.chroma_port, args.library)))
        return
    out_json = common.RESULTS / f"{args.out}{'-server' if args.server else ''}.json"
    if args.render:
        render()
        return
    machine = common.machine()
    root = Path(tempfile.mkdtemp(prefix="rag-scale-"))
    results: list[dict[str, Any]] = []
    server: tuple[subprocess.Popen[bytes], int] | None = None
    try:
        for size in args.sizes:
            if args.server:  # one server per size: a collection of the same name would be shared
                server = chroma_server(root / f"server-db-{size}")
            result = measure_size(size, size <= args.real_up_to, args.questions,
                                  args.budget_min * 60, root, server and server[1])
            if server is not None:
                server[0].terminate()
                server[0].wait(30)
                server = None
                if not args.keep:
                    shutil.rmtree(root / f"server-db-{size}", ignore_errors=True)
            results.append(result)
            print(json.dumps(result), flush=True)
            out_json.write_text(json.dumps({"machine": machine, "results": results,
                                            "load_end": common.load_average()}, indent=2) + "\n")
            for p in (root / f"lib-{size}", root / f"data-{size}"):
                if not args.keep:
                    shutil.rmtree(p, ignore_errors=True)
            if "error" in result or result["index_s"] > args.budget_min * 60:
                print(f"stopping: size {size} went over the budget", flush=True)
                break
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(30)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    out_json.write_text(json.dumps({"machine": machine, "results": results,
                                    "load_end": common.load_average()}, indent=2) + "\n")
    render()


def render() -> None:
    """Plot and BENCHMARKS.md section from every bench/results/scale*.json, by size."""
    saved = [json.loads(p.read_text()) for p in sorted(common.RESULTS.glob("scale*.json"))]
    results = sorted((r for s in saved for r in s["results"]),
                     key=lambda r: (r.get("store", "embedded"), r["size"]))
    first = min(saved, key=lambda s: s["machine"]["date"])
    plot(results, common.RESULTS / "scale.png")
    update_benchmarks(markdown(results, first["machine"], saved[-1]["load_end"]))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
