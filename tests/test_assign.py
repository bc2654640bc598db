"""Tests of the assignment tool (python -m minidarts assign).

- the solution regions in the code, the task list, the markers registered in
  pyproject.toml and the markers the tests carry match one to one;
- the student copy imports and collects its tests without error; it holds the files
  git tracks and nothing else, not the teacher-only files, not the lessons that solve a
  stubbed task; it has STUDENT.md and an assignment.json that fingerprints its files;
- the stubbing itself on small texts: indentation, messages, malformed markers.

That each task's tests fail on its stub and pass on its solution, task by task, is
tested through grading (tests/test_grade.py)."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from minidarts.classroom import assign, guide

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
        ((_, begin, end),) = [r for r in assign.find_student_regions(text) if r[0] == task]
        assert end == begin + 2
    # the rest of the repository comes along unchanged
    for rel in (
        "README.md",
        "requirements.txt",
        "pyproject.toml",
        "tests/test_ops.py",
        "data/mnist/SHA256SUMS",
    ):
        assert (student_copy / rel).read_bytes() == (REPO / rel).read_bytes(), rel


def test_student_copy_holds_the_tracked_files_only(student_copy):
    """No untracked file travels (an editor backup, a virtual environment, notes), nor
    the teacher-only files, nor the lessons that derive a stubbed task's answer."""
    tracked = set(assign.tracked_files(REPO))
    copied = {
        p.relative_to(student_copy).as_posix()
        for p in student_copy.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    held = {f"lessons/{name}" for name in guide.LESSON_SOLVES}
    assert copied - tracked == {"STUDENT.md", assign.MANIFEST}
    assert tracked - copied == set(assign.TEACHER_ONLY) | held
    assert {"tests/test_grade.py", "tests/mutants.py"} <= tracked  # left out, not missing


def test_untracked_files_stay_behind(tmp_path, monkeypatch):
    """Outside git, the walk leaves out the SKIP folders and editor backups; inside, only
    `git ls-files` counts: a new file is copied once it is added."""
    root = tmp_path / "repo"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "x.json").write_text("{}")
    (root / "a.py").write_text("")
    (root / "a.py~").write_text("")
    assert assign.tracked_files(root) == ["a.py"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "a.py~"], cwd=root, check=True)
    assert assign.tracked_files(root) == ["a.py~"]


def test_manifest_and_student_guide(student_copy):
    manifest = json.loads((student_copy / assign.MANIFEST).read_text())
    assert manifest["tasks"] == TASK_IDS
    assert set(manifest["held_lessons"]) == set(guide.LESSON_SOLVES)
    for rel, digest in manifest["files"].items():
        assert assign.fingerprint((student_copy / rel).read_bytes(), rel) == digest, rel
    text = (student_copy / "STUDENT.md").read_text()
    for i, (task, where, _) in enumerate(assign.TASKS, 1):
        assert f"| {i} | `{task}` | `minidarts/{where}` |" in text
    for command in ("python -m pytest -m numerical_grad", "python -m minidarts grade ."):
        assert command in text
    assert "`Mul.backward`" in text and "`parse_cell`" in text  # the functions named
    assert "02_autograd.py" in text


def test_a_partial_copy_keeps_the_other_solutions_and_lessons(tmp_path):
    out = tmp_path / "week3"
    assert assign.write_student_copy(out, tasks=["mixed_op", "cell"]) == 2
    manifest = json.loads((out / assign.MANIFEST).read_text())
    assert manifest["tasks"] == ["mixed_op", "cell"]
    assert manifest["held_lessons"] == ["06_candidate_operations.py", "07_cell_and_network.py"]
    assert (out / "lessons" / "04_convolution.py").is_file()
    assert not (out / "lessons" / "07_cell_and_network.py").exists()
    assert "BEGIN SOLUTION im2col" in (out / "minidarts" / "nn" / "conv.py").read_text()
    everything = tmp_path / "all-lessons"
    assign.write_student_copy(everything, tasks=["cell"], all_lessons=True)
    assert (everything / "lessons" / "07_cell_and_network.py").is_file()


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


def test_pytest_in_the_copy_ends_with_a_line_per_task(student_copy):
    """A plain pytest run in a student copy closes with each task's tests passed / run."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_genotype.py"]
        + ["tests/test_hypernet.py", "-k", "known_answer or linear_hypernet_shapes"],
        cwd=student_copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = proc.stdout[proc.stdout.index("classroom tasks") :]
    assert re.search(r"\nhypernet +FAIL  0/3 tests\n", summary), summary
    assert re.search(r"\ngenotype +FAIL  0/2 tests\n", summary), summary


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
        "    # BEGIN YOUR SOLUTION numerical_grad\n"
        '    raise NotImplementedError("numerical_grad: double it \\"twice\\"")\n'
        "    # END YOUR SOLUTION\n"
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


@pytest.mark.parametrize(
    "text, message",
    [
        ("    # BEGIN YOUR SOLUTION cell\n    x = 1\n", "never ended"),
        ("    x = 1\n    # END YOUR SOLUTION\n", "without BEGIN"),
        ("# BEGIN YOUR SOLUTION cell\n# BEGIN YOUR SOLUTION genotype\n", "inside"),
        ("# BEGIN YOUR SOLUTION cell: a\n# END YOUR SOLUTION\n", "malformed"),
    ],
)
def test_malformed_student_markers_are_errors(text, message):
    with pytest.raises(assign.RegionError, match=message):
        assign.find_student_regions(text)


def test_fingerprint_ignores_the_inside_of_the_regions_only():
    stubbed = assign.strip_solutions(SOURCE).encode()
    solved = stubbed.replace(b"raise NotImplementedError", b"return 4 * x  #")
    elsewhere = stubbed.replace(b"return 1", b"return 2")
    digest = assign.fingerprint(stubbed, "f.py")
    assert assign.fingerprint(solved, "f.py") == digest
    assert assign.fingerprint(elsewhere, "f.py") != digest


def test_refuses_a_folder_inside_the_repository_or_not_empty(tmp_path, capsys):
    assert assign.main([str(REPO / "student")]) == 1
    (tmp_path / "x").write_text("taken")
    assert assign.main([str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
