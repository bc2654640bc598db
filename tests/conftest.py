"""Shared pytest fixtures.

`device` runs a test once per device:

    def test_something(device):
        x = minidarts.tensor([1.0, 2.0], device=device)   # numpy on "cpu", cupy on "gpu"
        ...

The "gpu" run carries the `gpu` marker (select with `-m gpu`, leave out with
`-m "not gpu"`) and is skipped, with reason "no GPU / CuPy", where
`minidarts.engine.backend.gpu_available()` is False.
"""

import pytest

from minidarts.engine import backend


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """The device name, "cpu" or "gpu"; the "gpu" run is skipped without a GPU / CuPy."""
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    return request.param


def pytest_terminal_summary(terminalreporter, config):
    """In a student copy (an assignment.json at the root, see minidarts assign): one line
    per classroom task at the end of the run, its tests passed / run."""
    if not (config.rootpath / "assignment.json").is_file():
        return
    from minidarts.classroom.assign import TASKS

    counts = {task: [0, 0] for task, _, _ in TASKS}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            for task in counts:
                if task in report.keywords and (report.when == "call" or outcome != "passed"):
                    counts[task][0] += outcome == "passed"
                    counts[task][1] += 1
    terminalreporter.section("classroom tasks")
    for task, (passed, run) in counts.items():
        if run:
            verdict = "pass" if passed == run else "FAIL"
            terminalreporter.write_line(f"{task:<24} {verdict}  {passed}/{run} tests")
