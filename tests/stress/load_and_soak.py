"""Hostile PDFs under rlimits, load bursts and the soak (issue 12, items 4, 11, 12)."""

TESTS = ["tests/test_hostile_pdfs.py", "tests/test_load.py", "tests/test_soak.py"]
