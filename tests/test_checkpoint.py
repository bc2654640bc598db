"""Tests of checkpoint.py: exact round trips of nested state, no pickle, atomic writes,
clear errors for damaged files."""

import math
import os

import numpy as np
import pytest

from minidarts.engine.autograd import Tensor
from minidarts.jobs import checkpoint
from minidarts.jobs.checkpoint import load_checkpoint, save_checkpoint


def assert_same(a, b, where="state"):
    """Deep equality that also checks types and dtypes, arrays bit for bit."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            assert type(k) is type(list(b)[list(a).index(k)]), f"{where}: key type of {k!r}"
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"
        if isinstance(a, float):
            assert math.copysign(1.0, a) == math.copysign(1.0, b), where


def rich_state():
    rng = np.random.default_rng(123)
    bitgen = np.random.default_rng(7).bit_generator.state  # PCG64: 128-bit integers
    return {
        "format": "test-1",
        "epoch": 3,
        "floats": [0.1, 1 / 3, 1e-300, 2.5e300, -0.0, 5e-324, math.pi, math.inf, -math.inf],
        "nan": math.nan,
        "big": 2**127 + 12345,
        "negative_big": -(2**100),
        "bools": [True, False],
        "text": 'alpha ∂ "quoted" / slash',
        "nothing": None,
        "empty": {"list": [], "dict": {}, "tuple": ()},
        "tuple": (1, "two", 3.0, (4, None)),
        "rng": bitgen,
        "model": {
            "stem.0.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
            "stem.1.running_var": rng.random(4).astype(np.float64),
            "stem.1.num_batches_tracked": np.array(17, dtype=np.int64),
            "mask": rng.random((3, 2)) > 0.5,
            "pixels": rng.integers(0, 256, (2, 5), dtype=np.uint8),
            "half": rng.standard_normal(3).astype(np.float16),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        },
        "optimizer": {
            "state": {0: {"momentum_buffer": rng.standard_normal(5)}, 11: {"step": 4}},
            "param_groups": [{"lr": 0.025, "momentum": 0.9, "params": [0, 11]}],
        },
        "history": [{"epoch": 1, "alpha": {"normal": [[0.125, 0.875]]}}],
    }


def test_round_trip_is_exact(tmp_path):
    state = rich_state()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert_same(state, back)


def test_round_trip_restores_a_generator_exactly(tmp_path):
    rng = np.random.default_rng(2024)
    rng.standard_normal(10)
    save_checkpoint(tmp_path / "rng.npz", {"rng": rng.bit_generator.state})
    expected = rng.standard_normal(5)
    other = np.random.default_rng(0)
    other.bit_generator.state = load_checkpoint(tmp_path / "rng.npz")["rng"]
    assert np.array_equal(other.standard_normal(5), expected)


def test_tensors_and_numpy_scalars_are_saved_as_arrays(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_checkpoint(tmp_path / "t.npz", {"w": Tensor(w), "s": np.float32(1.5)})
    back = load_checkpoint(tmp_path / "t.npz")
    assert_same(w, back["w"])
    assert back["s"].dtype == np.float32 and back["s"].shape == () and back["s"] == 1.5


def test_loaded_arrays_are_independent_of_the_file(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"w": np.ones(3)})
    back = load_checkpoint(path)
    back["w"][0] = 5.0  # writable, and a plain ndarray (not a lazy NpzFile view)
    assert type(back["w"]) is np.ndarray
    assert load_checkpoint(path)["w"][0] == 1.0


def test_file_is_plain_npz_without_pickle(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, rich_state())
    with np.load(path, allow_pickle=False) as npz:  # readable with pickle forbidden
        for key in npz.files:
            assert npz[key].dtype != object


_RAN = []


def _record(message):
    _RAN.append(message)


class _Trap:
    """Unpickling this object runs _record: a stand-in for arbitrary code."""

    def __reduce__(self):
        return (_record, ("pickle code ran",))


def test_an_object_array_cannot_be_smuggled_in(tmp_path):
    path = tmp_path / "evil.npz"
    meta = np.frombuffer(b'{"__dict__": [["x", {"__array__": "x"}]]}', dtype=np.uint8)
    evil = np.empty(1, dtype=object)
    evil[0] = _Trap()
    np.savez(path, **{"__meta__.json": meta, "x": evil})  # numpy pickles object arrays
    _RAN.clear()
    with pytest.raises(ValueError, match="evil.npz"):
        load_checkpoint(path)
    assert _RAN == []
    # the file really carries code: loading it with pickle allowed runs it
    with np.load(path, allow_pickle=True) as npz:
        npz["x"]
    assert _RAN == ["pickle code ran"]
    _RAN.clear()


def test_saving_an_object_array_is_refused(tmp_path):
    path = tmp_path / "ck.npz"
    obj = np.array([{"a": 1}, None], dtype=object)
    with pytest.raises(TypeError, match="checkpoint.*object"):
        save_checkpoint(path, {"bad": obj})
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def _only(tmp_path):
    return sorted(os.listdir(tmp_path))


def test_unsaveable_state_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"epoch": 1, "w": np.arange(4.0)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"cannot save a object at 'model/bad'"):
        save_checkpoint(path, {"epoch": 2, "w": np.arange(4.0), "model": {"bad": object()}})
    assert path.read_bytes() == before
    assert _only(tmp_path) == ["checkpoint.npz"]
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_state_that_is_not_finite_is_refused_and_the_previous_kept(tmp_path, bad):
    """An overflowed state (Adam's squared gradients under a huge penalty) would resume
    as garbage: it is not written, and the last good checkpoint stays."""
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"epoch": 1, "w": np.arange(4.0, dtype=np.float32)})
    before = path.read_bytes()
    state = {"epoch": 2, "opt": {"exp_avg_sq": np.array([1.0, bad], np.float32)}}
    with pytest.raises(FloatingPointError, match=r"not written: opt/exp_avg_sq holds NaN or inf"):
        save_checkpoint(path, state)
    assert path.read_bytes() == before and _only(tmp_path) == ["checkpoint.npz"]
    # a search's parts name the setting behind them
    for part, setting in (("a_optimizer", "alpha_lr or the penalty"), ("w_optimizer", "w_lr")):
        state = {"epoch": 2, part: {"exp_avg_sq": np.array([1.0, bad], np.float32)}}
        with pytest.raises(FloatingPointError, match=f"holds NaN or inf .*too large: {setting}"):
            save_checkpoint(path, state)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_while_writing_leaves_previous_checkpoint_and_no_temp_file(
    tmp_path, monkeypatch, error
):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"epoch": 1, "w": np.arange(4.0)})
    before = path.read_bytes()
    real_savez = np.savez

    def savez_then_fail(file, **arrays):
        real_savez(file, **arrays)  # half of the work is on disk ...
        raise error  # ... and then the process is interrupted

    monkeypatch.setattr(checkpoint.backend.numpy, "savez", savez_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, {"epoch": 2, "w": np.arange(400.0)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _only(tmp_path) == ["checkpoint.npz"]


def test_save_creates_the_folder_and_overwrites(tmp_path):
    path = tmp_path / "a" / "b" / "ck.npz"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path) == {"epoch": 2}
    assert os.listdir(path.parent) == ["ck.npz"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, rich_state())
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 30):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match=r"checkpoint.*checkpoint\.npz.*(corrupt|unreadable)"):
            load_checkpoint(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.npz"):
        load_checkpoint(path)


def test_npz_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ValueError, match="other.npz.*not a minidarts checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "meta",
    [b"{not json", b'{"__dict__": [["w", {"__array__": "missing"}]]}', b"\xff\xfe"],
)
def test_damaged_metadata_is_a_clear_error(tmp_path, meta):
    path = tmp_path / "damaged.npz"
    np.savez(path, **{"__meta__.json": np.frombuffer(meta, dtype=np.uint8), "w": np.ones(2)})
    with pytest.raises(ValueError, match="damaged.npz"):
        load_checkpoint(path)


def test_an_array_the_index_lists_but_the_file_lacks_is_named(tmp_path):
    path = tmp_path / "cut.npz"
    meta = b'{"__dict__": [["w", {"__array__": "model/w"}]]}'
    np.savez(path, **{"__meta__.json": np.frombuffer(meta, dtype=np.uint8), "v": np.ones(2)})
    with pytest.raises(ValueError, match="cut.npz lacks the array 'model/w'"):
        load_checkpoint(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_checkpoint(tmp_path / "nowhere.npz")


def test_colliding_array_names_are_refused(tmp_path):
    # 'a/b' as a key and 'b' inside 'a' would both be stored as the entry 'a/b'
    state = {"a/b": np.zeros(2), "a": {"b": np.ones(2)}}
    with pytest.raises(ValueError, match="a/b"):
        save_checkpoint(tmp_path / "ck.npz", state)


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(TypeError, match="key"):
        save_checkpoint(tmp_path / "ck.npz", {(1, 2): 3})
