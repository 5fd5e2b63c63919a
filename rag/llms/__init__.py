"""Answering backends, picked by name: LLMs behind one Protocol (`get_llm`), and "extractive".

Registered here: "extractive" (no model: the answer is the sources' own sentences, built by
`rag.extractive` and streamed by `rag.chain`), "llamacpp" (a local GGUF, run in a process of its
own by `rag.llms.model_process`) and "openai" (any OpenAI-compatible server). Importing this
package is cheap: llama_cpp and openai load only when a backend is first used.
"""

from rag.llms.base import LLM, Message, get_llm, is_extractive, llm_names, register_llm
from rag.llms.llamacpp import LlamaCppLLM, gemma_model_path, smollm2_model_path
from rag.llms.openai_compat import OpenAICompatLLM

register_llm("extractive", None)
register_llm("llamacpp", LlamaCppLLM)
register_llm("openai", OpenAICompatLLM)

__all__ = [
    "LLM",
    "LlamaCppLLM",
    "Message",
    "OpenAICompatLLM",
    "gemma_model_path",
    "get_llm",
    "is_extractive",
    "llm_names",
    "register_llm",
    "smollm2_model_path",
]
