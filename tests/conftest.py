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
from minidarts.classroom.selftest import (  # noqa: F401
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from minidarts.engine import backend


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """The device name, "cpu" or "gpu"; the "gpu" run is skipped without a GPU / CuPy."""
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    return request.param
