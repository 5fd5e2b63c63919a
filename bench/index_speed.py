"""Indexing throughput against the raw encoder, side by side.

The raw encoder is the embedding model encoding every chunk text of the inputs in one call
(chunks/s, model already loaded): no parsing, no store, no BM25. `rag index` is the project's
`Indexer` building a fresh store from the same files (same embedder instance, so model loading
is outside both clocks). The two alternate rep by rep and the medians are compared; the ratio
`index / raw` is the issue's target (≥ 0.85). Each rep of the indexer runs in a new temporary
data directory, deleted afterwards.

Also measured once: how long parsing and chunking alone take (the part a parser thread overlaps
with embedding), so the ratio can be read against it.

Usage: `.venv/bin/python bench/index_speed.py [--reps 3] [--backend torch|onnx|onnx-int8|
openvino|openvino-int8] [--paths corpus /work/shared/pdfs/real] [--out FILE.json]
[--baseline OLD_INDEXING.py]` (`--baseline`: another version of rag/indexing.py, measured
interleaved with this one, e.g. from `git show 4a5f4c5:rag/indexing.py > /tmp/old.py`).
Not part of `bench/run.py`; the numbers are quoted in BENCHMARKS.md ("Indexing speed").
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from rag.chunking import Chunker
from rag.embeddings import Embedder, get_embedder
from rag.indexing import Indexer, iter_files
from rag.parsers import parse_file
from rag.settings import PROJECT_ROOT, Settings

REAL_PDFS = PROJECT_ROOT.parent / "shared" / "pdfs" / "real"


def chunk_texts(paths: list[Path], settings: Settings, embedder: Embedder) -> tuple[list[str], float]:
    """Every chunk's embedded text, and the seconds parsing + chunking took."""
    chunker = Chunker(embedder, settings.chunk_tokens, settings.chunk_overlap_tokens)
    started = time.perf_counter()
    texts: list[str] = []
    for root in paths:
        for path in iter_files(root):
            try:
                papers = parse_file(path, max_bytes=int(settings.max_file_mb * 1024 * 1024))
            except Exception:  # skipped by the indexer too
                continue
            texts.extend(c.embed_text for c in chunker.chunk_papers(papers, str(path.resolve())))
    return texts, time.perf_counter() - started


def load_indexer(path: Path | None) -> type[Indexer] | None:
    """An `Indexer` class from another copy of rag/indexing.py (e.g. `git show HEAD~3:...`),
    to measure the previous pipeline side by side."""
    if path is None:
        return None
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("baseline_indexing", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Indexer  # type: ignore[no-any-return]


def run_indexer(cls: type[Indexer], settings: Settings, embedder: Embedder,
                paths: list[Path], rep: int) -> tuple[float, int]:
    data = Path(tempfile.mkdtemp(prefix=f"rag-speed-{rep}-"))
    try:
        s = settings.model_copy(update={"data_dir": data})
        started = time.perf_counter()
        report = cls(s, embedder=embedder).index(paths)
        return time.perf_counter() - started, report.chunks_added
    finally:
        shutil.rmtree(data, ignore_errors=True)


def measure(paths: list[Path], backend: str, reps: int,
            baseline: type[Indexer] | None = None) -> dict[str, Any]:
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="rag-speed-")),
                        embedding_backend=backend)
    embedder = get_embedder(settings.embedding_model, settings.embedding_batch_size,
                            backend=settings.embedding_backend)
    embedder.embed(["warm-up"])
    import chromadb  # noqa: F401  imported once before the clocks (seconds on a busy machine)

    texts, parse_s = chunk_texts(paths, settings, embedder)
    raw_s: list[float] = []
    index_s: list[float] = []
    base_s: list[float] = []
    added = 0
    for rep in range(reps):  # interleaved: raw, previous indexer, this indexer
        started = time.perf_counter()
        embedder.embed(texts)
        raw_s.append(time.perf_counter() - started)
        line = f"rep {rep}: raw {len(texts) / raw_s[-1]:.1f} chunks/s"
        if baseline is not None:
            seconds, added = run_indexer(baseline, settings, embedder, paths, rep)
            base_s.append(seconds)
            line += f", previous indexer {added / seconds:.1f} chunks/s"
        seconds, added = run_indexer(Indexer, settings, embedder, paths, rep)
        index_s.append(seconds)
        print(f"{line}, index {added / seconds:.1f} chunks/s", flush=True)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    raw = len(texts) / statistics.median(raw_s)
    idx = added / statistics.median(index_s)
    extra: dict[str, Any] = {}
    if base_s:
        base = added / statistics.median(base_s)
        extra = {"previous_s": [round(x, 2) for x in base_s],
                 "previous_chunks_per_s": round(base, 1), "previous_ratio": round(base / raw, 3)}
    return {**extra,
        "backend": backend, "chunks": len(texts), "chunks_indexed": added,
        "parse_chunk_s": round(parse_s, 2),
        "raw_s": [round(x, 2) for x in raw_s], "index_s": [round(x, 2) for x in index_s],
        "raw_chunks_per_s": round(raw, 1), "index_chunks_per_s": round(idx, 1),
        "ratio": round(idx / raw, 3),
    }


def compare_backends(paths: list[Path], backends: list[str], reps: int, limit: int) -> dict[str, Any]:
    """Raw encoder throughput of each backend on the same chunk texts, interleaved rep by rep
    (exports are made, and every model loaded and warmed, before the first clock)."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="rag-speed-")))
    embedders = {b: get_embedder(settings.embedding_model, settings.embedding_batch_size,
                                 backend=b) for b in backends}
    for e in embedders.values():
        e.embed(["warm-up"])
    texts, _ = chunk_texts(paths, settings, embedders[backends[0]])
    texts = texts[:limit]
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    for rep in range(reps):
        for b, e in embedders.items():
            started = time.perf_counter()
            e.embed(texts)
            seconds[b].append(time.perf_counter() - started)
            print(f"rep {rep} {b}: {len(texts) / seconds[b][-1]:.1f} chunks/s", flush=True)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    base = statistics.median(seconds[backends[0]])
    return {"chunks": len(texts), "backends": {
        b: {"seconds": [round(x, 2) for x in xs],
            "chunks_per_s": round(len(texts) / statistics.median(xs), 1),
            "speedup": round(base / statistics.median(xs), 2)} for b, xs in seconds.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--paths", nargs="*", type=Path, default=[common.CORPUS, REAL_PDFS])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--baseline", type=Path, help="another rag/indexing.py to compare with")
    ap.add_argument("--compare", nargs="*", help="raw encoder speed of these backends only, "
                    "e.g. --compare torch onnx onnx-int8 openvino openvino-int8")
    ap.add_argument("--limit", type=int, default=256, help="chunk texts for --compare")
    args = ap.parse_args()
    m = common.machine()
    if args.compare:
        result = {"machine": m, **compare_backends(args.paths, args.compare, args.reps,
                                                   args.limit), "load_end": common.load_average()}
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return
    result = {"machine": m, **measure(args.paths, args.backend, args.reps,
                                      load_indexer(args.baseline)),
              "load_end": common.load_average()}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
