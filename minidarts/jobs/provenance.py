"""What produced a run: versions, machine and device, recorded in its config.json,
so that a number in a report can be traced to the code and the libraries behind it."""

import importlib.metadata
import os
import platform
import subprocess
import sys

from ..engine import backend


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit():
    """The commit of the source tree minidarts runs from, if it is a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        out = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _blas():
    try:
        info = backend.numpy.show_config(mode="dicts")
        blas = info["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict form
        return None


def provenance(device="cpu"):
    """{minidarts version and commit, Python, NumPy, SciPy, CuPy, BLAS, threads,
    device, platform}: plain JSON values."""
    # the root package is imported whenever a layer is (read, not imported: the
    # layers never import upwards, see tests/test_layout.py)
    version = getattr(sys.modules.get("minidarts"), "__version__", None)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "minidarts": version,
        "commit": _git_commit(),
        "python": platform.python_version(),
        "numpy": backend.numpy.__version__,
        "scipy": _version("scipy"),
        "cupy": next(
            (v for v in map(_version, ("cupy", "cupy-cuda12x", "cupy-cuda11x")) if v), None
        ),
        "blas": _blas(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "cores": cores,
        "device": device,
        "platform": platform.platform(),
    }


__all__ = ["provenance"]
