"""Paper Chat: `python app.py [--host H] [--port P] [--share] [--auth USER:PASSWORD]
[--auth-file FILE] [--max-upload-mb MB]` serves the Gradio app over the library in RAG_DATA_DIR.

Thin on purpose: the UI is `rag.ui`, launching (flags, login, share, file limits) is `rag.server`.
"""

from __future__ import annotations

import sys

from rag.chain import Pipeline
from rag.server import main, settings_from_args
from rag.ui import build_demo

settings = settings_from_args(sys.argv[1:] if __name__ == "__main__" else [])
# First start: an empty store gets the shipped corpus, indexed in the background while serving.
demo = build_demo(Pipeline(settings), index_default=__name__ == "__main__")

if __name__ == "__main__":
    main(demo, settings)
