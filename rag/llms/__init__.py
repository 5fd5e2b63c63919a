"""LLM backends behind one Protocol, picked by name with `get_llm`.

Registered here: "llamacpp" (a local GGUF, run in a process of its own by
`rag.llms.model_process`) and "openai" (any OpenAI-compatible
server). Importing this package is cheap: llama_cpp and openai load only when a backend is
first used. The "extractive" answerer is not an LLM and lives in `rag.extractive`.
"""

from rag.llms.base import LLM, Message, get_llm, llm_names, register_llm
from rag.llms.llamacpp import LlamaCppLLM, gemma_model_path, smollm2_model_path
from rag.llms.openai_compat import OpenAICompatLLM

register_llm("llamacpp", LlamaCppLLM)
register_llm("openai", OpenAICompatLLM)

__all__ = [
    "LLM",
    "LlamaCppLLM",
    "Message",
    "OpenAICompatLLM",
    "gemma_model_path",
    "get_llm",
    "llm_names",
    "register_llm",
    "smollm2_model_path",
]
