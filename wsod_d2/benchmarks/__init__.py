"""What tools/benchmark.py measures: speed tables, never run by the tests' timings."""
