"""Chat with a library of research papers: parse, chunk, index, retrieve, answer with citations."""

from rag.errors import RagError
from rag.models import Answer, Chunk, Hit, Paper
from rag.settings import Settings, get_settings

__all__ = ["Answer", "Chunk", "Hit", "Paper", "RagError", "Settings", "get_settings"]
__version__ = "0.1.0"
