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

Edits outside the regions are flagged: the fingerprint of every file outside the
regions (assign.fingerprint) is compared with the teacher's record of the copy
(handout.py), whose task list is the one graded too, not the copy's assignment.json,
which the student could edit. A folder that is no copy fails its tasks alone. A task passes
when all of its tests pass (all-or-nothing); `partial=True` (`--partial`) scores
passed/total instead. `grade()` is the programmatic form; `main()` the command line,
which prints one line per task and a total, and writes OUT/grades.csv (one row per
student and task), OUT/grades.xml (JUnit: one test suite per student, one test case per
task) and each run's log under OUT/logs/.

Run in a student copy itself (`python -m minidarts grade .` there), there is no teacher
tree: the copy's own code and tests are run as they are, so a task can fail on an
unfinished earlier one; the message then names that prerequisite. Where the teacher's
grading would differ (damaged markers; edits outside the markers of a passing task's
file), the line says so (_as_the_teacher_would), and grading oneself again replaces the
last report.

The running (the grading tree, pytest in its own process, its report read back) is
testrun.py's. The student's code runs as it is, with the rights of whoever grades:
grade code you would run yourself, or inside a container.
"""

import argparse
import queue
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ..jobs.errors import describe_error
from ..jobs.runfolder import claim_folder
from .assign import REPO, TASK_FILES, is_student_copy
from .copies import TASK_IDS, name_apart, out_apart, read_copies
from .report import format_result, write_reports
from .testrun import Tree, run_task, task_test_files

STUB = re.compile(r"NotImplementedError: (?P<task>[a-z0-9_]+):")
# "task T needs task U first ..." (or "task T, V needs ..." for a test of two tasks), as
# selftest.py words a failure in a student copy: the grade line keeps "needs task U ..."
NAMED_PREREQUISITE = re.compile(r"task [a-z0-9_]+(?:, [a-z0-9_]+)* (?=needs task )")


# what a grading report folder holds (report.write_reports, the logs of run_task)
REPORT = {"grades.csv", "grades.xml", "logs"}


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


def _as_the_teacher_would(student, task, passed, message):
    """A student grading their own copy runs it as it is; the teacher's grading reads
    only the lines between the markers, into the course's files where its own regions
    of the task are (Tree.splice), and runs the course's tests. Where the two would
    differ, say so: a task whose regions are not where the course has them, or whose
    markers are damaged, is not graded there (None: no credit, not even partial); a
    pass beside any edit outside the markers may be a pass only because of it."""
    file = TASK_FILES[task]
    where = sorted({rel for rel, _ in student.regions.get(task, [])})
    if file in student.damaged or where != [file]:
        why = student.damaged.get(file, f"its regions are in {where or 'no file'}, not {file}")
        note = f"your teacher's grading cannot read this task: {why}"
        return None, f"{note}; here: {message}" if message else note
    if passed and student.outside_edits:  # the edits are on the copy's line above
        return (
            passed,
            "passes here; your teacher's grading leaves out your edits outside the markers",
        )
    return passed, message


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
    to grade in every copy, a copy not given one failing it (default: each copy's own).
    `teacher`: the repository whose reference solutions, tests and records of the
    copies (handout.py) grade (default: this one; when it is itself a student copy, each
    copy is run as it is). `out`: where logs go (OUT/logs/STUDENT/TASK.txt and
    .xml). `log`: a function called with each TaskResult, in order. `jobs`: task runs
    side by side, each in its own copy of the teacher's tree. `exitfirst`: stop each
    task at its first failing test (faster; tests passed/total then count only the tests
    that ran)."""
    unknown = sorted(set(tasks or ()) - set(TASK_IDS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; the tasks are {list(TASK_IDS)}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    self_graded = is_student_copy(teacher)
    copies = read_copies(students, None if self_graded else teacher)
    name_apart(copies)
    # every task asked for (a copy not given one fails it), else each copy's own; a
    # copy that cannot be read fails the tasks the others were given
    given = [t for t in TASK_IDS if any(t in c.tasks for c in copies)]
    asked = [t for t in TASK_IDS if t in (tasks or ())]
    todo = [(c, t) for c in copies for t in asked or c.tasks or given]
    results = []
    with tempfile.TemporaryDirectory(prefix="minidarts-grade-") as scratch:
        trees = queue.Queue()
        for i in range(0 if self_graded else max(1, min(jobs, len(todo)))):
            trees.put(Tree(teacher, Path(scratch) / f"course{i}"))
        files = task_test_files(teacher if self_graded else trees.queue[0].root)

        def one(student, task):
            if task not in student.tasks:  # not handed out, or the copy cannot be read
                error = getattr(student, "error", None)  # the line names the copy: no path
                whose = "" if student.recorded else ", by its own unrecorded assignment.json"
                listed = ", ".join(student.tasks) or "none"
                handed = f"{task} was not handed out in this copy (its tasks{whose}: {listed})"
                why = error.reason if error else handed
                edits = tuple(student.outside_edits)
                return TaskResult(
                    student.name, task, False, 0, 0, 0.0, 0.0, f"not graded: {why}", edits
                )
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
            if tree is not None:
                tree.check_source(f"{student.name}'s {task}")
            passed, total, message, seconds = run
            stub = STUB.search(message)
            named = NAMED_PREREQUISITE.match(message)  # by selftest.py, in a student copy
            if named:
                message = message[named.end() :]
            elif stub and stub["task"] != task:
                message = f"needs task {stub['task']} first: {message}"
            ok = total > 0 and passed == total
            if self_graded:
                ok, message = _as_the_teacher_would(student, task, ok, message)
            score = passed / total if partial and total and ok is not None else float(bool(ok))
            ok = bool(ok)
            if task in student.from_markers:  # no record, not on its list: its markers'
                note = "graded from the copy's markers: its list and no record name this task"
                message = f"{note}; {message}" if message else note
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
    if args.tasks is not None and not tasks:  # not silently each copy's tasks
        empty = "error: --tasks is empty; give task ids, or leave it out to grade each copy's"
        print(f"{empty} tasks", file=sys.stderr)
        return 1
    if not args.timeout > 0:
        print(f"error: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return 1
    current = [None]
    own = is_student_copy(REPO)  # a student grading their own copy

    def show(r):
        if r.student != current[0]:
            current[0] = r.student
            edits = ", ".join(r.outside_edits) or "none"
            aside = " (your teacher's grading leaves them out)" if own and r.outside_edits else ""
            print(f"{r.student}: edits outside the regions{aside}: {edits}")
        print(format_result(r), flush=True)

    out, last = Path(args.out), None
    try:
        out_apart(args.out, args.students)
        found = {p.name for p in out.iterdir()} if own and out.is_dir() else set()
        if found and found <= REPORT:
            # a student grading their own copy again: the last report (made by this
            # command, holding nothing else) is replaced rather than piled up; it is
            # kept aside until this run has written its own
            last = out.with_name(f".{out.name}.last")
            shutil.rmtree(last, ignore_errors=True)
            out.rename(last)
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
    except BaseException as e:  # Ctrl-C too: no new report, so the last one comes back
        if last is not None:
            shutil.rmtree(out, ignore_errors=True)
            last.rename(out)
        if not isinstance(e, (ValueError, OSError, RuntimeError)):
            raise
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 1
    handouts = {}  # the tasks graded -> the copies graded on them
    for student in dict.fromkeys(r.student for r in results):
        mine = [r for r in results if r.student == student]
        score = sum(r.score for r in mine)
        print(f"{student}: total {score:g}/{len(mine)} tasks")
        handouts.setdefault(tuple(r.task for r in mine), []).append(student)
    if len(handouts) > 1:  # a copy of another week's handout is a total of another size
        groups = "; ".join(
            f"{', '.join(t)}: {', '.join(s[:3])}{f' and {len(s) - 3} more' if s[3:] else ''}"
            for t, s in handouts.items()
        )
        print(f"note: not every copy was given the same tasks ({groups}); --tasks grades all alike")
    csv_path, xml_path = write_reports(results, args.out)
    if last is not None:
        shutil.rmtree(last)
    print(f"wrote {csv_path} and {xml_path}")
    return 0 if results and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
