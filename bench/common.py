"""What every benchmark shares: offline environment, the machine description, a fresh index.

`machine()` says where numbers were measured (cores, CPU model, memory, load average), because
on a shared 2-core box the load average explains more variance than any code change.
`build_index()` indexes the shipped corpus into a fresh temporary data directory with the
project's own `Indexer`, so no benchmark reads or writes the user's `.rag/`. This module measures
nothing by itself.
"""

from __future__ import annotations

import os

# Before anything imports transformers/chromadb: weights come from disk, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.evaluation import pct
from rag.settings import PROJECT_ROOT, Settings

CORPUS = PROJECT_ROOT / "corpus"
DEV = PROJECT_ROOT.parent / "shared" / "eval" / "dev.jsonl"
REAL_PDFS = PROJECT_ROOT.parent / "shared" / "pdfs" / "real"
RESULTS = PROJECT_ROOT / "bench" / "results"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Where and when: enough to tell two runs apart."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    import torch

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": usable,
        "cpu": cpu_model(),
        "memory_gb": memory_total_gb(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
    }


def machine_line(m: dict[str, Any], load_end: Sequence[float] | None = None) -> str:
    """One Markdown line describing the machine and its load during the run."""
    load = "/".join(f"{x:.2f}" for x in m["load_average"])
    end = f", at the end {'/'.join(f'{x:.2f}' for x in load_end)}" if load_end else ""
    return (f"Measured {m['date']} on {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, "
            f"Python {m['python']}, torch threads {m['torch_threads']}; load average (1/5/15 min) "
            f"at the start {load}{end}.")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far: VmHWM of its own memory. subtle: not
    ru_maxrss, which Linux carries across fork and exec, so a benchmark's child process reported
    its parent's peak (2.3 GB for a serving process whose own peak was 433 MB)."""
    try:
        with open("/proc/self/status") as f:
            return round(next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def percentiles(xs: Sequence[float]) -> dict[str, float | None]:
    """p50/p95 in seconds, by the scorer's own nearest-rank definition."""
    return {"p50_s": _round(pct(xs, 50)), "p95_s": _round(pct(xs, 95)), "n": len(xs)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def ms(x: float | None) -> str:
    """Seconds as a readable duration: '0.4 ms', '27 ms', '12.3 s'."""
    if x is None:
        return "–"
    if x < 0.01:
        return f"{x * 1000:.1f} ms"
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


@dataclass
class BuiltIndex:
    settings: Settings
    seconds: float
    chunks: int
    report: dict[str, Any]


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, corpus_dir=CORPUS)


def build_index(data_dir: Path, extra: Sequence[Path] = ()) -> BuiltIndex:
    """Index the shipped corpus (and `extra` files or folders) into `data_dir` (empty) with the
    project's Indexer.

    The embedding model is loaded before the clock starts, so the time is indexing alone."""
    from rag.embeddings import get_embedder
    from rag.indexing import Indexer

    settings = settings_for(data_dir)
    embedder = get_embedder(settings.embedding_model, settings.embedding_batch_size)
    embedder.embed(["warm-up"])
    started = time.perf_counter()
    report = Indexer(settings, embedder=embedder).index([CORPUS, *extra])
    seconds = time.perf_counter() - started
    if report.skipped:
        raise RuntimeError(f"the shipped corpus should index cleanly; skipped: {report.skipped}")
    return BuiltIndex(settings, round(seconds, 2), report.chunks_added, report.to_dict())
