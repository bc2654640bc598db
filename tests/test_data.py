"""Tests of minidarts.jobs.data: the IDX parser, its error messages, the shipped MNIST files,
the seeded search split and the resumable batch iterator.

Corrupt files are small synthetic IDX files written to tmp_path by `write_idx` below (an
independent writer, so a parser bug cannot hide behind a matching writer bug); the real
MNIST files are parsed once per module.
"""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from minidarts.engine import backend
from minidarts.jobs import data, idx
from minidarts.jobs.data import Batches, MNISTError

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(array, magic=None):
    """The IDX encoding of `array`: zero, zero, type byte, ndim, big-endian dims, payload."""
    array = np.asarray(array)
    if magic is None:
        magic = (IDX_CODES[array.dtype] << 8) | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array=None, raw=None, compress=True):
    """Write `array` (or the bytes `raw`) to `path`, gzip-compressed unless told not to."""
    payload = idx_bytes(array) if raw is None else raw
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def small_mnist(n=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def write_folder(folder, n_train=12, n_test=6, checksums=False):
    """A user's MNIST folder with all four files (optionally with SHA256SUMS)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = small_mnist(n, seed)
        image_stem, label_stem = idx.FILES[split]
        write_idx(folder / (image_stem + ".gz"), images)
        write_idx(folder / (label_stem + ".gz"), labels)
        arrays[split] = (images, labels)
    if checksums:
        lines = [
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
            for p in sorted(folder.glob("*.gz"))
        ]
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return arrays


@pytest.fixture(scope="module")
def mnist():
    """The shipped MNIST, parsed once: {'train': (images, labels), 'test': (...)}."""
    idx.clear_cache()
    return {split: idx.load_mnist(split=split) for split in idx.SPLITS}


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_small_idx(tmp_path, compress):
    images, labels = small_mnist()
    ip = write_idx(tmp_path / "img", images, compress=compress)
    lp = write_idx(tmp_path / "lab", labels, compress=compress)
    got_images, got_labels = idx.read_images(ip), idx.read_labels(lp)
    assert got_images.dtype == np.uint8 and got_images.shape == (12, 28, 28)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_generic_idx_multibyte_types(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "a.gz", a)), a)
    f = np.linspace(-1, 1, 5, dtype=np.float32)
    np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "f", f, compress=False)), f)


def test_wrong_magic(tmp_path):
    images, labels = small_mnist()
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", labels)  # a labels file
    with pytest.raises(
        MNISTError, match=r"train-images.*wrong magic number 0x00000801.*0x00000803"
    ):
        idx.read_images(path)
    path = write_idx(tmp_path / "x.gz", raw=b"\x1f\x8b\x08\x03" + bytes(20))
    with pytest.raises(MNISTError, match="not an IDX file.*two zero bytes"):
        idx.read_idx(path)


def test_wrong_dtype_byte(tmp_path):
    images, _ = small_mnist()
    path = write_idx(tmp_path / "i.gz", images.astype(np.int32))
    with pytest.raises(MNISTError, match=r"wrong magic number 0x00000C03.*0x00000803"):
        idx.read_images(path)
    path = write_idx(tmp_path / "j.gz", raw=b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(MNISTError, match="unknown IDX element type 0x07"):
        idx.read_idx(path)


def test_wrong_dims(tmp_path):
    images, _ = small_mnist()
    path = write_idx(tmp_path / "flat.gz", images.reshape(12, 784))
    with pytest.raises(MNISTError, match=r"wrong magic number 0x00000802.*3 dimensions"):
        idx.read_images(path)
    path = write_idx(tmp_path / "small.gz", images[:, :27, :28].copy())
    with pytest.raises(MNISTError, match=r"images are 27x28, expected 28x28"):
        idx.read_images(path)


def test_truncated_payload(tmp_path):
    images, _ = small_mnist()
    raw = idx_bytes(images)
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", raw=raw[:-100])
    msg = r"truncated: header says 12 images of 28x28 = 9408 bytes, file holds 9308"
    with pytest.raises(MNISTError, match=msg):
        idx.read_images(path)
    path = write_idx(tmp_path / "h.gz", raw=raw[:10])
    with pytest.raises(MNISTError, match="truncated header"):
        idx.read_images(path)


def test_trailing_bytes(tmp_path):
    _, labels = small_mnist()
    path = write_idx(tmp_path / "l", raw=idx_bytes(labels) + b"\x00\x01", compress=False)
    with pytest.raises(MNISTError, match=r"trailing bytes: header says 12 labels = 12 bytes"):
        idx.read_labels(path)


def test_corrupt_gzip(tmp_path):
    images, _ = small_mnist()
    good = gzip.compress(idx_bytes(images))
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    cut = good[: len(good) // 2]
    for name, blob in (("damaged.gz", bytes(damaged)), ("cut.gz", cut)):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(MNISTError, match=f"{name}: corrupt gzip stream"):
            idx.read_images(tmp_path / name)
    (tmp_path / "plain.gz").write_bytes(idx_bytes(images))
    with pytest.raises(MNISTError, match="not gzip-compressed"):
        idx.read_images(tmp_path / "plain.gz")
    (tmp_path / "empty.gz").write_bytes(b"")
    with pytest.raises(MNISTError, match="empty.gz: the file is empty"):
        idx.read_images(tmp_path / "empty.gz")


def test_label_out_of_range(tmp_path):
    _, labels = small_mnist()
    labels[5] = 12
    path = write_idx(tmp_path / "labels.gz", labels)
    with pytest.raises(MNISTError, match=r"1 labels outside 0..9 \(first: 12 at index 5\)"):
        idx.read_labels(path)


def test_count_mismatch(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", small_mnist(11)[1])
    with pytest.raises(MNISTError, match="holds 12 images but .* holds 11 labels"):
        idx.load_mnist(tmp_path)


def test_checksum_mismatch(tmp_path):
    write_folder(tmp_path, checksums=True)
    idx.load_mnist(tmp_path, "test")  # intact files load
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    expected = hashlib.sha256(bad.read_bytes()).hexdigest()
    write_idx(bad, small_mnist(12, seed=5)[0])  # structurally fine, different content
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    msg = f"train-images-idx3-ubyte.gz: SHA-256 mismatch: expected {expected}.*actual {actual}"
    with pytest.raises(MNISTError, match=msg):
        idx.load_mnist(tmp_path, "train")
    images, _ = idx.load_mnist(tmp_path, "train", verify=False)  # opt-out for speed
    assert images.shape == (12, 28, 28)


def test_checksum_checked_after_cached_unverified(tmp_path):
    write_folder(tmp_path, checksums=True)
    sums = tmp_path / "SHA256SUMS"
    wrong = "f" * 64
    lines = [
        f"{wrong}  {line.split()[1]}" if "train-labels" in line else line
        for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")
    idx.load_mnist(tmp_path, "train", verify=False)  # cached without verification
    with pytest.raises(
        MNISTError, match=f"train-labels-idx1-ubyte.gz: SHA-256 mismatch: expected {wrong}"
    ):
        idx.load_mnist(tmp_path, "train")  # asking for verification later still checks


def test_a_file_the_checksums_do_not_list_says_what_to_do(tmp_path):
    """The remedy names what a command-line user can do, not only the Python option."""
    write_folder(tmp_path, checksums=True)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("".join(s + "\n" for s in sums.read_text().splitlines() if "train-la" not in s))
    with pytest.raises(MNISTError, match=r"not listed in .*SHA256SUMS; add its digest there"):
        idx.load_mnist(tmp_path, "train")


def test_missing_file(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MNISTError) as info:
        idx.load_mnist(tmp_path, "test")
    msg = str(info.value)
    assert "not found" in msg and str(tmp_path / "t10k-labels-idx1-ubyte.gz") in msg
    assert str(idx.SHIPPED_ROOT) in msg and "MINIDARTS_DATA" in msg
    with pytest.raises(MNISTError, match="not found.*ships all four files"):
        idx.load_mnist(tmp_path / "nowhere")
    with pytest.raises(MNISTError, match="file not found"):
        idx.read_images(tmp_path / "nothing.gz")


def test_user_folder_without_checksums(tmp_path, monkeypatch):
    arrays = write_folder(tmp_path / "mine")
    for split in idx.SPLITS:
        images, labels = idx.load_mnist(tmp_path / "mine", split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
    # Also found through the environment variable, and uncompressed files work too.
    plain = tmp_path / "plain"
    plain.mkdir()
    for split in idx.SPLITS:
        for stem, array in zip(idx.FILES[split], arrays[split]):
            write_idx(plain / stem, array, compress=False)
    monkeypatch.setenv("MINIDARTS_DATA", str(plain))
    train, val = data.search_split(seed=0)
    assert len(train) == len(val) == 6
    np.testing.assert_array_equal(data.test_set().labels, arrays["test"][1])
    # Structural checks still apply without SHA256SUMS.
    write_idx(plain / "t10k-images-idx3-ubyte", raw=idx_bytes(arrays["test"][0])[:-1])
    idx.clear_cache()
    with pytest.raises(MNISTError, match="truncated"):
        data.test_set()


def test_bad_arguments():
    with pytest.raises(MNISTError, match="split must be one of"):
        idx.load_mnist(split="validation")
    with pytest.raises(ValueError, match=r"normalize: expected images of shape \(N, 28, 28\)"):
        idx.normalize(np.zeros((2, 784), np.uint8))


# --------------------------------------------------------------------------- real MNIST


def test_real_mnist_shapes_and_labels(mnist):
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = mnist[split]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert counts.min() > n // 12  # every digit is well represented
        assert images.max() == 255 and images.min() == 0
    assert idx.load_mnist(split="train")[0] is mnist["train"][0]  # cached in memory
    with pytest.raises(ValueError):
        mnist["train"][0][0, 0, 0] = 1  # the cache is read-only


def test_real_mnist_checksums_verified():
    for name, digest in idx.read_checksums(idx.SHIPPED_ROOT / "SHA256SUMS").items():
        assert idx.verify_checksum(idx.SHIPPED_ROOT / name)
        assert idx.sha256_file(idx.SHIPPED_ROOT / name) == digest
    assert len(idx.read_checksums(idx.SHIPPED_ROOT / "SHA256SUMS")) == 4


def test_real_mnist_normalised_statistics(mnist):
    x = idx.normalize(mnist["train"][0])
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert abs(float(x.mean(dtype=np.float64))) < 0.01
    assert abs(float(x.std(dtype=np.float64)) - 1.0) < 0.01
    np.testing.assert_allclose(x[0, 0], (mnist["train"][0][0] / 255 - 0.1307) / 0.3081, atol=1e-5)


# --------------------------------------------------------------------------- splits


def test_search_split_deterministic_disjoint_covering(mnist):
    train, val = data.search_split(seed=3)
    again_train, again_val = data.search_split(seed=3)
    other_train, _ = data.search_split(seed=4)
    assert len(train) == len(val) == 30000
    np.testing.assert_array_equal(train.indices, again_train.indices)
    np.testing.assert_array_equal(val.indices, again_val.indices)
    assert not np.intersect1d(train.indices, val.indices).size
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train.indices, val.indices])), np.arange(60000)
    )
    assert not np.array_equal(train.indices, other_train.indices)
    np.testing.assert_array_equal(train.labels, mnist["train"][1][train.indices])
    # Both halves hold every digit in roughly equal shares (it is a random split).
    counts = np.bincount(train.labels, minlength=10)
    assert counts.min() > 2500


def test_search_split_subset_sizes():
    for subset, sizes in ((1000, (500, 500)), (7, (3, 4)), (2, (1, 1)), (60000, (30000, 30000))):
        train, val = data.search_split(seed=0, subset=subset)
        assert (len(train), len(val)) == sizes
        assert not np.intersect1d(train.indices, val.indices).size
    small_train, _ = data.search_split(seed=0, subset=1000)
    perm = backend.default_rng(0).permutation(60000)
    np.testing.assert_array_equal(small_train.indices, perm[:500])
    for bad in (0, -5, 1, 60001, 2.5, "100", True):
        with pytest.raises(MNISTError, match="subset"):
            data.search_split(seed=0, subset=bad)


def test_test_and_full_train_sets(mnist):
    test = data.test_set()
    assert len(test) == 10000
    np.testing.assert_array_equal(test.labels, mnist["test"][1])
    assert len(data.test_set(subset=100)) == 100
    full = data.full_train_set()
    assert len(full) == 60000
    np.testing.assert_array_equal(full.indices, np.arange(60000))
    part = data.full_train_set(subset=10, seed=1)
    np.testing.assert_array_equal(part.indices, backend.default_rng(1).permutation(60000)[:10])
    with pytest.raises(MNISTError, match=r"subset=10001 is out of range, expected 1..10000"):
        data.test_set(subset=10001)


# --------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def small_set(mnist):
    return data.search_split(seed=0, subset=202)[0]  # 101 examples


def collect(batches, n=None):
    out = []
    for x, y in batches:
        out.append((x.copy(), y.copy()))
        if n is not None and len(out) == n:
            break
    return out


def test_batches_shapes_len_and_last_partial(small_set):
    b = Batches(small_set, 10, shuffle=True, seed=1)
    assert len(b) == 11
    got = collect(b)
    assert len(got) == 11
    assert [len(y) for _, y in got] == [10] * 10 + [1]
    x, y = got[0]
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    # One epoch visits every example exactly once, with the right label and pixels.
    ys = np.concatenate([y for _, y in got])
    np.testing.assert_array_equal(np.sort(ys), np.sort(small_set.labels))
    order = b.order(0)
    np.testing.assert_array_equal(got[0][0], idx.normalize(small_set.images[order[:10]]))
    assert b.epoch == 1 and b.position == 0
    dropped = Batches(small_set, 10, seed=1, drop_last=True)
    assert len(dropped) == 10 and [len(y) for _, y in collect(dropped)] == [10] * 10
    assert len(Batches(small_set, 101)) == 1 and len(Batches(small_set, 500)) == 1
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Batches(small_set, 0)
    with pytest.raises(ValueError, match="drop_last=True gives no batches"):
        Batches(small_set, 500, drop_last=True)


def test_batches_deterministic_and_epoch_dependent(small_set):
    a, b = Batches(small_set, 16, seed=7), Batches(small_set, 16, seed=7)
    first_a, first_b = collect(a), collect(b)
    for (xa, ya), (xb, yb) in zip(first_a, first_b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    second_a = collect(a)  # epoch 1 is shuffled differently from epoch 0
    assert not np.array_equal(a.order(0), a.order(1))
    assert not np.array_equal(first_a[0][1], second_a[0][1]) or not np.array_equal(
        first_a[0][0], second_a[0][0]
    )
    other = Batches(small_set, 16, seed=8)
    assert not np.array_equal(other.order(0), a.order(0))
    plain = Batches(small_set, 16, shuffle=False)
    np.testing.assert_array_equal(collect(plain)[0][1], small_set.labels[:16])
    np.testing.assert_array_equal(plain.order(3), np.arange(101))


def test_batches_resume_mid_epoch(small_set, tmp_path):
    reference = Batches(small_set, 8, seed=5)
    expected = collect(reference) + collect(reference)  # two uninterrupted epochs

    run = Batches(small_set, 8, seed=5)
    taken = collect(run, n=4)  # stop mid-epoch 0
    state = run.state_dict()
    assert state["epoch"] == 0 and state["position"] == 4
    assert all(type(v) is int for v in state.values())
    np.savez(tmp_path / "ckpt.npz", **state)  # checkpoints are saved without pickle
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    resumed = Batches(small_set, 8, seed=5)
    resumed.load_state_dict(loaded)
    got = taken + collect(resumed) + collect(resumed)
    assert len(got) == len(expected) == 26
    for (xg, yg), (xe, ye) in zip(got, expected):
        np.testing.assert_array_equal(xg, xe)
        np.testing.assert_array_equal(yg, ye)

    wrong = Batches(small_set, 8, seed=6)
    with pytest.raises(ValueError, match="saved seed=5 but this loader has seed=6"):
        wrong.load_state_dict(state)
    other_data = Batches(data.search_split(seed=1, subset=202)[0], 8, seed=5)
    with pytest.raises(ValueError, match="fingerprint"):
        other_data.load_state_dict(state)


def test_paired_batches_for_darts(small_set):
    val_set = data.search_split(seed=0, subset=202)[1]  # 101 examples, disjoint
    train, val = Batches(small_set, 16, seed=1), Batches(val_set, 32, seed=2)
    pairs = list(data.paired_batches(train, val))
    assert len(pairs) == len(train) == 7  # one train epoch; val (4 batches) rolls over
    assert train.epoch == 1 and (val.epoch, val.position) == (1, 3)
    reference = Batches(val_set, 32, seed=2)
    expected_val = collect(reference) + collect(reference, n=3)
    expected_train = collect(Batches(small_set, 16, seed=1))
    for ((xt, yt), (xv, yv)), (xe, ye), (xte, yte) in zip(pairs, expected_val, expected_train):
        np.testing.assert_array_equal(xt, xte)
        np.testing.assert_array_equal(yt, yte)
        np.testing.assert_array_equal(xv, xe)
        np.testing.assert_array_equal(yv, ye)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_batches_on_gpu(small_set):
    b = Batches(small_set, 10, seed=1, device="gpu")
    x, y = next(iter(b))
    ref_x, ref_y = Batches(small_set, 10, seed=1).next_batch()
    assert backend.device_of(x) == "gpu" and backend.device_of(y) == "gpu"
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(backend.to_numpy(x), ref_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(y), ref_y)
