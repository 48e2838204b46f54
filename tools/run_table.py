#!/usr/bin/env python
"""Train and evaluate a set of configs and write one markdown table; see
``wsod_d2.benchmarks.run_table`` for the options (``--help``)."""
from wsod_d2.benchmarks.run_table import main

if __name__ == "__main__":
    main()
