"""Faults as one line a user can act on: what went wrong, where, and what to do.

The command line prints `error: <describe_error(e)>` for any exception (the
traceback only with --debug). The messages of our own checks (ValueError,
RunFolderError, FloatingPointError, ...) already name the setting or the file;
operating-system faults get the path and the remedy here."""

import errno
import functools
import math
import os
import sys

_REMEDY = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere (--out)",
    errno.EACCES: "permission denied: choose a folder you can write (--out) or fix its rights",
    errno.EPERM: "operation not permitted: choose a folder you can write (--out)",
    errno.EROFS: "the file system is read-only: write elsewhere (--out)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder where a file was expected",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "the path exists already",
}


def describe_error(e):
    """One line for the exception `e`."""
    if isinstance(e, OSError) and e.errno is not None:  # raised by the system
        where = e.filename if e.filename is not None else "(no path given)"
        if e.filename2 is not None:
            where = f"{where} -> {e.filename2}"
        return f"{where}: {_REMEDY.get(e.errno) or e.strerror or e}"
    if isinstance(e, MemoryError):
        return (
            "out of memory: the machine cannot hold this step; lower --batch-size (or "
            "--channels), or close other programs"
        )
    if isinstance(e, ValueError | RuntimeError | OSError | ArithmeticError):
        return " ".join(str(e).split())  # our own checks: the message names the setting
    return f"{type(e).__name__}: {e} (an internal error: run with --debug and report it)"


def one_error_line(main):
    """Wrap the main of a tool that `python -m minidarts TOOL` hands its command line
    to (bench): such a main runs outside the command line's own handler, so without this
    a fault of bad input (no CuPy for --device gpu, a failing reference) ends in a
    traceback where `search` prints one line. The wrapped main prints `error: ...` and
    returns 1 for what describe_error words as our own checks (ValueError, RuntimeError,
    OSError, ArithmeticError); MINIDARTS_DEBUG=1 shows the traceback instead. Other
    exceptions are bugs, and keep their traceback."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ValueError, RuntimeError, OSError, ArithmeticError) as e:
            if os.environ.get("MINIDARTS_DEBUG") == "1":
                raise
            print(f"error: {describe_error(e)}", file=sys.stderr)
            return 1

    return run


def check_finite(where, remedy, **values):
    """Raise FloatingPointError naming `where` (e.g. the epoch and lambda) and the
    first of `values` (numbers or arrays) that holds a NaN or inf."""
    from ..engine import backend

    for name, v in values.items():
        finite = (
            bool(backend.get_array_module(v).isfinite(v).all())
            if backend.is_array(v)
            else math.isfinite(v)
        )
        if not finite:
            shown = "not finite" if backend.is_array(v) else f"{v}"
            raise FloatingPointError(f"{where}: the {name.replace('_', ' ')} is {shown}; {remedy}")


__all__ = ["check_finite", "describe_error", "one_error_line"]
