"""Checkpoints: everything a run needs to continue exactly, saved without pickle.

A checkpoint is one .npz file. Arrays (weights, alpha, optimiser moments) are
stored as arrays; everything else (epoch, RNG states, config, scheduler) as one
JSON document inside it. Nested state dicts are flattened: an array leaf at
state['w_opt']['state'][3]['momentum_buffer'] becomes the npz entry
'w_opt/state/3/momentum_buffer' and a placeholder in the JSON.

Loading uses allow_pickle=False, so a checkpoint can never run code. Writing goes
to a temporary file in the same folder, then os.replace() swaps it in: a crash
mid-write leaves the previous checkpoint intact.
"""

import json
import math
import os
import tempfile

from ..engine import backend
from .runfolder import TMP_PREFIX, file_mode

_META = "__meta__.json"


def _flatten(obj, prefix, arrays):
    """Replace array leaves by {'__array__': key} and collect them in `arrays`."""
    if backend.is_array(obj) or isinstance(obj, backend.numpy.generic):
        key = prefix or "value"
        array = backend.to_numpy(obj)
        if array.dtype.hasobject:  # numpy would pickle it, and loading refuses pickles
            raise TypeError(f"checkpoint: cannot save an object array at {prefix!r}")
        if key in arrays:  # e.g. the key 'a/b' and the key 'b' inside 'a'
            raise ValueError(f"checkpoint: two arrays would both be stored as {key!r}")
        arrays[key] = array
        return {"__array__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint: key {k!r} at {prefix!r} must be str or int")
        return {
            "__dict__": [
                [k, _flatten(v, f"{prefix}/{k}" if prefix else str(k), arrays)]
                for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        items = [
            _flatten(v, f"{prefix}/{i}" if prefix else str(i), arrays) for i, v in enumerate(obj)
        ]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "data") and backend.is_array(obj.data):  # a Tensor
        return _flatten(obj.data, prefix, arrays)
    raise TypeError(f"checkpoint: cannot save a {type(obj).__name__} at {prefix!r}")


class _MissingArray(KeyError):
    """An array the index names that the archive lacks (load_checkpoint names it)."""


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            if obj["__array__"] not in arrays:
                raise _MissingArray(obj["__array__"])
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, arrays) for v in obj["__tuple__"])
        return {k: _unflatten(v, arrays) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _kind(v):
    if isinstance(v, bool) or (backend.is_array(v) and v.dtype == bool and v.ndim == 0):
        return "bool"
    if isinstance(v, int) or (backend.is_array(v) and v.ndim == 0 and v.dtype.kind in "iu"):
        return "int"
    if isinstance(v, float) or (backend.is_array(v) and v.ndim == 0 and v.dtype.kind == "f"):
        return "float"
    if v is None:
        return "None"
    return type(v).__name__


def check_like(template, state, where):
    """Check a loaded state against the state the run would save now (`template`):
    the same keys, arrays of the same shape and dtype, numbers of the same kind. Raises
    ValueError naming the first key that differs, before anything is loaded."""
    if backend.is_array(template) and template.ndim > 0:
        if not backend.is_array(state):
            raise ValueError(
                f"{where}: expected an array of shape {template.shape}, got {_kind(state)}"
            )
        if tuple(state.shape) != tuple(template.shape) or state.dtype != template.dtype:
            raise ValueError(
                f"{where}: an array of shape {tuple(state.shape)} and dtype {state.dtype}, "
                f"where the run has {tuple(template.shape)} {template.dtype}"
            )
        return
    if isinstance(template, dict):
        if not isinstance(state, dict):
            raise ValueError(f"{where}: expected a mapping, got {_kind(state)}")
        # keys compared as text: a checkpoint's JSON turns integer keys into strings
        have, want = {str(j) for j in state}, {str(j) for j in template}
        missing = [k for k in template if str(k) not in have]
        extra = [k for k in state if str(k) not in want]
        if missing or extra:
            raise ValueError(
                f"{where}: keys differ (missing {missing[:5]}, unexpected {extra[:5]})"
            )
        by_name = {str(k): v for k, v in state.items()}
        for k, v in template.items():
            check_like(v, by_name[str(k)], f"{where}/{k}")
        return
    if isinstance(template, list | tuple):
        if not isinstance(state, list | tuple) or len(state) != len(template):
            raise ValueError(f"{where}: expected a list of {len(template)} entries")
        for i, (t, v) in enumerate(zip(template, state)):
            check_like(t, v, f"{where}/{i}")
        return
    kind, got = _kind(template), _kind(state)
    if kind != got and not (kind == "float" and got == "int"):
        raise ValueError(f"{where}: expected {kind}, got {got} ({state!r})")


def check_format(state, expected, what):
    """Refuse a checkpoint of another kind or format version, naming both."""
    found = state.get("format") if isinstance(state, dict) else None
    if found != expected:
        raise ValueError(
            f"not a checkpoint this version can continue: its format is {found!r}, a {what} "
            f"run of this minidarts writes {expected!r}"
        )


def check_state(run, state, keys):
    """Check a run's checkpoint whole before loading any of it: `keys` against the
    state the run would save now (check_like), the epoch against the history and
    the config, the optimisers' and batches' states by their own loaders' rules."""
    template = run.state_dict()
    for key in ("epoch", "history", *keys):
        if key not in state:
            raise ValueError(f"checkpoint: the key {key!r} is missing")
    for key in keys:
        check_like(template[key], state[key], f"checkpoint: {key}")
    epoch = state["epoch"]
    if _kind(epoch) != "int" or not 0 <= int(epoch) <= run.cfg.epochs:
        raise ValueError(f"checkpoint: epoch {epoch!r} is not in [0, {run.cfg.epochs}]")
    if not isinstance(state["history"], list) or len(state["history"]) != int(epoch):
        raise ValueError(
            f"checkpoint: history holds {len(state['history'])} records for epoch {int(epoch)}"
        )
    bad = _first_non_finite(state, "")
    if bad is not None:
        # a run never saves one (save_checkpoint refuses it, the epochs' checks stop the
        # run): resumed, it would stop as a diverged run blamed on the learning rates
        raise ValueError(
            f"checkpoint: {bad} holds NaN or inf, which no run saves: the file was damaged "
            "or edited; resume from another copy or start again"
        )


def load_checked(run, state, path):
    """run.load_state_dict(state), any fault in the state reported as one ValueError
    that names the checkpoint file and the key."""
    try:
        run.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(
            f"{path}: a damaged or incomplete state ({type(e).__name__}: {e}); the run "
            "cannot continue from it"
        ) from None


def save_checkpoint(path, state):
    """Write the nested dict `state` (arrays, numbers, strings, lists) to `path`
    atomically."""
    arrays = {}
    tree = _flatten(state, "", arrays)
    if _META in arrays:
        raise ValueError(f"checkpoint: {_META} is a reserved name")
    for key, a in arrays.items():
        # a state that overflowed (Adam's squared gradients under a huge penalty, batch
        # norm's variances of images scaled by a tiny data_std) would resume as garbage:
        # refuse it, and the checkpoint before it stays
        if a.dtype.kind in "fc" and not backend.numpy.isfinite(a).all():
            part = _SETTING.get(key.split("/")[0], "a setting too large or too small for float32")
            raise FloatingPointError(
                f"checkpoint {path} not written: {key} holds NaN or inf ({part}?); any "
                "earlier checkpoint is kept"
            )
    meta = backend.numpy.frombuffer(json.dumps(tree).encode(), dtype=backend.numpy.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            backend.numpy.savez(f, **{_META: meta}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; a saved file is 0666 & ~umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# the setting behind each part of a run's state, for the message when it overflowed
_ARCHITECTURE = "the architecture's steps too large: alpha_lr or the penalty"
_SETTING = {
    "a_optimizer": _ARCHITECTURE,
    "alphas": _ARCHITECTURE,
    "hypernet": _ARCHITECTURE,
    "w_optimizer": "the weights' steps too large: w_lr",
    "optimizer": "the steps too large: lr",
}


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint (NumPy arrays, no pickle)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise ValueError(
                f"checkpoint {path} is unreadable or corrupt: not an .npz archive (a "
                "minidarts checkpoint is one)"
            )
    try:
        with backend.numpy.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, ...
        raise ValueError(f"checkpoint {path} is unreadable or corrupt: {e}") from None
    if _META not in arrays:
        raise ValueError(f"checkpoint {path} has no {_META}: not a minidarts checkpoint")
    try:
        tree = json.loads(arrays.pop(_META).tobytes().decode())
        state = _unflatten(tree, arrays)
    except _MissingArray as e:
        raise ValueError(
            f"checkpoint {path} lacks the array {e.args[0]!r} that its {_META} lists: the "
            "file was damaged or edited"
        ) from None
    except (ValueError, KeyError, TypeError) as e:  # bad UTF-8 / JSON, a damaged index
        raise ValueError(f"checkpoint {path} has a damaged {_META}: {e!r}") from None
    return state


def _first_non_finite(obj, where):
    """The key of the first NaN or inf in a loaded state (arrays and numbers), or None."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    elif isinstance(obj, float):
        return None if math.isfinite(obj) else where
    elif backend.is_array(obj) and obj.dtype.kind in "fc":
        return None if backend.numpy.isfinite(obj).all() else where
    else:
        return None
    for k, v in items:
        bad = _first_non_finite(v, f"{where}/{k}" if where else str(k))
        if bad is not None:
            return bad
    return None
