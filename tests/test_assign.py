"""Tests of the assignment tool (python -m minidarts assign).

- the solution regions in the code, the task list, the markers registered in
  pyproject.toml and the markers the tests carry match one to one;
- the student copy imports, collects its tests without error, and every task's
  tests fail in it (the stubs raise NotImplementedError) while they pass here
  (the rest of this suite runs them on the full code);
- the stubbing itself on small texts: indentation, messages, malformed markers."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from minidarts.classroom import assign

REPO = Path(__file__).resolve().parents[1]
TASK_IDS = [t for t, _, _ in assign.TASKS]


def _registered_markers():
    with open(REPO / "pyproject.toml", "rb") as f:
        markers = tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]
    return {m.split(":")[0].strip() for m in markers}


def test_regions_tasks_and_markers_match_one_to_one():
    regions = assign.package_regions()
    assert sorted(regions) == sorted(TASK_IDS), "every task has a region, every region a task"
    assert all(len(places) == 1 for places in regions.values()), regions
    for task, where, _ in assign.TASKS:
        assert regions[task][0][0] == where, f"{task} is listed in {where}"
    registered = _registered_markers() - {"gpu", "slow"}
    assert registered == set(TASK_IDS)
    used = set()
    pattern = re.compile(r"pytest\.mark\.([a-z_0-9]+)")
    for path in (REPO / "tests").glob("test_*.py"):
        used |= set(pattern.findall(path.read_text()))
    ops_text = (REPO / "tests" / "test_ops.py").read_text()
    used |= set(re.findall(r'"(backward_[a-z_]+)"', ops_text))
    used -= {"parametrize", "skipif", "gpu", "slow", "xfail", "skip"}
    assert used == set(TASK_IDS), f"markers without a task: {used - set(TASK_IDS)}"


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "copy"
    assert assign.main([str(out), "--check"]) == 0
    return out


def test_student_copy_has_stubs_and_no_solutions(student_copy):
    for task, where, _ in assign.TASKS:
        text = (student_copy / "minidarts" / where).read_text()
        assert f'raise NotImplementedError("{task}: ' in text
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    # the rest of the repository comes along unchanged
    for rel in (
        "README.md",
        "requirements.txt",
        "pyproject.toml",
        "tests/test_ops.py",
        "data/mnist/SHA256SUMS",
    ):
        assert (student_copy / rel).read_bytes() == (REPO / rel).read_bytes(), rel


def test_student_copy_collects_every_test(student_copy):
    """A stub must not break collection, or one task's stub would fail every task."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=student_copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _files_marked(task):
    """The test files that carry `task`'s marker (test_ops.py marks rows by name)."""
    files = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        text = path.read_text()
        if f"pytest.mark.{task}" in text or (path.name == "test_ops.py" and f'"{task}"' in text):
            files.append(f"tests/{path.name}")
    return files


@pytest.mark.parametrize("task", TASK_IDS)
def test_each_task_fails_when_its_region_is_stubbed(tmp_path, task):
    """A copy with only this task stubbed (the others solved, as for a student working
    through the tasks in order): `pytest -m TASK` fails, and fails on this task's stub.
    With every task stubbed it fails too: a test that reaches this stub reaches it or
    an earlier one."""
    out = tmp_path / "copy"
    assert assign.write_student_copy(out, tasks=[task]) == 1
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-m",
            task,
            "-p",
            "no:cacheprovider",
            *_files_marked(task),
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert f"NotImplementedError: {task}:" in proc.stdout, proc.stdout[-2000:]


SOURCE = """def f(x):
    y = 2 * x
    # BEGIN SOLUTION numerical_grad: double it "twice"
    y = y * 2
    return y
    # END SOLUTION


def g():
    return 1
"""


def test_strip_solutions_replaces_the_region_at_its_indentation():
    out = assign.strip_solutions(SOURCE)
    assert out == (
        "def f(x):\n    y = 2 * x\n"
        '    raise NotImplementedError("numerical_grad: double it \\"twice\\"")\n'
        "\n\ndef g():\n    return 1\n"
    )
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError, match="numerical_grad: double it"):
        namespace["f"](1)
    assert namespace["g"]() == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("    # BEGIN SOLUTION cell: a\n    x = 1\n", "never ended"),
        ("    x = 1\n    # END SOLUTION\n", "without BEGIN"),
        ("# BEGIN SOLUTION cell: a\n# BEGIN SOLUTION genotype: b\n# END SOLUTION\n", "inside"),
        ("# BEGIN SOLUTION nosuchtask: a\n# END SOLUTION\n", "unknown task"),
        ("# BEGIN SOLUTION cell\n# END SOLUTION\n", "malformed"),
    ],
)
def test_malformed_regions_are_errors(text, message):
    with pytest.raises(assign.RegionError, match=message):
        assign.find_regions(text)


def test_refuses_a_folder_inside_the_repository_or_not_empty(tmp_path, capsys):
    assert assign.main([str(REPO / "student")]) == 1
    (tmp_path / "x").write_text("taken")
    assert assign.main([str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
