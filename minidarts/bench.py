"""`python -m minidarts.bench`: the old entry point of the benchmark, kept working.
The benchmark lives in minidarts/jobs/bench.py; prefer `python -m minidarts bench`."""

import sys

from .jobs.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m minidarts.bench"))
