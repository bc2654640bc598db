"""Classroom assignments from the library itself: `python -m minidarts.assign OUTDIR`.

The parts a student should write are marked in the library's own source:

    def numerical_grad(f, x, eps=1e-6):
        ...
        # BEGIN SOLUTION numerical_grad: central differences, one pair of f calls per element
        for i in range(flat.size):
            ...
        # END SOLUTION
        return grad

This tool copies the repository to OUTDIR and replaces every marked region by

        raise NotImplementedError("numerical_grad: central differences, one pair of ...")

at the indentation of its BEGIN line. The task id doubles as a pytest marker
(registered in pyproject.toml) carried by the tests of that task, so a teacher
grades task by task with `python -m pytest -m numerical_grad` in the student's copy.
TASKS lists the tasks in the order a course would hand them out.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TASKS = (
    (
        "numerical_grad",
        "engine/gradcheck.py",
        "central differences: what every check trusts",
    ),
    ("backward_mul", "engine/arithmetic.py", "the backward of a * b, broadcasting undone"),
    ("backward_matmul", "engine/arithmetic.py", "the backward of a batched matrix product"),
    ("backward_softmax", "engine/activations.py", "the backward of softmax"),
    ("backward_cross_entropy", "engine/activations.py", "the backward of the cross-entropy loss"),
    ("im2col", "nn/conv.py", "convolution as windows (as_strided) times a weight matrix"),
    (
        "mixed_op",
        "darts/mixed_op.py",
        "eq. (2): the softmax-weighted sum of the candidates",
    ),
    ("cell", "darts/cell.py", "eq. (1): a cell's nodes as sums over their incoming edges"),
    ("bilevel_step", "darts/architect.py", "eq. (3): one first-order architecture step"),
    ("hypernet", "darts/hypernet.py", "eq. (5): alpha(lambda) = lambda b1 + b2"),
    ("complexity", "darts/complexity.py", "the expected parameter count under softmax(alpha)"),
    ("genotype", "darts/genotype.py", "DARTS's rule: two strongest edges per node, best op each"),
)

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<task>[a-z0-9_]+): (?P<what>.+)$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
# what is not copied into the student's folder
SKIP = {".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "figures", "student"}


class RegionError(ValueError):
    """A BEGIN/END SOLUTION pair that is unbalanced, nested or names an unknown task."""


def find_regions(text, path="<text>"):
    """[(task, what, begin_line, end_line)] of a source text (0-based lines)."""
    regions, open_at = [], None
    known = {t for t, _, _ in TASKS}
    for i, line in enumerate(text.splitlines()):
        m = BEGIN.match(line)
        if m:
            if open_at is not None:
                raise RegionError(f"{path}:{i + 1}: BEGIN SOLUTION inside another region")
            if m["task"] not in known:
                raise RegionError(f"{path}:{i + 1}: unknown task {m['task']!r}")
            open_at = (m["task"], m["what"].strip(), i, m["indent"])
        elif END.match(line):
            if open_at is None:
                raise RegionError(f"{path}:{i + 1}: END SOLUTION without BEGIN")
            regions.append((*open_at[:3], i))
            open_at = None
        elif line.lstrip().startswith(("# BEGIN SOLUTION", "# END SOLUTION")):
            raise RegionError(f"{path}:{i + 1}: malformed marker {line.strip()!r}")
    if open_at is not None:
        raise RegionError(f"{path}:{open_at[2] + 1}: BEGIN SOLUTION never ended")
    return regions


def strip_solutions(text, path="<text>", tasks=None):
    """The text with each solution region (of `tasks`, default all) replaced by a
    NotImplementedError stub."""
    lines = text.splitlines(keepends=True)
    for task, what, begin, end in reversed(find_regions(text, path)):
        if tasks is not None and task not in tasks:
            continue
        indent = BEGIN.match(lines[begin].rstrip("\n"))["indent"]
        message = f"{task}: {what}".replace("\\", "\\\\").replace('"', '\\"')
        stub = f'{indent}raise NotImplementedError("{message}")\n'
        lines[begin : end + 1] = [stub]
    return "".join(lines)


def _is_tool(path):
    """The classroom tools themselves: their docstrings show markers as examples."""
    return path.parent.name == "classroom" or path.name == "assign.py"


def package_regions():
    """{task: [(file, begin_line)]} over the package's sources."""
    found = {}
    package = REPO / "minidarts"
    for path in sorted(package.rglob("*.py")):
        if _is_tool(path):
            continue
        for task, _, begin, _ in find_regions(path.read_text(), path):
            found.setdefault(task, []).append((path.relative_to(package).as_posix(), begin + 1))
    return found


def write_student_copy(outdir, tasks=None):
    """Copy the repository to `outdir` with the solution regions of `tasks` (default:
    all) stubbed out. Returns the number of files changed."""
    out = Path(outdir).resolve()
    if out == REPO or REPO in out.parents:
        raise ValueError(f"{outdir}: the student copy must be outside the repository")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{outdir} exists and is not empty; choose a new folder")
    missing = [t for t, _, _ in TASKS if t not in package_regions()]
    if missing:
        raise RegionError(f"tasks with no solution region in the package: {missing}")
    stubbed = 0
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        rel = Path(root).relative_to(REPO)
        (out / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src, dst = Path(root) / name, out / rel / name
            if name.endswith(".py") and rel.parts[:1] == ("minidarts",) and not _is_tool(src):
                text = src.read_text()
                new = strip_solutions(text, src, tasks)
                stubbed += text != new
                dst.write_text(new)
            else:
                shutil.copy2(src, dst)
    return stubbed


def main(argv=None, prog="python -m minidarts assign"):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a student copy of the repository with the solution regions "
        "replaced by NotImplementedError stubs. Grade a task with "
        "`python -m pytest -m TASK` inside the copy.",
    )
    parser.add_argument("outdir", help="a new (or empty) folder outside the repository")
    parser.add_argument(
        "--tasks",
        help="comma-separated task ids to stub (default: all), e.g. to hand out one at a time",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also import the copy in a fresh Python to make sure it loads",
    )
    args = parser.parse_args(argv)
    known = [t for t, _, _ in TASKS]
    tasks = None
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in known]
        if unknown:
            print(f"error: unknown tasks {unknown}; the tasks are {known}", file=sys.stderr)
            return 1
    try:
        files = write_student_copy(args.outdir, tasks)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    listed = [t for t in TASKS if tasks is None or t[0] in tasks]
    print(f"wrote {args.outdir}: {len(listed)} tasks stubbed in {files} files")
    for i, (task, where, what) in enumerate(TASKS, 1):
        if tasks is None or task in tasks:
            print(f"  {i:2d}. {task:<24} minidarts/{where:<22} {what}")
    print("grade one task with:  python -m pytest -m TASK   (inside the copy)")
    if args.check:
        proc = subprocess.run(
            [sys.executable, "-c", "import minidarts"],
            cwd=args.outdir,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"error: the copy does not import:\n{proc.stderr}", file=sys.stderr)
            return 1
        print("the copy imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
