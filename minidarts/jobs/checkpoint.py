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
import os
import tempfile

from ..engine import backend

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


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, arrays) for v in obj["__tuple__"])
        return {k: _unflatten(v, arrays) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def save_checkpoint(path, state):
    """Write the nested dict `state` (arrays, numbers, strings, lists) to `path`
    atomically."""
    arrays = {}
    tree = _flatten(state, "", arrays)
    if _META in arrays:
        raise ValueError(f"checkpoint: {_META} is a reserved name")
    meta = backend.numpy.frombuffer(json.dumps(tree).encode(), dtype=backend.numpy.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            backend.numpy.savez(f, **{_META: meta}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint (NumPy arrays, no pickle)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with backend.numpy.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, ...
        raise ValueError(f"checkpoint {path} is unreadable or corrupt: {e}") from None
    if _META not in arrays:
        raise ValueError(f"checkpoint {path} has no {_META}: not a minidarts checkpoint")
    try:
        tree = json.loads(arrays.pop(_META).tobytes().decode())
        return _unflatten(tree, arrays)
    except (ValueError, KeyError, TypeError) as e:  # bad UTF-8 / JSON, a missing array
        raise ValueError(f"checkpoint {path} has a damaged {_META}: {e!r}") from None
