"""Tests of the grading tool (python -m minidarts grade), teacher-only (not copied to
students).

- every task is graded on its own: in a copy with half the tasks solved and the other
  half stubbed, exactly the solved half passes, and every test of a stubbed task fails
  (its marked tests all exercise its region), whatever the state of the other tasks;
- every wrong solution in tests/mutants.py is graded failed;
- edits outside the regions are flagged, a timeout fails the task, the reports
  (grades.csv, grades.xml) hold one row / test case per (student, task), bad folders
  are refused with a message."""

import csv
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mutants import MUTANTS, mutate, reference_body, solve

from minidarts.__main__ import main as cli
from minidarts.classroom import assign, copies, grade, handout, report

TASK_IDS = [t for t, _, _ in assign.TASKS]


def _copy(tmp, name, solved=(), tasks=None):
    out = tmp / name
    assign.write_student_copy(out, tasks)
    for task in solved:
        solve(out, task)
    return out


@pytest.mark.slow
def test_each_task_is_graded_on_its_own(tmp_path):
    """Copy A solves the odd-numbered tasks, copy B the even ones: each grades exactly
    its solved tasks as passed, every test of a stubbed task fails, and a task between
    two stubbed neighbours still passes (the other tasks keep the course's solution)."""
    odd, even = TASK_IDS[0::2], TASK_IDS[1::2]
    copies = [_copy(tmp_path, "a", odd), _copy(tmp_path, "b", even)]
    results = grade.grade(copies, out=tmp_path / "out", jobs=2)
    table = {(r.student, r.task): r for r in results}
    assert len(table) == 2 * len(TASK_IDS)
    for student, solved in (("a", odd), ("b", even)):
        for task in TASK_IDS:
            r = table[student, task]
            assert r.passed == (task in solved), (student, task, r.message)
            assert r.tests_total > 0
            if task in solved:
                assert r.tests_passed == r.tests_total and r.message == ""
            else:  # every marked test exercises the region: none passes on the stub
                assert r.tests_passed == 0, (task, r)
                assert r.message.startswith(f"NotImplementedError: {task}:"), r.message
            assert r.outside_edits == ()


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_mutant_is_graded_failed(tmp_path, index):
    """Student `index` wrote mutant `index` of every task that has one (tests/mutants.py):
    grading fails each of those tasks."""
    tasks = [t for t in TASK_IDS if len(MUTANTS[t]) > index]
    copy = _copy(tmp_path, f"mutant{index}", tasks=tasks)
    for task in tasks:
        solve(copy, task, mutate(task, MUTANTS[task][index][1]))
    results = grade.grade([copy], timeout=300, jobs=2, exitfirst=True)
    assert [r.task for r in results] == tasks
    for r in results:
        name = MUTANTS[r.task][index][0]
        print(f"{r.task:<24} {name:<40} {r.tests_passed}/{r.tests_total} {r.message[:60]}")
        assert not r.passed, f"{r.task}: the mutant '{name}' was graded passed"


def test_every_task_has_three_mutants_that_apply():
    for task in TASK_IDS:
        assert len(MUTANTS[task]) >= 3, task
        bodies = {mutate(task, changes) for _, changes in MUTANTS[task]}
        assert len(bodies) == len(MUTANTS[task]), f"{task}: two mutants are the same"


def test_outside_edits_are_flagged_and_do_not_count(tmp_path):
    """An edit outside the regions (a test weakened, a helper changed) is reported and
    has no effect: the course's tests and code run."""
    copy = _copy(tmp_path, "edits", ["genotype"], tasks=["genotype"])
    test = copy / "tests" / "test_genotype.py"
    test.write_text(test.read_text().replace("def test_known_answer_two_nodes", "def _off"))
    (copy / "README.md").unlink()
    (copy / "notes.txt").write_text("extra files are not edits")
    (r,) = grade.grade([copy])
    assert r.passed and r.tests_passed == r.tests_total
    assert r.outside_edits == ("README.md (missing)", "tests/test_genotype.py")


def test_damaged_markers_fail_that_task_only(tmp_path):
    copy = _copy(tmp_path, "markers", ["genotype", "complexity"], tasks=["genotype", "complexity"])
    path = copy / "minidarts" / "darts" / "genotype.py"
    path.write_text(path.read_text().replace("# END YOUR SOLUTION", "# END"))
    results = {r.task: r for r in grade.grade([copy])}
    assert results["complexity"].passed
    assert not results["genotype"].passed
    assert results["genotype"].message.startswith("not graded: the copy has 0 region(s)")
    assert "minidarts/darts/genotype.py (markers damaged)" in results["genotype"].outside_edits


def test_a_task_that_runs_too_long_fails(tmp_path):
    copy = _copy(tmp_path, "slow", tasks=["genotype"])
    solve(copy, "genotype", "    import time\n    time.sleep(60)\n")
    (r,) = grade.grade([copy], timeout=3)
    assert not r.passed and r.message.startswith("timed out after 3 s")


def test_a_timed_out_run_keeps_its_log_and_says_how_far_it_got(tmp_path):
    """The reference solution, slow from its fourth call on: the tests before that pass,
    the message counts them, and the log holds what pytest printed before the kill."""
    slow_later = (
        "    import builtins, time\n"
        "    builtins._calls = getattr(builtins, '_calls', 0) + 1\n"
        "    if builtins._calls > 3:\n"
        "        time.sleep(60)\n"
    )
    copy = _copy(tmp_path, "slow_later", tasks=["genotype"])
    solve(copy, "genotype", slow_later + reference_body("genotype"))
    (r,) = grade.grade([copy], timeout=8, out=tmp_path / "out")
    assert not r.passed and r.tests_passed == 0
    found = re.fullmatch(r"timed out after 8 s \((\d+) tests had passed\)", r.message)
    assert found and int(found[1]) >= 1, r.message
    assert "." in (tmp_path / "out" / "logs" / "slow_later" / "genotype.txt").read_text()


def test_partial_credit_scores_the_fraction_of_tests(tmp_path):
    copy = _copy(tmp_path, "partial", tasks=["genotype"])
    solve(copy, "genotype", mutate("genotype", MUTANTS["genotype"][1][1]))
    (all_or_nothing,) = grade.grade([copy])
    (partial,) = grade.grade([copy], partial=True)
    assert not partial.passed and 0 < partial.tests_passed < partial.tests_total
    assert partial.score == pytest.approx(partial.tests_passed / partial.tests_total)
    assert all_or_nothing.score == 0.0


def test_command_line_prints_a_line_per_task_and_writes_the_reports(tmp_path, capsys):
    a = _copy(tmp_path, "alice", ["genotype"], tasks=["genotype", "complexity"])
    b = _copy(tmp_path, "bob", ["complexity"], tasks=["genotype", "complexity"])
    out = tmp_path / "grades"
    assert cli(["grade", str(a), str(b), "--out", str(out)]) == 1  # not all passed
    text = capsys.readouterr().out
    assert "alice: total 1/2 tasks" in text and "bob: total 1/2 tasks" in text
    lines = [s.split() for s in text.splitlines() if s.startswith("  ")]
    assert [s[:2] for s in lines] == [
        ["complexity", "FAIL"],
        ["genotype", "pass"],
        ["complexity", "pass"],
        ["genotype", "FAIL"],
    ]
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student"], r["task"], r["passed"]) for r in rows] == [
        ("alice", "complexity", "fail"),
        ("alice", "genotype", "pass"),
        ("bob", "complexity", "pass"),
        ("bob", "genotype", "fail"),
    ]
    suites = ET.parse(out / "grades.xml").getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        ("alice", "2", "1"),
        ("bob", "2", "1"),
    ]
    failure = suites[0].find("testcase[@name='complexity']/failure")
    assert "NotImplementedError: complexity:" in failure.get("message")
    assert (out / "logs" / "alice" / "genotype.txt").is_file()


def test_in_a_student_copy_grade_runs_the_copy_and_names_the_prerequisite(tmp_path):
    """`python -m minidarts grade .` in a copy: no course solutions there, so a correct
    backward of mul fails on the stubbed numerical_grad, and the message says so."""
    copy = _copy(tmp_path, "self", ["backward_mul"], tasks=["numerical_grad", "backward_mul"])
    proc = subprocess.run(
        [sys.executable, "-m", "minidarts", "grade", ".", "--tasks", "backward_mul"]
        + ["--out", str(tmp_path / "out")],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = [s for s in proc.stdout.splitlines() if s.startswith("  backward_mul")]
    where = "numerical_grad in minidarts/engine/gradcheck.py"  # named by classroom/selftest.py
    assert "FAIL" in line and f"needs task numerical_grad first ({where}): NotI" in line


def test_bad_folders_are_clear_errors(tmp_path, capsys):
    assert cli(["grade", str(tmp_path / "nobody")]) == 1
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert cli(["grade", str(tmp_path / "plain")]) == 1
    assert f"error: {tmp_path / 'plain'}: not a student copy" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown tasks"):
        grade.grade([_copy(tmp_path, "c", tasks=["genotype"])], tasks=["nosuchtask"])
    (tmp_path / "afile").write_text("")  # grade has --out, no --name
    assert cli(["grade", str(tmp_path / "c"), "--out", str(tmp_path / "afile")]) == 1
    assert "is a file, not a folder: choose another --out" in capsys.readouterr().err


def test_report_columns_are_the_result_fields():
    assert report.FIELDS == grade.TaskResult._fields


def test_a_line_without_a_report_shows_no_count():
    """A timed-out or ungraded task showed 0/0, as if it had no tests."""
    late = grade.TaskResult("a", "genotype", False, 0, 0, 0.0, 10.0, "timed out after 10 s", ())
    done = late._replace(passed=True, tests_passed=12, tests_total=12, message="")
    assert (
        report.format_result(late)
        == f"  {'genotype':<24} FAIL    -/-     10.0 s  timed out after 10 s"
    )
    assert report.format_result(done) == f"  {'genotype':<24} pass   12/12    10.0 s"


def test_files_a_run_leaves_do_not_grade_the_students_after_it(tmp_path):
    """A student's code runs in the grading tree: a conftest.py it plants there, whose hook
    marks every test passed, and a course file it changes, are gone before the next run
    (Tree.reset), so neither its own next task nor the next student passes on them."""
    plant = (
        "    import pathlib\n"
        "    pathlib.Path('conftest.py').write_text(\n"
        "        'import pytest\\n'\n"
        "        '@pytest.hookimpl(hookwrapper=True)\\n'\n"
        "        'def pytest_runtest_makereport(item, call):\\n'\n"
        "        '    outcome = yield\\n'\n"
        "        '    outcome.get_result().outcome = \"passed\"\\n')\n"
        "    pathlib.Path('tests/test_genotype.py').write_text('')\n"
        "    raise NotImplementedError('genotype: planted')\n"
    )
    planter = _copy(tmp_path, "planter", tasks=["genotype", "complexity"])
    solve(planter, "genotype", plant)
    innocent = _copy(tmp_path, "innocent", tasks=["genotype", "complexity"])
    results = {(r.student, r.task): r for r in grade.grade([planter, innocent])}
    assert len(results) == 4
    for (student, task), r in results.items():
        assert not r.passed and r.tests_passed == 0 and r.tests_total > 0, (student, task, r)


def test_a_skip_raised_by_the_solution_is_a_failure(tmp_path):
    """Only the course's tests may skip (no GPU, say): a solution that skips what it
    cannot do fails those tests."""
    copy = _copy(tmp_path, "skipper", tasks=["genotype"])
    solve(copy, "genotype", "    import pytest\n    pytest.skip('not supported')\n")
    (r,) = grade.grade([copy])
    assert not r.passed and r.tests_passed == 0 and r.tests_total > 0
    assert r.message.startswith("skipped in minidarts/darts/genotype.py:"), r.message


def test_a_report_written_over_after_the_run_does_not_pass(tmp_path):
    """pytest's exit status and its JUnit report must agree: a stub that, at exit, strips
    the failures from the report is still graded failed."""
    rewrite = (
        "    import atexit, re, sys\n"
        "    def _clean():\n"
        "        for arg in sys.argv:\n"
        "            if arg.startswith('--junitxml='):\n"
        "                path = arg.split('=', 1)[1]\n"
        "                text = open(path).read()\n"
        "                text = re.sub(r'<failure.*?</failure>', '', text, flags=re.S)\n"
        "                open(path, 'w').write(text)\n"
        "    atexit.register(_clean)\n"
        "    raise NotImplementedError('genotype: not done')\n"
    )
    copy = _copy(tmp_path, "rewriter", tasks=["genotype"])
    solve(copy, "genotype", rewrite)
    (r,) = grade.grade([copy])
    assert not r.passed and r.tests_passed == 0
    assert r.message.startswith("pytest exited with status 1 but its report says all"), r.message


def test_the_grading_tree_leaves_out_the_teacher_only_files(tmp_path):
    """A region that imports the fast path (which computes eq. 1 and 2, the cell task's
    answer) finds it no more in grading than in the student's copy."""
    copy = _copy(tmp_path, "borrower", tasks=["genotype"])
    solve(copy, "genotype", "    from minidarts.darts import fast_cell  # noqa: F401\n")
    (r,) = grade.grade([copy])
    assert not r.passed and "fast_cell" in r.message, r.message


def test_a_process_the_run_leaves_running_is_stopped(tmp_path):
    """A process started in a session of its own escapes the kill of pytest's process
    group: it is found by the run's marker in its environment and stopped."""
    pid_file = tmp_path / "pid"
    escape = (
        "    import subprocess\n"
        "    child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        f"    open({str(pid_file)!r}, 'a').write(f'{{child.pid}} ')\n"
        "    raise NotImplementedError('genotype: not done')\n"
    )
    copy = _copy(tmp_path, "escaper", tasks=["genotype"])
    solve(copy, "genotype", escape)
    (r,) = grade.grade([copy])
    assert not r.passed and "process(es) the run left running" in r.message, r.message
    for pid in {int(p) for p in pid_file.read_text().split()}:
        status = Path(f"/proc/{pid}/status")
        running = status.exists() and "State:\tZ" not in status.read_text()
        assert not running, f"process {pid} still runs"


def test_a_run_that_changes_the_teachers_files_stops_the_grading(tmp_path):
    """The tree is put back from the course as it was read (in memory), not from the
    teacher's repository, which a run can write to; a run that changed it stops the
    grading, naming the copy and the files: every later grade would run its course."""
    teacher = tmp_path / "teacher"
    subprocess.run(["git", "clone", "-q", "--local", str(assign.REPO), str(teacher)], check=True)
    target = teacher / "tests" / "conftest.py"
    tamper = (
        f"    open({str(target)!r}, 'a').write('\\n# changed by a student\\n')\n"
        "    raise NotImplementedError('genotype: not done')\n"
    )
    copy = _copy(tmp_path, "tamper", tasks=["genotype"])
    solve(copy, "genotype", tamper)
    with pytest.raises(
        RuntimeError,
        match=r"grading stopped: the run of tamper's genotype "
        r"changed the course's own files .*\(tests/conftest.py\)",
    ):
        grade.grade([copy], teacher=teacher)


def test_copies_in_folders_of_the_same_name_are_graded_apart(tmp_path):
    """submissions/alice/copy and submissions/bob/copy are two students, each with a
    name, a row and logs of their own; the same folder given twice is refused."""
    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
    alice = _copy(tmp_path / "alice", "copy", tasks=["genotype"])
    bob = _copy(tmp_path / "bob", "copy", ["genotype"], tasks=["genotype"])
    results = grade.grade([alice, bob], out=tmp_path / "out")
    assert [(r.student, r.passed) for r in results] == [("alice/copy", False), ("bob/copy", True)]
    for who in ("alice", "bob"):
        assert (tmp_path / "out" / "logs" / who / "copy" / "genotype.txt").stat().st_size > 0
    with pytest.raises(ValueError, match="given twice"):
        grade.grade([alice, tmp_path / "bob" / ".." / "alice" / "copy"])


def test_a_run_that_ends_pytest_early_says_so(tmp_path):
    """The solution ends the test process (os._exit): no report, and the message says
    that pytest ended before writing it, not that no test ran."""
    copy = _copy(tmp_path, "exits", tasks=["genotype"])
    solve(copy, "genotype", "    import os\n    os._exit(0)\n")
    (r,) = grade.grade([copy])
    assert not r.passed
    assert r.message.startswith("pytest ended before writing its report (exit status 0;")


def test_grading_oneself_says_where_the_teachers_grading_differs(tmp_path):
    """`grade .` in a copy runs the copy as it is, where the teacher's grading reads only
    the lines between the markers: a task whose markers are damaged fails as not
    readable there, a pass beside edits outside the markers carries that caveat, and
    grading oneself again replaces the last report (kept by a run refused before it
    graded) instead of refusing or piling them up."""
    copy = _copy(tmp_path, "self", ["genotype", "complexity"], tasks=["genotype", "complexity"])
    genotype = copy / "minidarts" / "darts" / "genotype.py"
    genotype.write_text("# my notes\n" + genotype.read_text())
    complexity = copy / "minidarts" / "darts" / "complexity.py"
    complexity.write_text(complexity.read_text().replace("# END YOUR SOLUTION", "# END"))
    cmd = [sys.executable, "-m", "minidarts", "grade", "."]
    proc = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    lines = {s.split()[0]: s for s in proc.stdout.splitlines() if s.startswith("  ")}
    assert "FAIL" in lines["complexity"]
    assert "your teacher's grading cannot read this task" in lines["complexity"]
    assert " pass " in lines["genotype"]
    assert "leaves out your edits outside the markers" in lines["genotype"]
    assert "(your teacher's grading leaves them out)" in proc.stdout
    assert {p.name for p in (copy / "grades").iterdir()} == {"grades.csv", "grades.xml", "logs"}
    # a run refused before grading keeps the last report
    proc = subprocess.run(cmd + ["--tasks", "nosuch"], cwd=copy, capture_output=True, text=True)
    assert proc.returncode == 1 and "unknown tasks" in proc.stderr
    assert (copy / "grades" / "grades.csv").is_file()
    # grading again replaces the last report, and one a run interrupted before writing
    # its own left (only logs/) too
    for name in ("grades.csv", "grades.xml"):
        (copy / "grades" / name).unlink()
    proc = subprocess.run(cmd + ["--tasks", "genotype"], cwd=copy, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (copy / "grades" / "grades.csv").is_file()
    assert not list(copy.glob("grades.old-*")) and not list(copy.glob(".grades.last"))


def test_a_report_folder_that_holds_a_students_work_is_refused(tmp_path, capsys):
    # --overwrite used to move the student's copy aside to COPY.old-1 and then fail
    copy = _copy(tmp_path, "c", tasks=["genotype"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out, fragment in [
        (copy, "is the student copy"),
        (tmp_path, "holds the student copy"),
        (copy / "minidarts", "holds minidarts/"),
    ]:
        assert cli(["grade", str(copy), "--out", str(out), "--overwrite"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # a report inside the copy that holds none of its files is where a student's own
    # grading writes (grades/)
    grade.out_apart(copy / "grades", [copy])


def _edit_manifest(copy, change):
    path = copy / assign.MANIFEST
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_task_taken_off_the_copys_list_is_still_graded_and_the_edit_flagged(tmp_path):
    """assignment.json is in the student's hands: the task list and fingerprints that
    grade come from the teacher's record of the handout (handout.py). A student who
    dropped an unfinished task from the list, and wrote a new fingerprint over a
    weakened test, used to get full marks and no flag."""
    tasks = ["numerical_grad", "complexity"]
    copy = _copy(tmp_path, "carol", ["numerical_grad"], tasks=tasks)
    test = copy / "tests" / "test_complexity.py"
    test.write_text(test.read_text() + "\n# loosened\n")

    def cheat(data):
        data["tasks"] = ["numerical_grad"]
        data["files"]["tests/test_complexity.py"] = assign.fingerprint(
            test.read_bytes(), "tests/test_complexity.py"
        )

    _edit_manifest(copy, cheat)
    results = {r.task: r for r in grade.grade([copy], tasks=None)}
    assert sorted(results) == sorted(tasks)
    assert results["numerical_grad"].passed and not results["complexity"].passed
    assert results["complexity"].message.startswith("NotImplementedError: complexity:")
    edits = results["complexity"].outside_edits
    assert edits[0] == "assignment.json (edited: its files, tasks differ from the handout's record)"
    assert "tests/test_complexity.py" in edits


def test_a_copy_without_a_record_is_flagged_and_graded_on_the_markers_it_holds(
    tmp_path, monkeypatch
):
    copy = _copy(tmp_path, "dave", tasks=["numerical_grad", "complexity"])
    _edit_manifest(copy, lambda data: data.update(tasks=["numerical_grad"]))
    monkeypatch.setenv(handout.RECORDS_ENV, str(tmp_path / "another-checkout"))
    results = grade.grade([copy], exitfirst=True)
    assert [r.task for r in results] == ["numerical_grad", "complexity"]
    assert not any(r.passed for r in results)
    name = json.loads((copy / assign.MANIFEST).read_text())["handout"]
    where = tmp_path / "another-checkout"
    assert (
        results[0]
        .outside_edits[0]
        .startswith(f"assignment.json (its handout {name!r} has no record in {where}")
    )
    note = "graded from the copy's markers: its list and no record name this task; "
    assert results[1].message.startswith(note), results[1].message


def test_one_unreadable_copy_fails_alone_and_a_task_not_handed_out_fails_by_name(tmp_path, capsys):
    """One folder of the class without assignment.json stopped the grading of all; a
    task named by --tasks that a copy was not given was skipped without a word."""
    good = _copy(tmp_path, "alice", ["complexity"], tasks=["complexity"])
    test = good / "tests" / "test_complexity.py"
    test.write_text(test.read_text() + "\n# an edit the header must name\n")
    broken = _copy(tmp_path, "eve", tasks=["complexity"])
    (broken / assign.MANIFEST).unlink()
    out = tmp_path / "g"
    argv = ["grade", str(good), str(broken), "--out", str(out), "--tasks", "complexity,genotype"]
    assert cli(argv) == 1
    rows = list(csv.DictReader(open(out / "grades.csv")))
    got = {(r["student"], r["task"]): r for r in rows}
    assert got["alice", "complexity"]["passed"] == "pass"
    assert got["alice", "genotype"]["passed"] == "fail"
    assert (
        "genotype was not handed out in this copy (its tasks: complexity)"
        in (got["alice", "genotype"]["message"])
    )
    for task in ("complexity", "genotype"):
        assert got["eve", task]["passed"] == "fail"
        message = got["eve", task]["message"]
        assert message.startswith("not graded: not a student copy (it has no assignment.json")
    out = capsys.readouterr().out
    assert "alice: edits outside the regions: tests/test_complexity.py" in out
    assert "eve: edits outside the regions: not read: the folder is no copy" in out
    assert "eve: total 0/2 tasks" in out


def test_records_old_damaged_or_missing_say_so(tmp_path, monkeypatch, capsys):
    """A copy written before records were kept names none; a damaged record stops the
    grading as the teacher's fault (it used to fail the student's every task as
    'assignment.json damaged: write the copy again')."""
    monkeypatch.setenv(handout.RECORDS_ENV, str(tmp_path / "records"))  # damaged below
    copy = _copy(tmp_path, "old", tasks=["complexity"])
    name = json.loads((copy / assign.MANIFEST).read_text())["handout"]
    _edit_manifest(copy, lambda data: data.pop("handout"))
    assert copies.StudentCopy(copy, assign.REPO).outside_edits == [
        "assignment.json (it has no handout entry (deleted, or a copy from before `assign` "
        "kept records): its task list and fingerprints are the copy's own word)"
    ]
    _edit_manifest(copy, lambda data: data.update(handout=name))
    record = handout.records_folder(assign.REPO) / f"{name}.json"
    for damage in ("{", "[]", '{"tasks": "complexity", "files": {}}'):
        record.write_text(damage)
        assert cli(["grade", str(copy), "--out", str(tmp_path / "g"), "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert f"error: {record}: the record of a handout is damaged" in err, err


def test_links_a_stray_file_and_another_weeks_copy_are_caught(tmp_path, capsys):
    """A file of the copy that links to a classmate's passed unflagged; a link to a
    classmate's whole copy, or a stray file among the copies, stopped the grading of
    all; a copy of an easier week's handout was graded on its own tasks unremarked."""
    honest = _copy(tmp_path, "honest", ["numerical_grad"], tasks=["numerical_grad", "complexity"])
    linker = _copy(tmp_path, "linker", tasks=["numerical_grad", "complexity"])
    mine = linker / "minidarts" / "engine" / "gradcheck.py"
    mine.unlink()
    mine.symlink_to(honest / "minidarts" / "engine" / "gradcheck.py")
    (tmp_path / "mallory").symlink_to(honest)
    (tmp_path / "notes.txt").write_text("not a copy")
    easy = _copy(tmp_path, "easy", ["numerical_grad"], tasks=["numerical_grad"])
    class_ = [honest, linker, tmp_path / "mallory", tmp_path / "notes.txt", easy]
    out = tmp_path / "g"
    assert cli(["grade", *map(str, class_), "--out", str(out), "-x"]) == 1
    printed = capsys.readouterr().out
    rows = {(r["student"], r["task"]): r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["honest", "numerical_grad"]["passed"] == "pass"
    link = rows["linker", "numerical_grad"]
    assert link["passed"] == "fail" and link["message"].startswith("not graded: the copy has 0")
    real = os.path.realpath(honest)
    assert f"minidarts/engine/gradcheck.py (a link to {real}/minidarts/" in link["outside_edits"]
    assert rows["mallory", "numerical_grad"]["message"] == (
        f"not graded: a link to {real}, given as {honest} too"
    )
    assert rows["notes.txt", "complexity"]["message"] == "not graded: a file, not a student copy"
    assert rows["easy", "numerical_grad"]["passed"] == "pass"
    assert "easy: total 1/1 tasks" in printed
    assert (
        "note: not every copy was given the same tasks (numerical_grad, complexity: honest, "
        "linker, mallory and 1 more; numerical_grad: easy); --tasks grades all alike"
    ) in printed


def test_assign_refuses_a_records_folder_it_cannot_make_before_writing(
    tmp_path, monkeypatch, capsys
):
    """A records path that is a file left a whole copy without its assignment.json."""
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv(handout.RECORDS_ENV, str(tmp_path / "afile"))
    assert assign.main([str(tmp_path / "copy"), "--tasks", "genotype"]) == 1
    err = capsys.readouterr().err
    assert f"the records of the handouts go to {tmp_path / 'afile'} (MINIDARTS_HANDOUTS" in err
    assert not (tmp_path / "copy").exists()
    # a failure while the copy is written removes what was written
    monkeypatch.setenv(handout.RECORDS_ENV, str(tmp_path / "records"))

    def full_disk(*args):
        raise OSError("disk full")

    monkeypatch.setattr(handout, "record", full_disk)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="disk full"):
        assign.write_student_copy(tmp_path / "empty", ["genotype"])
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(OSError, match="disk full"):  # and the folders it made on the way
        assign.write_student_copy(tmp_path / "new" / "week1" / "copy", ["genotype"])
    assert not (tmp_path / "new").exists()
