"""Grading student copies: `python -m minidarts grade STUDENT_DIR... [--out DIR]`.

A student copy (written by `python -m minidarts assign`) holds each task's stub between
`# BEGIN YOUR SOLUTION task` and `# END YOUR SOLUTION`. For every student and task,

1. the teacher's tree (the files git tracks in this repository, with every reference
   solution, less TEACHER_ONLY) is copied once to a temporary folder, and put back as
   it was after every run (Tree.reset);
2. the lines between the student's markers of task T replace the body of T's solution
   regions there, and nothing else of the student's copy is used: the other tasks keep
   the reference solution, so a correct T passes whatever the state of the others, and
   the tests run are the teacher's, never the student's copies of them;
3. `python -m pytest -m T` runs on the test files that hold T's tests, in its own
   process with a timeout, and its JUnit report gives tests passed/total and the first
   failure's message (a skip raised outside the course's tests counts as a failure, and
   the report must agree with pytest's exit status).

Edits outside the regions are flagged: assignment.json in the copy keeps a fingerprint
of every file outside the regions (assign.fingerprint), compared here. A task passes
when all of its tests pass (all-or-nothing); `partial=True` (`--partial`) scores
passed/total instead. `grade()` is the programmatic form; `main()` the command line,
which prints one line per task and a total, and writes OUT/grades.csv (one row per
student and task), OUT/grades.xml (JUnit: one test suite per student, one test case per
task) and each run's log under OUT/logs/.

Run in a student copy itself (`python -m minidarts grade .` there), there is no teacher
tree: the copy's own code and tests are run as they are, so a task can fail on an
unfinished earlier one; the message then names that prerequisite.

The student's code runs as it is, with the rights of whoever grades: grade code you
would run yourself, or inside a container.
"""

import argparse
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ..jobs.errors import describe_error
from ..jobs.runfolder import claim_folder
from .assign import (
    MANIFEST,
    REPO,
    TASKS,
    TEACHER_ONLY,
    RegionError,
    _is_tool,
    find_regions,
    find_student_regions,
    fingerprint,
    tracked_files,
)
from .report import format_result, write_reports

TASK_IDS = tuple(t for t, _, _ in TASKS)
STUB = re.compile(r"NotImplementedError: (?P<task>[a-z0-9_]+):")
# "task T needs task U first ..." (or "task T, V needs ..." for a test of two tasks), as
# selftest.py words a failure in a student copy: the grade line keeps "needs task U ..."
NAMED_PREREQUISITE = re.compile(r"task [a-z0-9_]+(?:, [a-z0-9_]+)* (?=needs task )")


class TaskResult(NamedTuple):
    """One (student, task) grade. `passed`: all tests passed; `score`: 1/0, or
    tests_passed / tests_total with partial credit."""

    student: str
    task: str
    passed: bool
    tests_passed: int
    tests_total: int
    score: float
    seconds: float
    message: str
    outside_edits: tuple


class StudentCopy:
    """A student copy read from disk: its tasks, its regions, its edits outside them."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise ValueError(
                f"{folder}: not a student copy (it has no {MANIFEST}; write one with "
                "python -m minidarts assign OUT)"
            )
        try:
            data = json.loads(manifest.read_text())
            self.tasks = [t for t in data["tasks"] if t in TASK_IDS]
            self.prints = dict(data["files"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{manifest}: damaged ({e}); write the copy again") from None
        self.name = self.folder.resolve().name
        self.regions, self.damaged, self.outside_edits = {}, {}, []
        for rel, expected in sorted(self.prints.items()):
            path = self.folder / rel
            if not path.is_file():
                self.outside_edits.append(f"{rel} (missing)")
                continue
            data = path.read_bytes()
            try:
                if fingerprint(data, rel) != expected:
                    self.outside_edits.append(rel)
                if rel.endswith(".py") and not _is_tool(Path(rel)):
                    self._read_regions(rel, data.decode("utf-8", errors="replace"))
            except RegionError as e:
                self.outside_edits.append(f"{rel} (markers damaged)")
                self.damaged[rel] = str(e)

    def _read_regions(self, rel, text):
        lines = text.splitlines(keepends=True)
        for task, begin, end in find_student_regions(text, rel):
            self.regions.setdefault(task, []).append((rel, lines[begin + 1 : end]))


class Tree:
    """The temporary folder that tests run in: a copy of the teacher's tracked files
    (TEACHER_ONLY left out, as from a student copy: a region that imports the fast path
    would pass on the course's own answer) into which one task of one student at a time
    is spliced, and which `reset` puts back after each run."""

    def __init__(self, source, folder):
        self.source, self.root = Path(source), Path(folder)
        self.files = {}  # relative path -> sha256 of the teacher's file
        for rel in tracked_files(source):
            if rel in TEACHER_ONLY:
                continue
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.source / rel, self.root / rel)
            self.files[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()

    def reset(self):
        """Put the tree back as it was copied: the student's code runs in it, and a file
        it left (a conftest.py whose hook marks every test passed) or changed would
        grade the students after it. Files the course does not have are removed, the
        course's files that differ are copied again."""
        for folder, dirs, names in os.walk(self.root, topdown=False):
            for name in names + dirs:
                path = Path(folder) / name
                rel = path.relative_to(self.root).as_posix()
                if path.is_symlink() or (path.is_file() and rel not in self.files):
                    path.unlink()
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
                elif not path.is_dir() and not path.is_file():
                    path.unlink()  # a fifo or socket
        for rel, digest in self.files.items():
            path = self.root / rel
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists() or path.is_symlink():
                    path.unlink()
                shutil.copy2(self.source / rel, path)

    def splice(self, task, student):
        """Put the student's regions of `task` in place of the reference ones (reset puts
        the tree back), or raise ValueError naming the mismatch."""
        theirs = student.regions.get(task, [])
        ours = []
        for path in sorted(self.root.joinpath("minidarts").rglob("*.py")):
            if _is_tool(path):
                continue
            text = path.read_text()
            ours += [(path, r) for r in find_regions(text, path) if r[0] == task]
        where = sorted({rel for rel, _ in theirs})
        expected = sorted({p.relative_to(self.root).as_posix() for p, _ in ours})
        if len(theirs) != len(ours) or where != expected:
            damaged = [f"{rel}: {e}" for rel, e in student.damaged.items() if rel in expected]
            raise ValueError(
                f"the copy has {len(theirs)} region(s) of {task} in {where or 'no file'}, "
                f"the course {len(ours)} in {expected}" + (f" ({damaged[0]})" if damaged else "")
            )
        by_file = {}
        for (path, (_, _, begin, end)), (_, body) in zip(ours, theirs):
            by_file.setdefault(path, []).append((begin, end, body))
        for path, spans in by_file.items():
            lines = path.read_text().splitlines(keepends=True)
            for begin, end, body in reversed(spans):
                lines[begin + 1 : end] = body
            path.write_text("".join(lines))


_COLLECTED = {}


def task_test_files(tree):
    """{marker: [test files holding a test with that marker]}, from one pytest
    collection in `tree` (cached while the test files are unchanged)."""
    tests = sorted(Path(tree).glob("tests/**/*.py"))
    key = tuple((p.relative_to(tree).as_posix(), p.stat().st_size) for p in tests)
    key += tuple(hash(p.read_bytes()) for p in tests)
    if key in _COLLECTED:
        return _COLLECTED[key]
    code = (
        "import json, sys, pytest\n"
        "found = {}\n"
        "class Collect:\n"
        "    def pytest_collection_finish(self, session):\n"
        "        for item in session.items:\n"
        "            for m in item.iter_markers():\n"
        "                found.setdefault(m.name, set()).add(item.nodeid.split('::')[0])\n"
        "code = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider'],"
        " plugins=[Collect()])\n"
        "print('@@' + json.dumps({k: sorted(v) for k, v in found.items()}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, env=_env()
    )
    line = [s for s in proc.stdout.splitlines() if s.startswith("@@")]
    if not line:
        raise RuntimeError(f"collecting the course's tests failed:\n{proc.stdout[-3000:]}")
    _COLLECTED[key] = json.loads(line[-1][2:])
    return _COLLECTED[key]


def _env():
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # a spliced file of the same
    env.pop("PYTEST_ADDOPTS", None)  # size and second must not reuse an old .pyc
    return env


def run_task(tree, task, files, timeout, log_dir=None, exitfirst=False):
    """Run `pytest -m task FILES` in `tree` in its own process group, killed after
    `timeout` seconds (with -x if `exitfirst`): (tests passed, tests total, first failure
    message, seconds)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider"]
        cmd += ["-m", task]
        cmd += ["-o", "junit_family=xunit1", f"--junitxml={report}", *files]
        cmd += ["-x"] if exitfirst else []
        # The output goes to a file as it is written (unbuffered), not to a pipe: what
        # a run printed before its timeout is kept, and a child the run left behind
        # holding the pipe open cannot keep the grader waiting.
        sink = Path(scratch) / "output.txt"
        start = time.monotonic()
        with open(sink, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=tree,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(_env(), PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                timed_out = True
        seconds = time.monotonic() - start
        output = sink.read_text(errors="replace")
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{task}.txt").write_text(output)
            if report.exists():
                shutil.copy(report, log_dir / f"{task}.xml")
        passed, total, message = _read_report(report, output, tree)
    if timed_out:  # no report: how far it got, from pytest's progress lines
        message = f"timed out after {timeout:g} s ({_passed_so_far(output)} tests had passed)"
    elif not total and not message:
        message = "no test ran (pytest exit status " + str(proc.returncode) + ")"
    elif passed == total and proc.returncode != 0:
        # pytest exits 0 only when nothing failed: a report of all passed beside another
        # status was written over after pytest (the student's code runs in its process)
        passed, message = (
            0,
            (
                f"pytest exited with status {proc.returncode} but its report says all "
                f"{total} tests passed: the report was changed after the run"
            ),
        )
    return passed, total, message, seconds


_PROGRESS = re.compile(r"^[.FEsxX]+(\s+\[\s*\d+%\])?$")


def _passed_so_far(output):
    """The tests passed in a run killed before its report: the dots of pytest -q's
    progress lines (one character a test: . passed, F failed, E error, s skipped)."""
    return sum(line.count(".") for line in output.splitlines() if _PROGRESS.match(line.strip()))


def _read_report(report, output, tree="."):
    """(passed, total, first failure message) of a JUnit report. A test skipped by the
    course's tests (tests/: no GPU, say) counts in neither; a skip raised anywhere else,
    i.e. from the code under test, is a failure: a solution that skips the cases it
    cannot do has not done them."""
    if not report.exists():
        tail = [s for s in output.splitlines() if s.strip()]
        return 0, 0, tail[-1][:200] if tail else ""
    passed = total = 0
    message = ""
    for case in ET.parse(report).getroot().iter("testcase"):
        bad = case.find("failure")
        bad = case.find("error") if bad is None else bad
        skipped = case.find("skipped")
        if bad is None and skipped is not None:
            where = _skip_location(skipped, tree)
            if where is None:
                continue
            bad = ET.Element("failure", message=f"skipped in {where}: {skipped.get('message')}")
        total += 1
        if bad is None:
            passed += 1
        elif not message:
            message = _first_line(bad)
    return passed, total, message


def _skip_location(skipped, tree):
    """None for a skip raised in the course's tests (tests/ of `tree`); else where it
    was raised, as path:line (the report's text starts with it)."""
    where = (skipped.text or "").split(": ", 1)[0]
    path = Path(where.rsplit(":", 1)[0])
    try:
        rel = (Path(tree) / path).resolve().relative_to(Path(tree).resolve())
    except ValueError:  # outside the tree altogether
        return where
    return None if rel.parts[:1] == ("tests",) else rel.as_posix() + where[len(str(path)) :]


def _first_line(element):
    """The message of a failure: pytest's own, or the first `E ` line of its text."""
    text = element.get("message") or ""
    if not text or text in ("collection failure", "failed on setup with"):
        errors = [s[1:].strip() for s in (element.text or "").splitlines() if s.startswith("E ")]
        text = errors[0] if errors else text
    return " ".join(text.split())[:200]


def grade(
    students,
    out=None,
    timeout=120.0,
    partial=False,
    tasks=None,
    teacher=REPO,
    log=None,
    jobs=1,
    exitfirst=False,
):
    """Grade student copies; returns [TaskResult], one per (student, task), in order.

    `students`: folders written by `python -m minidarts assign`. `tasks`: the task ids
    to grade (default: those each copy was given). `teacher`: the repository whose
    reference solutions and tests grade (default: this one; when it is itself a student
    copy, each copy is run as it is). `out`: where logs go (OUT/logs/STUDENT/TASK.txt and
    .xml). `log`: a function called with each TaskResult, in order. `jobs`: task runs
    side by side, each in its own copy of the teacher's tree. `exitfirst`: stop each
    task at its first failing test (faster; tests passed/total then count only the tests
    that ran)."""
    copies = [StudentCopy(s) for s in students]  # every folder checked before any runs
    unknown = sorted(set(tasks or ()) - set(TASK_IDS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; the tasks are {list(TASK_IDS)}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    self_graded = (Path(teacher) / MANIFEST).is_file()
    todo = [(s, t) for s in copies for t in s.tasks if tasks is None or t in tasks]
    results = []
    with tempfile.TemporaryDirectory(prefix="minidarts-grade-") as scratch:
        trees = queue.Queue()
        for i in range(0 if self_graded else max(1, min(jobs, len(todo)))):
            trees.put(Tree(teacher, Path(scratch) / f"course{i}"))
        files = task_test_files(teacher if self_graded else trees.queue[0].root)

        def one(student, task):
            tree = None if self_graded else trees.get()
            try:
                if tree is not None:
                    tree.splice(task, student)
                logs = Path(out) / "logs" / student.name if out is not None else None
                root = student.folder if tree is None else tree.root
                run = run_task(root, task, files.get(task, []), timeout, logs, exitfirst)
            except ValueError as e:
                run = 0, 0, f"not graded: {e}", 0.0
            finally:
                if tree is not None:
                    tree.reset()  # the spliced files and whatever the run left or changed
                    trees.put(tree)
            passed, total, message, seconds = run
            stub = STUB.search(message)
            named = NAMED_PREREQUISITE.match(message)  # by selftest.py, in a student copy
            if named:
                message = message[named.end() :]
            elif stub and stub["task"] != task:
                message = f"needs task {stub['task']} first: {message}"
            ok = total > 0 and passed == total
            score = passed / total if partial and total else float(ok)
            edits = tuple(student.outside_edits)
            return TaskResult(student.name, task, ok, passed, total, score, seconds, message, edits)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, s, t) for s, t in todo]:
                results.append(future.result())
                if log is not None:
                    log(results[-1])
    return results


def main(argv=None, prog="python -m minidarts grade"):
    """The command line; returns the exit status (0 when every task of every copy
    passed, 1 otherwise or on an error)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Grade student copies: each task's regions of each copy are spliced "
        "into the course's own code (the other tasks keep their reference solution) and "
        "the course's tests of that task run in their own process. Prints a line per task "
        "and writes OUT/grades.csv and OUT/grades.xml (JUnit).",
    )
    parser.add_argument("students", nargs="+", metavar="STUDENT_DIR", help="student copies")
    parser.add_argument("--out", default="grades", help="folder for the reports (default: grades)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--out holds an earlier grading: move it aside to OUT.old-N first (else refused)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per task (default: 120)"
    )
    parser.add_argument("--tasks", help="comma-separated task ids (default: each copy's)")
    parser.add_argument("--jobs", type=int, default=1, help="task runs side by side (default: 1)")
    parser.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="stop each task at its first failing test (faster; counts then partial)",
    )
    parser.add_argument(
        "--partial", action="store_true", help="score passed/total tests (default: all-or-nothing)"
    )
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if not args.timeout > 0:
        print(f"error: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return 1
    current = [None]

    def show(r):
        if r.student != current[0]:
            current[0] = r.student
            edits = ", ".join(r.outside_edits) or "none"
            print(f"{r.student}: edits outside the regions: {edits}")
        print(format_result(r), flush=True)

    try:
        # an earlier grading is never overwritten (jobs/runfolder.py)
        claim_folder(args.out, args.overwrite, "grading report")
        results = grade(
            args.students,
            args.out,
            args.timeout,
            args.partial,
            tasks,
            log=show,
            jobs=args.jobs,
            exitfirst=args.exitfirst,
        )
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 1
    for student in dict.fromkeys(r.student for r in results):
        mine = [r for r in results if r.student == student]
        score = sum(r.score for r in mine)
        print(f"{student}: total {score:g}/{len(mine)} tasks")
    csv_path, xml_path = write_reports(results, args.out)
    print(f"wrote {csv_path} and {xml_path}")
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
