"""Issue 12 items 1-3: the store against a model, kill -9 campaigns, disk trouble."""

TESTS = ["tests/test_store_model.py", "tests/test_crash.py", "tests/test_disk_trouble.py"]
