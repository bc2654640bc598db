"""`python -m minidarts.assign`: the old entry point of the assignment tool, kept
working. The tool lives in minidarts/classroom/assign.py; prefer
`python -m minidarts assign`."""

import sys

from .classroom.assign import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m minidarts.assign"))
