"""Tests of the assignment tool (python -m minidarts assign).

- the solution regions in the code, the task list, the markers registered in
  pyproject.toml and the markers the tests carry match one to one;
- the student copy imports and collects its tests without error; it holds the files
  git tracks and nothing else, not the teacher-only files, not the lessons that solve a
  stubbed task; it has STUDENT.md and an assignment.json that fingerprints its files;
- no solution line reaches the copy (the leak scan), and the scan catches one planted;
- hints reach a copy only when asked for, above the stub;
- in the copy, a failure caused by another task's stub names that task, and a plain
  pytest run ends with a line per task;
- the stubbing itself on small texts: indentation, messages, hints, malformed markers.

That each task's tests fail on its stub and pass on its solution, task by task, is
tested through grading (tests/test_grade.py)."""

import io
import json
import os
import re
import subprocess
import sys
import tokenize
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from mutants import solve

from minidarts.classroom import assign, grade, guide

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
    assert "(02_autograd.py needs `numerical_grad` and `backward_mul`)" in " ".join(text.split())
    # in a copy where only one of them is stubbed, only that one is named
    assert "(02_autograd.py needs `numerical_grad`)." in " ".join(
        guide.student_guide(["numerical_grad"]).split()
    )


def test_the_lesson_to_read_first_runs_once_the_tasks_it_needs_are_done(tmp_path):
    """STUDENT.md says which tasks the lesson to read first needs (guide.LESSON_NEEDS):
    in a copy with every task stubbed, it runs in full with exactly those solved, and
    stops at the stub of each one left undone."""
    for name in guide.READ_FIRST:
        needs = guide.LESSON_NEEDS[name]
        for undone in (None, *needs):
            copy = tmp_path / f"{name}-{undone}"
            assign.write_student_copy(copy, None)
            for task in needs:
                if task != undone:
                    solve(copy, task)
            cmd = [sys.executable, f"lessons/{name}"]
            proc = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=300)
            if undone is None:
                assert proc.returncode == 0 and "all checks passed" in proc.stdout, proc.stderr
            else:
                assert proc.returncode != 0
                assert f"NotImplementedError: {undone}:" in proc.stderr, proc.stderr[-500:]


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


def test_a_copy_without_the_fast_path_runs_the_readable_cell(tmp_path):
    """The copy leaves darts/fast_cell.py out (it computes eq. 1); the network then takes
    the readable Cell.forward, which gives the fast path's numbers up to rounding."""
    out = tmp_path / "week5"
    assign.write_student_copy(out, tasks=["genotype"])
    assert not (out / "minidarts" / "darts" / "fast_cell.py").exists()
    script = (
        "import numpy as np, sys\n"
        "from minidarts.darts import network\n"
        "from minidarts.engine.autograd import Tensor\n"
        "assert network.fast_cell is None\n"
        "x = Tensor(np.random.default_rng(0).standard_normal((3, 1, 12, 12)).astype('float32'))\n"
        "net = network.Network(C=4, layers=1, steps=3, multiplier=2, seed=2)\n"
        "np.save(sys.argv[1], net(x).data)\n"
    )
    saved = tmp_path / "student.npy"
    subprocess.run([sys.executable, "-c", script, str(saved)], cwd=out, check=True, timeout=120)
    from minidarts.darts.network import Network
    from minidarts.engine import parallel
    from minidarts.engine.autograd import Tensor

    old, smallest = parallel.set_num_threads(2), parallel.set_min_elements(0)  # threads on
    try:
        x = Tensor(np.random.default_rng(0).standard_normal((3, 1, 12, 12)).astype("float32"))
        teacher = Network(C=4, layers=1, steps=3, multiplier=2, seed=2)(x).data
    finally:
        parallel.set_num_threads(old)
        parallel.set_min_elements(smallest)
    np.testing.assert_allclose(np.load(saved), teacher, rtol=1e-5, atol=1e-6)


def test_student_copy_collects_every_test(student_copy):
    """A stub must not break collection, or one task's stub would fail every task."""
    proc = _pytest_in(student_copy, "--collect-only")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _pytest_in(copy, *args):
    """`python -m pytest -q ARGS` run in a student copy (its finished process)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _task_summary(copy, *args):
    """The "classroom tasks" section that `pytest ARGS` in a student copy ends with."""
    proc = _pytest_in(copy, *args)
    return proc.stdout[proc.stdout.index("classroom tasks") :]


def test_pytest_in_the_copy_ends_with_a_line_per_task(student_copy):
    """A plain pytest run in a student copy closes with each task's tests passed / run."""
    summary = _task_summary(
        student_copy,
        "tests/test_genotype.py",
        "tests/test_hypernet.py",
        "-k",
        "known_answer or linear_hypernet_shapes",
    )
    assert re.search(r"\nhypernet +FAIL  0/3 tests\n", summary), summary
    assert re.search(r"\ngenotype +FAIL  0/2 tests\n", summary), summary
    # with -x the count is of the tests that ran before the stop, and says so
    summary = _task_summary(
        student_copy,
        "-x",
        "tests/test_config.py",
        "tests/test_genotype.py",
        "-k",
        "test_presets or known_answer",
    )
    assert re.search(r"\ngenotype +FAIL  0/1 tests run before the stop\n", summary), summary
    # tests that passed before the stop are not a pass: the rest never ran
    assert re.search(r"\ntests of no task +stop  1/1 tests run before the stop\n", summary)
    # --collect-only runs nothing: no table (it used to print an empty one)
    proc = _pytest_in(student_copy, "-m", "genotype", "--collect-only")
    assert "test_genotype.py::" in proc.stdout and "classroom tasks" not in proc.stdout


def test_pytest_m_task_in_the_copy_names_the_prerequisite(tmp_path):
    """In a copy with backward_mul solved and numerical_grad not, `pytest -m
    "backward_mul or numerical_grad"`: mul's gradient checks fail on the stub of
    numerical_grad and say so (short summary, JUnit, the task's line); numerical_grad's
    own tests fail on its stub, named as it is."""
    copy = tmp_path / "copy"
    assign.write_student_copy(copy, tasks=["numerical_grad", "backward_mul"])
    solve(copy, "backward_mul")
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-m", "backward_mul or numerical_grad", "tests/test_ops.py", "tests/test_gradcheck.py"]
        + [f"--junitxml={report}", "-o", "junit_family=xunit1"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, COLUMNS="300"),
    )
    where = "numerical_grad in minidarts/engine/gradcheck.py"
    needs = f"task backward_mul needs task numerical_grad first ({where}): "
    failed = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            failed[case.get("classname") + "." + case.get("name")] = failure.get("message")
    checks = {n: m for n, m in failed.items() if "test_ops.test_gradcheck[cpu-mul" in n}
    own = {n: m for n, m in failed.items() if n.startswith("tests.test_gradcheck.")}
    assert checks and own and len(checks) + len(own) == len(failed), failed
    for message in checks.values():
        assert message.startswith(needs + "NotImplementedError: numerical_grad: "), message
    for message in own.values():
        assert message.startswith("NotImplementedError: numerical_grad: "), message
    assert f"FAILED tests/test_ops.py::test_gradcheck[cpu-mul] - {needs}" in proc.stdout
    summary = proc.stdout[proc.stdout.index("classroom tasks") :]
    need = rf"{len(checks)} need task numerical_grad first \({where}\)"
    m = re.search(rf"\nbackward_mul +FAIL  (\d+)/(\d+) tests; {need}\n", summary)
    assert m and int(m[1]) == int(m[2]) - len(checks) > 0, summary  # the rest pass
    assert re.search(rf"\nnumerical_grad +FAIL  0/{len(own)} tests\n", summary), summary


# The leak scan. A solution line is a code line of a region in the teacher's package:
# its comment (and so every # HINT: line) dropped, then all its whitespace, so that a
# copy reformatted or re-indented is still found. Lines shorter than MIN_CHARS after that
# (`return out`, `offset = 0`, `if a.ndim == 1:`, a lone bracket) are skipped: they give
# nothing away and occur in any Python file. Each file of the copy (all of them, as text,
# binary files aside) is searched, its whitespace dropped too, for each solution line.
MIN_CHARS = 12
# Solution lines the library itself also needs elsewhere, and the only files where they
# may occur: a new occurrence in another file is a leak.
SHARED = {
    # the weight step (train.py) and the second-order architecture step use the optimiser
    # and the frozen weights as the first-order step does
    "self.optimizer.zero_grad()": {"minidarts/darts/architect.py", "minidarts/jobs/train.py"},
    "self.optimizer.step()": {"minidarts/darts/architect.py", "minidarts/jobs/train.py"},
    "with frozen(self.model.parameters()):": {"minidarts/darts/architect.py"},
    # autograd's own call, in every lesson and example that trains
    "loss.backward()": None,  # anywhere
    # the trained network's fixed cell preprocesses its two inputs the same way
    "states = [self.preprocess0(s0), self.preprocess1(s1)]": {"minidarts/darts/eval_network.py"},
    # test_network's NumPy reference of a cell (a known-answer test needs one)
    "states.append(node)": {"tests/test_network.py"},
    # the sum of the binarisation penalty over the cell types
    "total = term if total is None else total + term": {"minidarts/darts/architect.py"},
    # a loop over a cell's nodes, as the plots and the Pareto tables walk a genotype
    "for node in range(steps):": {
        "minidarts/darts/genotype.py",
        "minidarts/jobs/plots.py",
        "minidarts/jobs/pareto.py",
    },
    'if name == "none":': {"minidarts/darts/operations.py"},
    # Div.backward reads the inputs it saved as Mul's and MatMul's do
    "a, b = self.a, self.b": {"minidarts/engine/arithmetic.py"},
}


def _squeeze(text):
    return re.sub(r"\s+", "", text)


def solution_lines():
    """{task: [(normalised line, line as written)]} over the package's regions."""
    found = {}
    for task, places in assign.package_regions().items():
        for file, begin in places:
            path = REPO / "minidarts" / file
            text = path.read_text()
            comments = {
                tok.start[0]: tok.start[1]
                for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT
            }
            lines = text.splitlines()
            end = next(i for i in range(begin, len(lines)) if assign.END.match(lines[i]))
            for number in range(begin + 1, end + 1):  # 1-based: the lines after BEGIN
                code = lines[number - 1][: comments.get(number)]
                if len(_squeeze(code)) >= MIN_CHARS:
                    found.setdefault(task, []).append((_squeeze(code), code.strip()))
    return found


def copy_texts(root):
    """{relative path: text} of every text file under `root` (binary files left out)."""
    texts = {}
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[path.relative_to(root).as_posix()] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def leaks(texts):
    """[(task, solution line, file)] for each solution line found in a file of `texts`
    where SHARED does not allow it."""
    squeezed = {rel: _squeeze(text) for rel, text in texts.items()}
    allowed = {_squeeze(line): files for line, files in SHARED.items()}
    found = []
    for task, lines in solution_lines().items():
        for key, line in lines:
            for rel, text in squeezed.items():
                if key in text and not (
                    key in allowed and (allowed[key] is None or rel in allowed[key])
                ):
                    found.append((task, line, rel))
    return found


@pytest.fixture(scope="module")
def student_texts(student_copy):
    return copy_texts(student_copy)


def test_no_solution_line_reaches_the_student_copy(student_texts):
    lines = solution_lines()
    assert sorted(lines) == sorted(TASK_IDS)
    for task, found in lines.items():  # every task has lines to look for
        assert len([k for k, _ in found if k not in map(_squeeze, SHARED)]) >= 1, task
    assert "README.md" in student_texts and "STUDENT.md" in student_texts
    assert leaks(student_texts) == []
    # SHARED holds no stale entry: each is a solution line, found where it is allowed
    keys = {k for found in lines.values() for k, _ in found}
    for line, files in SHARED.items():
        assert _squeeze(line) in keys, line
        places = [rel for rel, text in student_texts.items() if _squeeze(line) in _squeeze(text)]
        assert places and (files is None or set(places) <= files), (line, places)


def test_the_leak_scan_finds_a_planted_solution_line(student_texts):
    """One line of each task's solution, re-spaced, in a note of the copy; and a line
    SHARED allows elsewhere, in STUDENT.md: each is found, and nothing else."""
    lines = solution_lines()
    shared = set(map(_squeeze, SHARED))
    planted = {task: next(s for k, s in found if k not in shared) for task, found in lines.items()}
    note = "\n".join("    " + s.replace(" ", "   ").replace("(", "( ") for s in planted.values())
    texts = dict(student_texts, **{"notes/solutions.md": note})
    texts["STUDENT.md"] += "\n    a, b  =  self.a,  self.b\n"
    found = sorted(leaks(texts))
    expected = [(task, line, "notes/solutions.md") for task, line in planted.items()]
    expected += [
        (t, "a, b = self.a, self.b", "STUDENT.md") for t in ("backward_matmul", "backward_mul")
    ]
    assert found == sorted(expected)


def test_hints_reach_a_copy_only_when_asked_for(student_copy, tmp_path):
    """The default copy has no hint; `--hints genotype` keeps genotype's hints, exactly,
    above its stub, and no other task's."""
    for path in (student_copy / "minidarts").rglob("*.py"):
        if not assign._is_tool(path):
            assert not any(assign.HINT.match(s) for s in path.read_text().splitlines()), path
    out = tmp_path / "hinted"
    assert assign.main([str(out), "--tasks", "backward_mul,genotype", "--hints", "genotype"]) == 0
    text = (out / "minidarts" / "darts" / "genotype.py").read_text()
    lines = text.splitlines(keepends=True)
    ((_, begin, end),) = assign.find_student_regions(text)
    ((file, line),) = assign.package_regions()["genotype"]
    package = (REPO / "minidarts" / file).read_text().splitlines(keepends=True)
    hints = ["    " + h for h in assign.region_hints(package, line - 1)]
    assert hints and lines[begin + 1 : end - 1] == hints
    assert lines[end - 1].lstrip().startswith('raise NotImplementedError("genotype: ')
    mul = (out / "minidarts" / "engine" / "arithmetic.py").read_text()
    ((_, begin, end),) = assign.find_student_regions(mul)
    assert end == begin + 2
    assert json.loads((out / assign.MANIFEST).read_text())["hints"] == ["genotype"]
    assert "`# HINT:` lines above the stubs of `genotype`" in (out / "STUDENT.md").read_text()
    # 'all' mixed with tasks is refused, not read as either
    assert assign.main([str(tmp_path / "mixed"), "--hints", "all,cell"]) == 1
    assert not (tmp_path / "mixed").exists()


def test_every_task_has_hints_to_hand_out():
    """`--hints im2col` (the README's example) kept nothing: its region had no hint."""
    for task, regions in assign.package_regions().items():
        for file, line in regions:
            package = (REPO / "minidarts" / file).read_text().splitlines(keepends=True)
            assert assign.region_hints(package, line - 1), f"{task} in {file} has no # HINT:"


@pytest.mark.parametrize("value", ["", ",,", " , "])
def test_an_empty_task_list_is_refused_not_read_as_every_task(tmp_path, capsys, value):
    # `--tasks ""` used to hand out all 12 tasks stubbed, and grade each copy's tasks
    assert assign.main([str(tmp_path / "c"), "--tasks", value]) == 1
    assert "--tasks is empty" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert assign.main([str(tmp_path / "c"), "--hints", value]) == 1
    assert "--hints is empty" in capsys.readouterr().err
    assert grade.main([str(tmp_path), "--tasks", value]) == 1
    assert "--tasks is empty" in capsys.readouterr().err


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


def test_hints_are_kept_above_the_stub_only_when_asked_for():
    source = SOURCE.replace(
        '"twice"\n', '"twice"\n    # HINT: y * 2\n    #   HINT: not one (no colon)\n'
    ).replace("    # HINT: y * 2\n", "    # HINT: y * 2\n    # HINT: then return it\n")
    plain, hinted = assign.strip_solutions(source), assign.strip_solutions(source, hints=True)
    assert plain == assign.strip_solutions(SOURCE)
    assert hinted == assign.strip_solutions(source, hints=["numerical_grad"])
    assert assign.strip_solutions(source, hints=["cell"]) == plain
    assert hinted == plain.replace(
        "    raise", "    # HINT: y * 2\n    # HINT: then return it\n    raise"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("    x = 1\n    # HINT: y\n", "must follow a BEGIN SOLUTION"),
        ("# BEGIN SOLUTION cell: a\nx = 1\n# HINT: y\n# END SOLUTION\n", "must follow"),
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
    # a file where the copy's folder should be: said so, not "[Errno 20] Not a directory"
    assert assign.main([str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'x'} is a file, not a folder; choose a new folder"]
    # and a system fault (a file in the path) gets describe_error's remedy
    assert assign.main([str(tmp_path / "x" / "sub")]) == 1
    err = capsys.readouterr().err
    assert "Errno" not in err and "not a folder" in err, err
