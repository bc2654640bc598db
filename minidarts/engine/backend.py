"""Array backend: NumPy on the CPU, CuPy on the GPU, one code path for both.

Every other module asks an array which module it belongs to,

    xp = get_array_module(a)      # numpy or cupy
    y = xp.exp(a)

so the same line of code runs on either device. This is the only module that
names numpy or cupy; the rest of minidarts goes through the helpers below.

The device for *new* arrays (parameters, data batches) is chosen by, in order:
an explicit ``device=`` argument, :func:`set_default_device`, the environment
variable ``MINIDARTS_DEVICE=cpu|gpu``, and finally ``"cpu"``.
"""

import os

import numpy as np

try:  # CuPy is optional: everything works without it, on the CPU.
    import cupy as _cupy
except Exception:  # ImportError, or a CuPy that cannot find a CUDA runtime
    _cupy = None

numpy = np  # the CPU array module, for the few places that need it by name
float32 = np.float32
float64 = np.float64
int64 = np.int64

DEVICES = ("cpu", "gpu")
_default_device = None

_INSTALL_HINT = (
    "minidarts runs on the GPU through CuPy. Install the CuPy wheel that matches your "
    "CUDA version, e.g. `pip install cupy-cuda12x` (see https://docs.cupy.dev/en/stable/"
    "install.html), or run on the CPU with MINIDARTS_DEVICE=cpu / --device cpu."
)


def gpu_available():
    """True when CuPy is installed and can see at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def check_device(device):
    """Normalise a device name ('cpu', 'gpu', 'cuda') and make sure it can be used."""
    if device is None:
        return default_device()
    name = str(device).lower()
    if name == "cuda" or name.startswith("cuda:"):
        name = "gpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if name == "gpu" and not gpu_available():
        why = "CuPy is not installed" if _cupy is None else "CuPy finds no CUDA GPU"
        raise RuntimeError(f"the GPU was requested but {why}. {_INSTALL_HINT}")
    return name


def default_device():
    """The device new tensors are created on (see the module docstring)."""
    if _default_device is not None:
        return _default_device
    env = os.environ.get("MINIDARTS_DEVICE", "").strip()
    if env:
        try:
            return check_device(env)
        except ValueError:
            raise ValueError(
                f"MINIDARTS_DEVICE={env!r} is not a device: expected 'cpu' or 'gpu'"
            ) from None
    return "cpu"


def set_default_device(device):
    """Set the device for new tensors; ``None`` goes back to MINIDARTS_DEVICE / cpu."""
    global _default_device
    _default_device = None if device is None else check_device(device)


def array_module(device):
    """The array module (numpy or cupy) of a device name."""
    return _cupy if check_device(device) == "gpu" else np


def get_array_module(a):
    """numpy or cupy, whichever `a` belongs to (numpy for scalars and lists)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    return np


def device_of(a):
    """'gpu' for a CuPy array, 'cpu' for anything else."""
    return "gpu" if get_array_module(a) is not np else "cpu"


def is_array(a):
    """True for a numpy or cupy ndarray."""
    return isinstance(a, np.ndarray) or (_cupy is not None and isinstance(a, _cupy.ndarray))


def asarray(data, dtype=None, device=None):
    """`data` as an array on `device` (default: the default device), cast to `dtype`."""
    xp = array_module(device)
    if xp is np and _cupy is not None and isinstance(data, _cupy.ndarray):
        data = data.get()
    return xp.asarray(data, dtype=dtype)


def to_numpy(a):
    """A NumPy copy of a numpy/cupy array (no copy when it is already NumPy)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return a.get()
    return np.asarray(a)


def to_device(a, device):
    """Move an array to `device` ('cpu' or 'gpu')."""
    return asarray(a, device=device)


def is_scalar(x):
    """True for a Python or NumPy number (not bool) or a 0-d numpy/cupy array."""
    if isinstance(x, bool) or isinstance(x, np.bool_):
        return False
    if isinstance(x, (int, float, np.integer, np.floating)):
        return True
    return is_array(x) and x.ndim == 0 and x.dtype != np.bool_


def is_floating(a):
    """True when the array has a floating-point dtype."""
    return a.dtype.kind == "f"  # np.issubdtype says the same, 10x slower (12,000 calls a step)


def is_integer(a):
    """True when the array has an integer dtype (class labels, indices)."""
    return a.dtype.kind in "iu"


def default_rng(seed):
    """A NumPy random generator. Random numbers are always drawn on the CPU and then
    moved, so a seed gives the same numbers on either device."""
    return np.random.default_rng(seed)


def scatter_add(xp, target, index, values):
    """target[index] += values, adding repeated indices (np.add.at / cupy.add.at)."""
    xp.add.at(target, index, values)


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of giving it back.

    A training step allocates and frees hundreds of arrays of a few MB. By default
    glibc serves each one with a fresh mmap (arrays over 128 KB) and returns it on
    free, so the next array of the same size page-faults its memory back in, one
    4 KB page at a time: a third of the time of a DARTS step on the CPU went there.
    Raising the mmap threshold (to 32 MB) lets freed blocks be reused at once, and
    turning trimming off (M_TRIM_THRESHOLD = -1, mallopt(3)) keeps the heap's top: with
    a trim threshold of 512 MB, the search network at batch 256 (a heap of 1.3 GB, 600
    MB of it freed at once at the end of a backward pass) still gave the top back in
    3 processes of 8, and page-faulted it in again, ~230 times per image, at the next
    step: batch 256 then cost 10-30% more per image than batch 64 (none of 8 since). The peak
    memory stays the same; what a step frees stays with the process for the next one.

    One arena for every thread (M_ARENA_MAX = 1): engine/parallel.py's threads would
    otherwise each get an arena of their own, made of heaps of at most 64 MB that
    glibc shrinks and unmaps as they empty, whatever the thresholds. At batch 256 a
    forward + backward then page-faulted 160-480 times per image and spent 1.3-2.5 ms
    per image in the kernel; with one arena, 0-2 faults and 0.05-0.2 ms, at the same
    peak (2.69-2.72 GB against 2.68-2.74). A few hundred allocations a step share its
    lock.

    A no-op where the C library is not glibc; set MINIDARTS_MALLOC_TUNING=0 to skip
    it. Returns True when the settings were applied."""
    if os.environ.get("MINIDARTS_MALLOC_TUNING", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # from glibc's <malloc.h>
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        # a trim threshold of -1 never trims (mallopt(3))
        settings = ((m_mmap_threshold, 32 << 20), (m_trim_threshold, -1), (m_arena_max, 1))
        return all([bool(libc.mallopt(param, value)) for param, value in settings])
    except (OSError, AttributeError):
        return False


# OpenBLAS builds name their thread setters differently (NumPy's wheels prefix them).
_BLAS_THREAD_FUNCTIONS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


_OPENBLAS = []  # [(get, set) or None], found once


def _openblas():
    """(get, set) of the OpenBLAS that NumPy loaded, or None (another BLAS, not Linux);
    looked up once."""
    if not _OPENBLAS:
        _OPENBLAS.append(_find_openblas())
    return _OPENBLAS[0]


def _find_openblas():
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, put in _BLAS_THREAD_FUNCTIONS:
            if hasattr(lib, get) and hasattr(lib, put):
                return getattr(lib, get), getattr(lib, put)
    return None


def set_blas_threads(n):
    """Set the threads of NumPy's OpenBLAS to n; returns the old count, or None where it
    cannot be set (another BLAS: then OPENBLAS_NUM_THREADS / OMP_NUM_THREADS decide).

    engine/parallel.py runs NumPy operations on threads of its own; an OpenBLAS that
    splits a product over the same cores then competes with them (its threads spin
    while they wait): at batch 128 a step took longer on two threads than on one
    until each product kept to the thread that called it."""
    blas = _openblas()
    if blas is None:
        return None
    get, put = blas
    old = int(get())
    put(int(n))
    return old
