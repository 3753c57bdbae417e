# Not a pytest test directory: run_stdlib_asyncio.py drives CPython's own regrtest.
collect_ignore_glob = ["*"]
