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

# In a student copy (python -m minidarts assign): a failure caused by another task's stub
# names that task, and the run ends with a line per task (minidarts/classroom/selftest.py)
from minidarts.classroom.assign import TASKS
from minidarts.classroom.handout import RECORDS_ENV
from minidarts.classroom.selftest import (  # noqa: F401
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from minidarts.engine import backend, parallel


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """The device name, "cpu" or "gpu"; the "gpu" run is skipped without a GPU / CuPy."""
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _handout_records_apart(tmp_path_factory):
    """`assign` keeps a record of each copy it writes (classroom/handout.py): the
    tests' copies are recorded in a temporary folder, not in the repository."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RECORDS_ENV, str(tmp_path_factory.mktemp("handouts")))
        yield


@pytest.fixture(autouse=True)
def _readable_cell_for_classroom_tasks(request, monkeypatch):
    """The tests of a classroom task (those carrying a task's marker) must exercise the
    code a student writes: the search network's fast path (darts/fast_cell.py, which
    computes eq. 1 itself) is off for them. An environment variable, not an import: in a
    student copy, importing the network here would make a mistake in the student's
    cell.py fail the tests of every other task too. A student copy has no fast path."""
    if any(request.node.get_closest_marker(task) for task, _, _ in TASKS):
        monkeypatch.setenv("MINIDARTS_FAST_CELL", "0")


@pytest.fixture(autouse=True)
def _threads_at_any_size():
    """The tests' networks are tiny, and the threads stay off below
    parallel.min_elements() (they would not pay there); the tests are here to exercise
    them, so every test runs them at any size. The threshold's own tests set it."""
    smallest = parallel.set_min_elements(0)
    yield
    parallel.set_min_elements(smallest)
