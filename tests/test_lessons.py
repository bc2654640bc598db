"""The lesson scripts run from start to finish.

Every lessons/NN_*.py that exists is run as a subprocess from the repository root, as a
student would (`python lessons/NN_name.py`), with MINIDARTS_FAST=1 so that slow lessons
take their short path. A lesson passes when it exits with status 0 and its last line says
"lesson NN: all checks passed" with its own number; the figures it says it saved must exist.
Lessons added later are picked up automatically.

Every lesson is also a notebook (the `# %%` cells of VS Code and Jupytext): each section
starts a cell, every cell parses on its own, and the last two cells are the exercises
(a markdown cell of 2-3 numbered items) and the final line; one lesson is run cell by cell
as a notebook kernel would run it (no __file__, working directory lessons/).
"""

import ast
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


def _cells(path):
    """The `# %%` cells of a lesson: [(header line, source)], the part before the first
    header as a cell with header ''."""
    cells, header, lines = [], "", []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            cells.append((header, "\n".join(lines)))
            header, lines = line, []
        else:
            lines.append(line)
    cells.append((header, "\n".join(lines)))
    return cells


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_is_a_notebook_with_exercises(path):
    """Sections start cells, cells parse alone, the exercises come last but one."""
    cells = _cells(path)
    code = [(h, src) for h, src in cells if "[markdown]" not in h]
    for header, source in code:
        # Jupytext reads `key=value` in a header as cell metadata, `[...]` as a cell type
        assert not re.search(r"[=\[\]]", header), f"{path.name}: cell header {header!r}"
        ast.parse(source, filename=f"{path.name} cell {header!r}")  # raises on a split
        # a section heading printed at module level opens its cell
        for node in ast.parse(source).body[1:]:
            call = getattr(node, "value", None)
            name = getattr(getattr(call, "func", None), "id", None)
            assert name != "section", f"{path.name}: section() inside cell {header!r}"
    sections = [h for h, src in code if src.lstrip().startswith("section(")]
    assert len(sections) >= 3, f"{path.name}: {len(sections)} section cells"
    (ex_header, exercises), (last_header, last) = cells[-2], cells[-1]
    assert ex_header == "# %% [markdown]" and "## Exercises" in exercises, path.name
    items = re.findall(r"^# (\d)\. ", exercises, flags=re.M)
    assert items in (["1", "2"], ["1", "2", "3"]), f"{path.name}: exercises {items}"
    assert all(line.startswith("#") or not line.strip() for line in exercises.splitlines())
    assert last_header == "# %%", f"{path.name}: the final line has a cell of its own"
    assert last.strip() == f'print("\\nlesson {path.name[:2]}: all checks passed")', last


NOTEBOOK_RUNNER = """
import sys
from pathlib import Path

sys.argv = ["ipykernel_launcher.py"]  # what a Jupyter kernel's sys.argv looks like
namespace = {"__name__": "__main__"}  # no __file__, as in a notebook
cell, lines = 0, []
for line in Path(sys.stdin.readline().strip()).read_text().splitlines() + ["# %%"]:
    if line.startswith("# %%"):
        exec(compile("\\n".join(lines), f"<cell {cell}>", "exec"), namespace)
        cell, lines = cell + 1, []
    else:
        lines.append(line)
"""


def test_lesson_runs_cell_by_cell_as_a_notebook():
    """Lesson 01 (it draws a figure under the repository root) run as a notebook kernel
    would: its cells one after the other in one namespace, without __file__, from lessons/."""
    path = LESSON_DIR / "01_derivatives.py"
    env = dict(os.environ, MPLBACKEND="Agg", MINIDARTS_FAST="1")
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", NOTEBOOK_RUNNER],
        input=f"{path}\n",
        cwd=LESSON_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
    assert proc.stdout.strip().splitlines()[-1] == "lesson 01: all checks passed"
    figure = LESSON_DIR / "figures" / "01" / "error_vs_eps.png"
    assert figure.is_file() and figure.stat().st_mtime >= started - 1
