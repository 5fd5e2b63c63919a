"""The installed llama.cpp is the portable build (`make install` compiles it with AMX and
AVX-512 off, for any x86-64 CPU with AVX2) and generates text without crashing.

A native build on an Intel Xeon with AMX turns on AMX kernels that segfault in the first
matrix multiplication (llama.cpp issue #20824); these tests would have failed there. The checks
run in child processes, so a crash fails one test instead of ending the run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag.llms import smollm2_model_path

pytestmark = pytest.mark.slow


def _features() -> dict[str, str]:
    """What llama.cpp reports it was built for ('AVX2' -> '1'), read in a child process."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    features = {}
    for part in done.stdout.replace("\n", "|").split("|"):
        name, eq, value = part.partition("=")
        if eq:
            features[name.strip().split(":")[-1].strip()] = value.strip()
    assert features, done.stdout
    return features


def test_the_build_has_no_amx_or_avx512_kernels() -> None:
    features = _features()
    enabled = {name for name, value in features.items() if value == "1"}
    assert not {n for n in enabled if n.startswith("AMX")}, f"AMX kernels built in: {enabled}"
    assert not {n for n in enabled if n.startswith("AVX512")}, f"AVX-512 built in: {enabled}"
    assert {"AVX", "AVX2", "FMA", "F16C"} <= enabled, f"portable baseline missing: {enabled}"


def test_a_generation_in_a_child_process_exits_cleanly() -> None:
    code = (
        "import sys, llama_cpp\n"
        f"llm = llama_cpp.Llama(model_path={str(smollm2_model_path())!r}, n_ctx=256, "
        "verbose=False)\n"
        "out = llm.create_completion('The capital of France is', max_tokens=8, temperature=0)\n"
        "text = out['choices'][0]['text']\n"
        "assert text.strip(), 'no text generated'\n"
        "print(text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (f"generation ended with {done.returncode} "
                                  f"(negative = killed by that signal): {done.stderr[-2000:]}")
    assert done.stdout.strip()
