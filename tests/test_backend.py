"""The array backend: numpy/cupy dispatch, device choice, and the errors when no GPU.

The GPU-missing paths are tested here on any machine by monkeypatching the CuPy
module the backend sees (`backend._cupy`): None (not installed) or a stand-in
whose CUDA runtime reports no device or fails."""

import os
import platform
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import minidarts as md
from minidarts.engine import backend


@pytest.fixture(autouse=True)
def clean_device_state(monkeypatch):
    """No MINIDARTS_DEVICE and no set_default_device() leak into or out of a test."""
    monkeypatch.delenv("MINIDARTS_DEVICE", raising=False)
    monkeypatch.setattr(backend, "_default_device", None)


def fake_cupy(device_count):
    """A stand-in for the cupy module whose CUDA runtime sees `device_count` devices
    (an exception instance: getDeviceCount raises it, as without a driver)."""

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    class ndarray:  # never instantiated: nothing here is a fake-cupy array
        pass

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime), ndarray=ndarray)


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)


# --- array modules ---------------------------------------------------------------------------


@pytest.mark.parametrize("a", [np.zeros(3), np.float32(1.0), 2.5, [1, 2]], ids=repr)
def test_get_array_module_is_numpy_for_cpu_data(a):
    assert backend.get_array_module(a) is np
    assert md.get_array_module(a) is np


def test_array_module_of_a_tensor_on_each_device(device):
    t = md.tensor([1.0, 2.0], device=device)
    xp = backend.get_array_module(t.data)
    assert xp is backend.array_module(device)
    assert (xp is np) == (device == "cpu")
    assert t.device == backend.device_of(t.data) == device
    assert backend.is_array(t.data)


def test_to_numpy(device):
    a = np.arange(6.0).reshape(2, 3)
    on_device = backend.asarray(a, device=device)
    out = md.to_numpy(on_device)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, a)
    assert md.to_numpy(a) is a  # no copy for NumPy input
    np.testing.assert_array_equal(md.to_numpy([1, 2]), [1, 2])
    np.testing.assert_array_equal(md.tensor(a, device=device).numpy(), a)


def test_asarray_dtype_and_moves(device):
    a = backend.asarray([1, 2, 3], dtype=backend.float32, device=device)
    assert a.dtype == np.float32 and backend.device_of(a) == device
    back = backend.to_device(a, "cpu")
    assert isinstance(back, np.ndarray)
    t = md.tensor([1.0, 2.0], requires_grad=True).to(device)
    assert t.device == device and t.requires_grad and t.is_leaf


def test_dtype_predicates():
    assert backend.is_floating(np.zeros(1, np.float32)) and backend.is_floating(np.zeros(1))
    assert not backend.is_floating(np.zeros(1, np.int64))
    assert backend.is_integer(np.zeros(1, np.int32)) and not backend.is_integer(np.zeros(1))
    assert not backend.is_array([1.0]) and not backend.is_array(1.0)


def test_default_rng_is_seeded():
    a = backend.default_rng(7).standard_normal(5)
    b = backend.default_rng(7).standard_normal(5)
    np.testing.assert_array_equal(a, b)


def test_scatter_add_adds_repeated_indices(device):
    target = backend.asarray(np.zeros(4), device=device)
    index = backend.asarray([0, 2, 2, 3, 2], device=device)
    values = backend.asarray([1.0, 2.0, 3.0, 4.0, 5.0], device=device)
    backend.scatter_add(backend.get_array_module(target), target, index, values)
    np.testing.assert_array_equal(md.to_numpy(target), [1.0, 0.0, 10.0, 4.0])


# --- choosing the device ----------------------------------------------------------------------


def test_default_device_is_cpu():
    assert backend.default_device() == "cpu"
    assert md.tensor([1.0]).device == "cpu"


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu "])
def test_env_variable_cpu(monkeypatch, value):
    monkeypatch.setenv("MINIDARTS_DEVICE", value)
    assert backend.default_device() == "cpu"
    assert isinstance(md.tensor([1.0]).data, np.ndarray)


def test_env_variable_gpu_without_cupy(monkeypatch, no_cupy):
    monkeypatch.setenv("MINIDARTS_DEVICE", "gpu")
    with pytest.raises(RuntimeError, match=r"GPU was requested but CuPy is not installed"):
        md.tensor([1.0])


def test_env_variable_gpu_with_a_gpu(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", fake_cupy(1))
    monkeypatch.setenv("MINIDARTS_DEVICE", "gpu")
    assert backend.default_device() == "gpu"


@pytest.mark.parametrize("value", ["tpu", "gpu0", "1"])
def test_env_variable_bad_value(monkeypatch, value):
    monkeypatch.setenv("MINIDARTS_DEVICE", value)
    with pytest.raises(ValueError, match=rf"MINIDARTS_DEVICE='{value}' is not a device.*'cpu'"):
        backend.default_device()


def test_set_default_device_overrides_the_env_variable(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", fake_cupy(1))
    monkeypatch.setenv("MINIDARTS_DEVICE", "gpu")
    md.set_default_device("cpu")
    assert backend.default_device() == "cpu"
    md.set_default_device(None)  # back to the environment variable
    assert backend.default_device() == "gpu"


def test_set_default_device_rejects_bad_names_and_keeps_the_old_one(no_cupy):
    md.set_default_device("cpu")
    with pytest.raises(ValueError, match=r"unknown device 'tpu': expected one of \('cpu', 'gpu'\)"):
        md.set_default_device("tpu")
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        md.set_default_device("gpu")
    assert backend.default_device() == "cpu"


@pytest.mark.parametrize("name, expected", [("cpu", "cpu"), ("CPU", "cpu"), (None, "cpu")])
def test_check_device_normalises(name, expected):
    assert backend.check_device(name) == expected


@pytest.mark.parametrize("name", ["gpu", "GPU", "cuda", "cuda:0"])
def test_check_device_gpu_names_with_a_gpu(monkeypatch, name):
    monkeypatch.setattr(backend, "_cupy", fake_cupy(2))
    assert backend.gpu_available()
    assert backend.check_device(name) == "gpu"


@pytest.mark.parametrize("name", ["gpu", "cuda"])
def test_gpu_without_cupy_says_how_to_install_it(no_cupy, name):
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError) as excinfo:
        backend.check_device(name)
    message = str(excinfo.value)
    assert "CuPy is not installed" in message
    assert "pip install cupy-cuda12x" in message
    assert "MINIDARTS_DEVICE=cpu" in message


@pytest.mark.parametrize("runtime", [0, RuntimeError("no CUDA driver")], ids=["0_gpus", "raises"])
def test_gpu_with_cupy_but_no_device(monkeypatch, runtime):
    monkeypatch.setattr(backend, "_cupy", fake_cupy(runtime))
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match=r"CuPy finds no CUDA GPU.*pip install cupy"):
        md.tensor([1.0], device="gpu")


def test_asking_for_the_gpu_in_every_entry_point_fails_clearly(no_cupy):
    for call in (
        lambda: md.tensor([1.0], device="gpu"),
        lambda: backend.asarray([1.0], device="gpu"),
        lambda: backend.array_module("gpu"),
        lambda: md.tensor([1.0]).to("gpu"),
    ):
        with pytest.raises(RuntimeError, match="CuPy is not installed"):
            call()


def test_unknown_device_argument():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        md.tensor([1.0], device="tpu")


def test_gpu_available_is_false_when_cupy_sees_no_device(monkeypatch):
    class NoDevice:
        class cuda:
            class runtime:
                @staticmethod
                def getDeviceCount():
                    raise RuntimeError("cudaErrorNoDevice")

    monkeypatch.setattr(backend, "_cupy", NoDevice)
    assert backend.gpu_available() is False
    monkeypatch.setattr(backend, "_cupy", None)
    assert backend.gpu_available() is False


def test_keep_freed_memory_sets_glibc_malloc(monkeypatch):
    """The mallopt calls (glibc's parameter numbers): mmap threshold 32 MB, trimming
    off (trim threshold -1), one arena for every thread; skipped by MINIDARTS_MALLOC_TUNING=0,
    and False where the C library cannot be loaded."""
    import ctypes

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.delenv("MINIDARTS_MALLOC_TUNING", raising=False)
    assert backend.keep_freed_memory() is True
    assert sorted(calls) == [(-8, 1), (-3, 32 << 20), (-1, -1)]

    calls.clear()
    monkeypatch.setenv("MINIDARTS_MALLOC_TUNING", "0")
    assert backend.keep_freed_memory() is False and calls == []

    def missing(name):
        raise OSError("no libc.so.6")

    monkeypatch.delenv("MINIDARTS_MALLOC_TUNING")
    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert backend.keep_freed_memory() is False


# Grows the heap by 60 arrays of 12.8 MB (770 MB, more than the 512 MB trim threshold
# of an earlier version), frees them, and prints how far the heap's end (sbrk(0)) moved
# back. Run in a child process: the settings are process-wide.
_HEAP_PROBE = """
import ctypes, numpy as np
import minidarts
libc = ctypes.CDLL("libc.so.6")
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
for _ in range(2):  # glibc's default mmaps the first round's arrays, the second's not
    arrays = [np.ones(3_200_000, np.float32) for _ in range(60)]
    grown = libc.sbrk(0)
    arrays.clear()
print((grown - libc.sbrk(0)) >> 20)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc only",
)
def test_freed_memory_stays_with_the_process():
    """After `import minidarts`, freeing 770 MB at the top of the heap gives none of
    it back to the system (the next step would page-fault it in again); with
    MINIDARTS_MALLOC_TUNING=0, glibc's default gives most of it back, which shows the
    probe can tell the two apart."""

    def freed_back(tuning):
        env = {**os.environ, "MINIDARTS_MALLOC_TUNING": tuning}
        proc = subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE],
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(proc.stdout)

    assert freed_back("1") == 0
    assert freed_back("0") > 500
