"""The figures of ``scripts/benchmark.py``, one module each (``run(args) -> list[Result]``)."""
