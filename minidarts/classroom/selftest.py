"""pytest hooks for a student copy: prerequisites named, and a line per task at the end.

In a student copy (an assignment.json at the root: `python -m minidarts assign` wrote
it) the tasks use each other: every gradient check calls numerical_grad, the cell calls
the mixed operation, which calls the convolution. A test of task T can then fail on the
stub of another task U, with U's NotImplementedError. These hooks, which tests/conftest.py
imports, make that plain:

- a failure caused by the stub of a task U that the test is not marked with reads
  `task T needs task U first (function in file): NotImplementedError: U: ...`, in the
  short summary and in the JUnit report (so `python -m minidarts grade .` shows it);
- the run ends with a "classroom tasks" section: one line per task, its tests passed /
  run and the prerequisites its failures need, and one for the tests of no task.

In the teacher's repository (no assignment.json) they do nothing.
"""

import re
from functools import cache
from pathlib import Path

import pytest

from .assign import TASK_FILES, TASKS, find_student_regions, is_student_copy
from .guide import enclosing_function

TASK_IDS = tuple(t for t, _, _ in TASKS)
# the message of a stub, as assign.strip_solutions writes it
STUB = re.compile(r"NotImplementedError: (?P<task>[a-z0-9_]+):")
NEEDS = "needs task"


def in_student_copy(config):
    return is_student_copy(config.rootpath)


@cache
def where(root, task):
    """'function in minidarts/file' of a task's region in the copy at `root`."""
    file = TASK_FILES[task]
    try:
        text = (Path(root) / file).read_text()
        begin = [b for t, b, _ in find_student_regions(text, file) if t == task][0]
        return f"{enclosing_function(Path(root) / file, begin)} in {file}"
    except (OSError, IndexError, ValueError):  # markers damaged or moved
        return file


def stub_task(excinfo, report):
    """The task whose stub raised the failure of `report`, or None: the exception
    itself, else the first stub message in the failure's text (an error wrapped by
    another, or printed by a subprocess)."""
    if excinfo is not None and excinfo.errisinstance(NotImplementedError):
        m = re.match(r"([a-z0-9_]+):", str(excinfo.value))
        if m and m[1] in TASK_IDS:
            return m[1]
    for m in STUB.finditer(str(report.longrepr)):
        if m["task"] in TASK_IDS:
            return m["task"]
    return None


def own_tasks(item):
    return [t for t in TASK_IDS if any(m.name == t for m in item.iter_markers())]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure caused by another task's stub, name that task first in the message
    (report.needs_task keeps it for the summary)."""
    outcome = yield
    report = outcome.get_result()
    if not in_student_copy(item.config):
        return
    own = own_tasks(item)
    # the summary counts by these (a report's keywords also hold parametrize ids)
    report.user_properties.append(("tasks", tuple(own)))
    if not report.failed:
        return
    needed = stub_task(call.excinfo, report)
    if needed is None or needed in own:
        return
    report.needs_task = needed
    who = f"task {', '.join(own)} " if own else ""
    text = f"{who}{NEEDS} {needed} first ({where(str(item.config.rootpath), needed)})"
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        crash.message = f"{text}: {crash.message}"
    report.sections.append(("prerequisite", text))


def pytest_terminal_summary(terminalreporter, config):
    """One line per classroom task at the end of the run: its tests passed / run, and
    the tasks its failures need first; then the same for the tests of no task."""
    if not in_student_copy(config):
        return
    rows = {task: [0, 0, {}] for task in (*TASK_IDS, None)}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if report.when != "call" and outcome == "passed":
                continue
            mine = list(dict(report.user_properties).get("tasks", ())) or [None]
            for task in mine:
                row = rows[task]
                row[0] += outcome == "passed"
                row[1] += 1
                needed = getattr(report, "needs_task", None)
                if needed:
                    row[2][needed] = row[2].get(needed, 0) + 1
    if not any(run for _, run, _ in rows.values()):
        return  # nothing ran (--collect-only, or no test selected): no empty table
    terminalreporter.section("classroom tasks")
    root = str(config.rootpath)
    # -x / --maxfail N: did the run stop before the end? Then the tests after the stop
    # are counted nowhere, and a task with no failure yet is not a pass
    bad = sum(len(terminalreporter.stats.get(k, [])) for k in ("failed", "error"))
    stopped = bool(config.option.maxfail) and bad >= config.option.maxfail
    for task, (passed, run, needs) in rows.items():
        if not run:
            continue
        verdict = "FAIL" if passed < run else "stop" if stopped else "pass"
        line = f"{task or 'tests of no task':<24} {verdict}  {passed}/{run} tests"
        if stopped:
            line += " run before the stop"
        if needs:
            line += "; " + ", ".join(
                f"{n} {'needs' if n == 1 else 'need'} task {u} first ({where(root, u)})"
                for u, n in needs.items()
            )
        terminalreporter.write_line(line)
