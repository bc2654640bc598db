"""Classroom assignments from the library itself: `python -m minidarts.assign OUTDIR`.

The parts a student should write are marked in the library's own source:

    def numerical_grad(f, x, eps=1e-6):
        ...
        # BEGIN SOLUTION numerical_grad: what to compute, for the stub's message
        # HINT: how to compute it (optional, any number of lines, right after BEGIN)
        ...the reference solution...
        # END SOLUTION
        return grad

This tool copies the files git tracks (nothing else: no editor backups, no virtual
environment, no untracked notes) to OUTDIR, leaves out the teacher-only files
(TEACHER_ONLY: the tests of these tools, the wrong solutions they must fail, and the
search's fast path with its tests, which would hand out the cell and mixed_op tasks'
answers), and
replaces every marked region by

        # BEGIN YOUR SOLUTION numerical_grad
        raise NotImplementedError("numerical_grad: what to compute")
        # END YOUR SOLUTION

at the indentation of its BEGIN line. The student writes between those two lines;
`python -m minidarts grade` (classroom/grade.py) reads only them.

The header (the text after the task id) becomes the stub's message: it states what to
compute and why, never the answer. The `# HINT:` lines say how (a formula, the helper to
use); they stay with the teacher unless the copy is written with `--hints` (all tasks)
or `--hints TASK,...`, which keeps them above the `raise` line. A `# HINT:` line
anywhere else in the package is an error: outside a region it would reach every student.

The copy also gets STUDENT.md (the student's guide) and assignment.json (the tasks
handed out, those given hints, and a fingerprint of every file), of which the teacher
keeps a record (handout.py): grading reads the tasks and fingerprints from the record,
and flags the edits outside the regions.

The task id doubles as a pytest marker (registered in pyproject.toml) carried by the
tests that exercise that task's region, so `python -m pytest -m numerical_grad` tests
one task. TASKS lists the tasks in the order a course would hand them out.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..jobs.errors import describe_error
from . import guide, handout

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
    ("hypernet", "darts/hypernet.py", "eq. (5): the linear hypernetwork alpha(lambda)"),
    ("complexity", "darts/complexity.py", "the expected parameter count under softmax(alpha)"),
    ("genotype", "darts/genotype.py", "DARTS's rule: two strongest edges per node, best op each"),
)

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<task>[a-z0-9_]+): (?P<what>.+)$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
# a hint: a comment line right after a BEGIN SOLUTION line (see strip_solutions)
HINT = re.compile(r"^[ \t]*# HINT:(?P<text>.*)$")
# the markers around a stub in the student copy: the student writes between them
STUDENT_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN YOUR SOLUTION (?P<task>[a-z0-9_]+)\s*$")
STUDENT_END = re.compile(r"^[ \t]*# END YOUR SOLUTION\s*$")
# outside a git checkout, what is not copied into the student's folder (RECORDS: the
# teacher's records of the copies handed out)
SKIP = {".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "figures", "student"}
SKIP.add(handout.RECORDS)
# tracked files that stay with the teacher: the classroom tools' own tests, and the
# wrong solutions (mutants) that grading must fail
TEACHER_ONLY = (
    "tests/test_assign.py",
    "tests/test_grade.py",
    "tests/mutants.py",
    # the search's fast path computes eq. (1) and (2) (and a product's backward), the
    # cell, mixed_op and backward_mul tasks' answers; without it the student's network
    # takes the readable Cell.forward (darts/network.py)
    "minidarts/darts/fast_cell.py",
    "tests/test_fast_cell.py",
)
MANIFEST = "assignment.json"
# the file of each task's region, from the repository root
TASK_FILES = {task: f"minidarts/{where}" for task, where, _ in TASKS}


def is_student_copy(root):
    """Whether the repository at `root` is a student copy (it has the manifest)."""
    return (Path(root) / MANIFEST).is_file()


class RegionError(ValueError):
    """A BEGIN/END SOLUTION pair that is unbalanced, nested or names an unknown task."""


def find_regions(text, path="<text>"):
    """[(task, what, begin_line, end_line)] of the teacher's solution regions of a source
    text (0-based lines)."""
    regions, open_at = [], None
    known = {t for t, _, _ in TASKS}
    hints_end = None  # the line after the BEGIN line and the hints under it
    for i, line in enumerate(text.splitlines()):
        m = BEGIN.match(line)
        if HINT.match(line):
            if i != hints_end:
                raise RegionError(
                    f"{path}:{i + 1}: a HINT line must follow a BEGIN SOLUTION line or "
                    "another HINT line (elsewhere it would reach the student copy)"
                )
            hints_end = i + 1
        elif m:
            if open_at is not None:
                raise RegionError(f"{path}:{i + 1}: BEGIN SOLUTION inside another region")
            if m["task"] not in known:
                raise RegionError(f"{path}:{i + 1}: unknown task {m['task']!r}")
            open_at = (m["task"], m["what"].strip(), i, m["indent"])
            hints_end = i + 1
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


def find_student_regions(text, path="<text>"):
    """[(task, begin_line, end_line)] of the student markers of a student copy's source
    (0-based lines of `# BEGIN YOUR SOLUTION task` and `# END YOUR SOLUTION`)."""
    regions, open_at = [], None
    for i, line in enumerate(text.splitlines()):
        m = STUDENT_BEGIN.match(line)
        if m:
            if open_at is not None:
                raise RegionError(f"{path}:{i + 1}: BEGIN YOUR SOLUTION inside another one")
            open_at = (m["task"], i)
        elif STUDENT_END.match(line):
            if open_at is None:
                raise RegionError(f"{path}:{i + 1}: END YOUR SOLUTION without BEGIN")
            regions.append((*open_at, i))
            open_at = None
        elif line.lstrip().startswith(("# BEGIN YOUR SOLUTION", "# END YOUR SOLUTION")):
            raise RegionError(f"{path}:{i + 1}: malformed marker {line.strip()!r}")
    if open_at is not None:
        raise RegionError(f"{path}:{open_at[1] + 1}: BEGIN YOUR SOLUTION never ended")
    return regions


def region_hints(lines, begin):
    """The `# HINT:` lines right after the BEGIN line at index `begin` of `lines`, each
    without its indentation and with its newline."""
    hints = []
    for line in lines[begin + 1 :]:
        if not HINT.match(line):
            break
        hints.append(line.lstrip(" \t").rstrip("\n") + "\n")
    return hints


def strip_solutions(text, path="<text>", tasks=None, hints=()):
    """The text with each solution region (of `tasks`, default all) replaced by a
    NotImplementedError stub between student markers; the `# HINT:` lines of the tasks
    in `hints` (True: all) are kept above the stub, the others dropped."""
    lines = text.splitlines(keepends=True)
    for task, what, begin, end in reversed(find_regions(text, path)):
        if tasks is not None and task not in tasks:
            continue
        indent = BEGIN.match(lines[begin].rstrip("\n"))["indent"]
        message = f"{task}: {what}".replace("\\", "\\\\").replace('"', '\\"')
        shown = region_hints(lines, begin) if hints is True or task in hints else []
        lines[begin : end + 1] = [
            f"{indent}# BEGIN YOUR SOLUTION {task}\n",
            *(indent + hint for hint in shown),
            f'{indent}raise NotImplementedError("{message}")\n',
            f"{indent}# END YOUR SOLUTION\n",
        ]
    return "".join(lines)


def outside_regions(data, path="<text>"):
    """The bytes of a file with the body of every student region taken out (markers
    kept): equal for two copies that differ only inside the regions."""
    if not path.endswith(".py"):
        return data
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    for _, begin, end in reversed(find_student_regions(text, path)):
        del lines[begin + 1 : end]
    return "".join(lines).encode()


def fingerprint(data, path):
    """sha256 of a file's text outside the student regions (see outside_regions)."""
    return hashlib.sha256(outside_regions(data, path)).hexdigest()


def tracked_files(root=REPO):
    """The files of the repository at `root` that git tracks (relative POSIX paths,
    those present in the working tree), or, outside a git checkout, every file but the
    SKIP folders."""
    root = Path(root)
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "ls-files", "-z", "--cached"], cwd=root, capture_output=True, check=True
            ).stdout
            return sorted(p for p in out.decode().split("\0") if p and (root / p).is_file())
        except (OSError, subprocess.CalledProcessError):
            pass  # no git program: fall back to the walk
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        rel = Path(folder).relative_to(root)
        files += [(rel / n).as_posix() for n in names if not n.endswith((".pyc", "~"))]
    return sorted(files)


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


def write_student_copy(outdir, tasks=None, all_lessons=False, hints=()):
    """Copy the repository's tracked files, TEACHER_ONLY left out, to `outdir` with the
    solution regions of `tasks` (default: all) stubbed out, and without the lessons that
    derive a stubbed task's answer (unless `all_lessons`); the stubs of the tasks in
    `hints` (True: all) keep their `# HINT:` lines. Adds STUDENT.md and assignment.json.
    Returns the number of files changed."""
    out = Path(outdir).resolve()
    if out == REPO or REPO in out.parents:
        raise ValueError(f"{outdir}: the student copy must be outside the repository")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{outdir} is a file, not a folder; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{outdir} exists and is not empty; choose a new folder")
    missing = [t for t, _, _ in TASKS if t not in package_regions()]
    if missing:
        raise RegionError(f"tasks with no solution region in the package: {missing}")
    handed_out = [t for t, _, _ in TASKS if tasks is None or t in tasks]
    hinted = [t for t in handed_out if hints is True or t in hints]
    held = [] if all_lessons else guide.held_lessons(handed_out)
    handout.ready(REPO)
    made = out  # the first folder on the way to `out` that this call makes, if any
    while not made.parent.exists():
        made = made.parent
    existed = out.exists()
    try:
        return _write_copy(out, tasks, handed_out, hinted, held)
    except BaseException:  # Ctrl-C too: a copy without its manifest would look finished
        try:
            for child in out.iterdir() if existed else ():  # it was empty: empty again
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            if not existed:
                shutil.rmtree(made)
        except OSError:  # the first error is the one to tell
            pass
        raise


def _write_copy(out, tasks, handed_out, hinted, held):
    stubbed, prints = 0, {}
    for rel in tracked_files(REPO):
        if rel in TEACHER_ONLY or rel.startswith(handout.RECORDS + "/"):
            continue
        if rel.startswith("lessons/") and rel[8:] in held:
            continue
        src, dst = REPO / rel, out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".py") and rel.startswith("minidarts/") and not _is_tool(src):
            text = src.read_text()
            new = strip_solutions(text, src, tasks, hinted)
            stubbed += text != new
            dst.write_text(new)
        else:
            shutil.copy2(src, dst)
        prints[rel] = fingerprint(dst.read_bytes(), rel)
    (out / "STUDENT.md").write_text(guide.student_guide(handed_out, held, hinted))
    manifest = {
        "tool": "python -m minidarts assign",
        "tasks": handed_out,
        "hints": hinted,
        "held_lessons": held,
        "files": prints,
    }
    manifest[handout.KEY] = handout.record(manifest, REPO)  # the teacher's own copy of it
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return stubbed


def main(argv=None, prog="python -m minidarts assign"):
    """The command line of the tool; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a student copy of the repository (the files git tracks) with the "
        "solution regions replaced by NotImplementedError stubs, a STUDENT.md and an "
        "assignment.json. Grade the copies with `python -m minidarts grade COPY...`.",
    )
    parser.add_argument("outdir", help="a new (or empty) folder outside the repository")
    parser.add_argument(
        "--tasks",
        help="comma-separated task ids to stub (default: all), e.g. to hand out one at a time",
    )
    parser.add_argument(
        "--all-lessons",
        action="store_true",
        help="copy every lesson (default: hold back those that derive a stubbed task's "
        "answer; release one later by copying it into the student's lessons/)",
    )
    parser.add_argument(
        "--hints",
        nargs="?",
        const="all",
        metavar="TASKS",
        help="keep the hints (the `# HINT:` lines of a solution region: a formula, the "
        "helper to use) above the stubs, of every task or of the comma-separated TASKS "
        "(default: no hints; the stub's message says what to compute, not how)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also import the copy in a fresh Python to make sure it loads",
    )
    args = parser.parse_args(argv)
    known = [t for t, _, _ in TASKS]
    lists = {}
    for option, value in (("--tasks", args.tasks), ("--hints", args.hints)):
        listed = [t.strip() for t in (value or "").split(",") if t.strip()]
        if value is not None and not listed:  # `--tasks ""` would hand out every task
            print(f"error: {option} is empty; give task ids, e.g. {known[0]}", file=sys.stderr)
            return 1
        unknown = [t for t in listed if t not in known and (option, t) != ("--hints", "all")]
        if unknown:
            print(
                f"error: {option}: unknown tasks {unknown}; the tasks are {known}", file=sys.stderr
            )
            return 1
        lists[option] = listed
    tasks = lists["--tasks"] or None
    if "all" in lists["--hints"] and len(lists["--hints"]) > 1:
        print("error: --hints: 'all' or a list of tasks, not both", file=sys.stderr)
        return 1
    hints = True if lists["--hints"] == ["all"] else lists["--hints"]
    try:
        files = write_student_copy(args.outdir, tasks, args.all_lessons, hints)
    except (ValueError, OSError) as e:
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 1
    listed = [t for t in TASKS if tasks is None or t[0] in tasks]
    print(f"wrote {args.outdir}: {len(listed)} tasks stubbed in {files} files")
    for i, (task, where, what) in enumerate(TASKS, 1):
        if tasks is None or task in tasks:
            print(f"  {i:2d}. {task:<24} minidarts/{where:<22} {what}")
    manifest = json.loads((Path(args.outdir) / MANIFEST).read_text())
    held = manifest["held_lessons"]
    if manifest["hints"]:
        print(f"with hints: {', '.join(manifest['hints'])}")
    if held:
        print(f"held back until you release them: lessons/{', lessons/'.join(held)}")
    record = handout.records_folder(REPO) / f"{manifest[handout.KEY]}.json"
    print(f"kept the record of this handout in {record} (grading trusts it, not the copy's)")
    print("test one task with:  python -m pytest -m TASK   (inside the copy; see STUDENT.md)")
    print("grade the copies with:  python -m minidarts grade COPY...   (here)")
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
