"""Running one task of one student: the grading tree and pytest in a process of its own.

grade.py decides what to run and scores it; this module does the running, and keeps one
run from reaching another:

- `Tree`: the copy of the teacher's tracked files that tests run in (TEACHER_ONLY left
  out), a student's task spliced in for one run, and put back as it was after it;
- `task_test_files`: which test files hold each task's marked tests (one collection);
- `run_task`: `pytest -m TASK` in its own process group with a timeout, its output
  streamed to a file, read back as (tests passed, tests total, first failure message).
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .assign import TEACHER_ONLY, _is_tool, find_regions, tracked_files


class Tree:
    """The temporary folder that tests run in: a copy of the teacher's tracked files
    (TEACHER_ONLY left out, as from a student copy: a region that imports the fast path
    would pass on the course's own answer) into which one task of one student at a time
    is spliced, and which `reset` puts back after each run."""

    def __init__(self, source, folder):
        self.source, self.root = Path(source), Path(folder)
        # the course's files as they were, kept in memory: a run can write to any file
        # this user may write, the teacher's repository included, but not to these
        self.files = {}  # relative path -> bytes
        for rel in tracked_files(source):
            if rel in TEACHER_ONLY:
                continue
            self.files[rel] = (self.source / rel).read_bytes()
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(self.files[rel])

    def check_source(self, what):
        """Raise RuntimeError if a course file in the teacher's repository is no longer
        what the tree was copied from: `what` (a student's task) changed it, and every
        grade from then on would run the changed course."""
        changed = [
            rel
            for rel, data in self.files.items()
            if not (self.source / rel).is_file() or (self.source / rel).read_bytes() != data
        ]
        if changed:
            raise RuntimeError(
                f"grading stopped: the run of {what} changed the course's own files in "
                f"{self.source} ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''});"
                " restore them (git status, git checkout) and grade that copy alone, in a "
                "container"
            )

    def reset(self):
        """Put the tree back as it was copied: the student's code runs in it, and a file
        it left (a conftest.py whose hook marks every test passed) or changed would
        grade the students after it. Files the course does not have are removed, the
        course's files that differ are written again from memory."""
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
        for rel, data in self.files.items():
            path = self.root / rel
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists() or path.is_symlink():
                    path.unlink()
                path.write_bytes(data)

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
        marker = f"{os.getpid()}-{next(_RUNS)}"  # in the environment of all it starts
        start = time.monotonic()
        with open(sink, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=tree,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(_env(), PYTHONUNBUFFERED="1", MINIDARTS_GRADE_RUN=marker),
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                timed_out = True
        left = _stop_left_behind(marker)
        seconds = time.monotonic() - start
        output = sink.read_text(errors="replace")
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"{task}.txt").write_text(output)
            if report.exists():
                shutil.copy(report, log_dir / f"{task}.xml")
        reported = report.exists()
        passed, total, message = _read_report(report, output, tree)
    if timed_out:  # no report: how far it got, from pytest's progress lines
        message = f"timed out after {timeout:g} s ({_passed_so_far(output)} tests had passed)"
    elif not reported:
        # pytest writes its report at the end: something ended the process first (the
        # code under test calling os._exit, a crash) or pytest stopped before any test
        last = message  # the last line it printed, if any
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        message = (
            f"pytest ended before writing its report ({how}; "
            f"{_passed_so_far(output)} tests had passed)"
        )
        if last and not _PROGRESS.match(last.strip()):
            message += f": {last}"
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
    if left:
        message += f"{'; ' if message else ''}stopped {left} process(es) the run left running"
    return passed, total, message, seconds


_RUNS = itertools.count()


def _stop_left_behind(marker):
    """Kill what a run left running: a process the student's code started in a session
    of its own escapes the kill of pytest's process group and would outlive the grade.
    Every process of the run inherits MINIDARTS_GRADE_RUN=marker in its environment,
    which /proc shows as it was at its start (Linux; elsewhere nothing is found).
    Returns how many were stopped."""
    token = f"MINIDARTS_GRADE_RUN={marker}".encode()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    stopped = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if token not in f.read().split(b"\0"):
                    continue
            os.kill(pid, signal.SIGKILL)
            stopped += 1
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return stopped


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
