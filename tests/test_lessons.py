"""The lesson scripts run from start to finish.

Every lessons/NN_*.py that exists is run as a subprocess from the repository root, as a
student would (`python lessons/NN_name.py`), with MINIDARTS_FAST=1 so that slow lessons
take their short path. A lesson passes when it exits with status 0 and its last line says
"lesson NN: all checks passed" with its own number; the figures it says it saved must exist.
Lessons added later are picked up automatically.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSON_DIR = ROOT / "lessons"
LESSONS = sorted(LESSON_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 180  # a lesson should take seconds; this only stops a hung one


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_and_passes_its_checks(path):
    _run_lesson(path, fast=True, timeout=TIMEOUT_S)


@pytest.mark.slow
def test_lesson_10_full_run_finds_a_family():
    """Lesson 10 without its fast path: the real search on 3000 MNIST images, whose
    own assertions include at least 3 distinct cells and weights falling with lambda
    (about two minutes on a 2-core CPU; the limit allows for a slow machine)."""
    _run_lesson(LESSON_DIR / "10_search_mnist.py", fast=False, timeout=600)


def _run_lesson(path, fast, timeout):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("MINIDARTS_FAST", None)
    if fast:
        env["MINIDARTS_FAST"] = "1"
    TIMEOUT_S = timeout  # noqa: N806  (the messages below name the limit used)
    started = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, str(path.relative_to(ROOT))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout or b""  # the partial output comes as bytes, even with text=True
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"{path.name} ran longer than {TIMEOUT_S} s:\n{_tail(out)}")
    assert proc.returncode == 0, (
        f"{path.name} exited with status {proc.returncode}\n--- stdout ---\n"
        f"{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
    )
    lines = proc.stdout.strip().splitlines()
    number = path.name[:2]
    expected = f"lesson {number}: all checks passed"
    assert lines and lines[-1].strip() == expected, (
        f"{path.name}: the last line should be {expected!r}, got "
        f"{lines[-1] if lines else '(no output)'!r}"
    )
    # Every figure the lesson names was written by this run.
    for rel in re.findall(r"lessons/figures/\d\d/[\w.-]+\.png", proc.stdout):
        figure = ROOT / rel
        assert figure.is_file(), f"{path.name} printed {rel} but the file does not exist"
        assert figure.stat().st_mtime >= started - 1, f"{path.name}: {rel} was not rewritten"


def test_lessons_are_numbered_and_indexed():
    """Lesson numbers are unique, and lessons/README.md lists every lesson file."""
    assert LESSONS, "no lessons/NN_*.py found"
    numbers = [p.name[:2] for p in LESSONS]
    assert len(numbers) == len(set(numbers)), f"two lessons share a number: {numbers}"
    index = (LESSON_DIR / "README.md").read_text()
    missing = [p.name for p in LESSONS if p.name not in index]
    assert not missing, f"lessons/README.md does not list {missing}"
