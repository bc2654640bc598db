"""MNIST for minidarts: datasets, the search split and batches.

Reading and checking the files: idx.py.

Normalisation and splits
------------------------
Images are fed to the network as float32 with the usual MNIST statistics
(mean 0.1307, std 0.3081 of the training pixels in [0, 1]):

    x = (pixel / 255 - 0.1307) / 0.3081,      shape (N, 1, 28, 28)

DARTS (Liu et al., 2019) searches on two halves of the training set: the weights w are trained
on one half (search-train), the architecture parameters alpha on the other (search-validation).
:func:`search_split` draws that 50/50 split from a seeded permutation of the 60000 training
images; the 10000 test images are never used in the search (:func:`test_set`).
:func:`full_train_set` is the whole training set, for retraining the found architecture.

Batches
-------
:class:`Batches` yields (x, y) mini-batches; epoch e is shuffled with a permutation drawn from
the seed pair (seed, e), so the order depends only on (seed, epoch, position). Its
``state_dict()`` (plain ints) lets a resumed search see exactly the batches an uninterrupted
one would. :func:`paired_batches` walks a train and a validation loader side by side, as the
DARTS search step needs one batch of each.

Other data: :func:`array_dataset` builds a Dataset from arrays of your own (any
channels, size and number of classes), and the IDX files of other MNIST-shaped sets
(Fashion-MNIST) load from their folder (`--data`), with their own mean and std.

Example::

    train, val = search_split(seed=0, subset=10000)
    train_loader = Batches(train, 64, shuffle=True, seed=1)
    val_loader = Batches(val, 64, shuffle=True, seed=2)
    for (x, y), (x_val, y_val) in paired_batches(train_loader, val_loader):
        ...
"""

import hashlib

from ..engine import backend
from .idx import IMAGE_SIZE, MEAN, NUM_CLASSES, STD, MNISTError, load_mnist, normalize

_np = backend.numpy


# --------------------------------------------------------------------------- datasets


class Dataset:
    """A selection of examples: ``images[indices]`` and ``labels[indices]``.

    Holds the source arrays and the selected positions (no copy of the pixels);
    :meth:`batch` gathers and normalises examples on demand. ``indices`` are positions in
    the source split (0..59999 for MNIST's train), so two datasets can be compared for
    overlap. Images are (N, H, W) (one channel, MNIST's IDX files) or (N, C, H, W),
    uint8 pixels (divided by 255) or floats; normalised per channel as
    x = (pixel - mean_c) / std_c, by default with MNIST's statistics. Build one from
    arrays of your own with :func:`array_dataset`, which checks them.
    """

    def __init__(
        self, images, labels, indices=None, name="mnist", mean=None, std=None, num_classes=None
    ):
        if len(images) != len(labels):
            raise ValueError(
                f"Dataset: {len(images)} images but {len(labels)} labels, expected equal counts"
            )
        self.name = name
        self.source_images = images
        self.source_labels = labels
        if indices is None:
            indices = _np.arange(len(images), dtype=backend.int64)
        self.indices = _np.asarray(indices, dtype=backend.int64)
        self.indices.flags.writeable = False
        self.num_classes = NUM_CLASSES if num_classes is None else int(num_classes)
        self.set_normalisation(mean, std)

    def set_normalisation(self, mean=None, std=None):
        """Per-channel statistics of the pixels (in [0, 1] for uint8 images): numbers or
        one per channel; None keeps MNIST's (0.1307, 0.3081)."""
        c = self.channels
        stats = []
        for what, v, default in (("mean", mean, MEAN), ("std", std, STD)):
            v = [default] * c if v is None else v
            v = [float(v)] * c if isinstance(v, int | float) else [float(u) for u in v]
            if len(v) != c or not all(_np.isfinite(v)):
                raise ValueError(f"{self.name}: {what} needs {c} finite values, got {v}")
            stats.append(v)
        if min(stats[1]) <= 0:
            raise ValueError(f"{self.name}: std must be positive, got {stats[1]}")
        self.mean, self.std = stats
        self._mnist_stats = self.mean == [MEAN] and self.std == [STD]

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"Dataset({self.name!r}, {len(self)} examples of shape {self.image_shape})"

    @property
    def channels(self):
        return 1 if self.source_images.ndim == 3 else int(self.source_images.shape[1])

    @property
    def image_shape(self):
        """(C, H, W) of one network input."""
        return (self.channels, *self.source_images.shape[-2:])

    @property
    def images(self):
        """The pixels of the selected examples (a copy), as stored."""
        return self.source_images[self.indices]

    @property
    def labels(self):
        """int64 (N,) labels of the selected examples (a copy)."""
        return self.source_labels[self.indices]

    def _normalise(self, raw):
        if self._mnist_stats and raw.ndim == 3 and raw.dtype == _np.uint8:
            if raw.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
                return normalize(raw)  # MNIST's exact arithmetic, as ever
        xp = backend.get_array_module(raw)
        x = raw.astype(backend.float32)
        if raw.dtype == _np.uint8:
            x *= 1.0 / 255.0
        x = xp.reshape(x, (x.shape[0], *self.image_shape))
        mean = xp.asarray(self.mean, dtype=backend.float32).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=backend.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def batch(self, positions, device=None):
        """Examples at `positions` (0..len-1) as (x float32 (B, C, H, W), y int64 (B,)).

        With `device` ('cpu'/'gpu') the arrays are created there; the pixels are moved
        before normalising, which sends 4x fewer bytes of uint8 to the GPU.
        """
        rows = self.indices[positions]
        raw, y = self.source_images[rows], self.source_labels[rows]
        if device is None:
            return self._normalise(raw), y
        return (
            self._normalise(backend.asarray(raw, device=device)),
            backend.asarray(y, dtype=backend.int64, device=device),
        )

    def arrays(self, device=None):
        """All examples as (x, y), normalised (see :meth:`batch`)."""
        return self.batch(_np.arange(len(self)), device=device)

    def fingerprint(self):
        """A 63-bit integer identifying the selected indices (to match checkpoints to data)."""
        digest = hashlib.sha256(_np.ascontiguousarray(self.indices).tobytes()).digest()
        return int.from_bytes(digest[:8], "big") >> 1


def array_dataset(images, labels, mean=None, std=None, num_classes=None, name="arrays"):
    """A Dataset of your own arrays, checked: images (N, H, W) or (N, C, H, W), uint8
    pixels or finite floats; labels (N,) integers in [0, num_classes) (default: the
    largest label + 1). mean, std: per-channel statistics of the pixels (in [0, 1] for
    uint8); None computes them from these images. Any fault raises a ValueError that
    names the array and what was expected."""
    images = _np.asarray(images)
    labels = _np.asarray(labels)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(
            f"{name}: images must be (N, H, W) or (N, C, H, W) with N >= 1, got shape "
            f"{images.shape}"
        )
    if images.dtype != _np.uint8 and images.dtype.kind != "f":
        raise ValueError(f"{name}: images must be uint8 or floating, got {images.dtype}")
    if images.dtype.kind == "f" and not _np.isfinite(images).all():
        raise ValueError(f"{name}: images hold NaN or inf")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: labels must be {len(images)} integers (one per image), got shape "
            f"{labels.shape} of {labels.dtype}"
        )
    classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.min() < 0 or labels.max() >= classes or classes < 2:
        raise ValueError(
            f"{name}: labels must lie in [0, {classes}) with at least 2 classes, got "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    if mean is None or std is None:
        x = images.astype(_np.float64) / (255.0 if images.dtype == _np.uint8 else 1.0)
        axes = (0, 1, 2) if x.ndim == 3 else (0, 2, 3)
        mean = x.mean(axis=axes).reshape(-1).tolist() if mean is None else mean
        std = (x.std(axis=axes).reshape(-1) + 1e-8).tolist() if std is None else std
    return Dataset(
        images, labels.astype(backend.int64), name=name, mean=mean, std=std, num_classes=classes
    )


def check_pair(datasets, first="train", second="validation"):
    """Two Datasets of the same image shape and classes, as given to Search or Train."""
    if not isinstance(datasets, (list, tuple)) or len(datasets) != 2:
        raise ValueError(f"datasets must be a pair ({first}, {second}) of Datasets")
    a, b = datasets
    for name, ds in ((first, a), (second, b)):
        if not isinstance(ds, Dataset) or len(ds) == 0:
            raise ValueError(f"datasets: the {name} set must be a non-empty Dataset, got {ds!r}")
    if a.image_shape != b.image_shape or a.num_classes != b.num_classes:
        raise ValueError(
            f"datasets: the {first} images are {a.image_shape} in {a.num_classes} classes, "
            f"the {second} images {b.image_shape} in {b.num_classes}"
        )
    return a, b


def _check_subset(subset, available, what):
    """Validate a `subset` size: a positive int no larger than the set it is drawn from."""
    if subset is None:
        return available
    if isinstance(subset, bool) or not isinstance(subset, int | _np.integer):
        raise MNISTError(f"{what}: subset must be a positive int, got {subset!r}")
    if not 1 <= subset <= available:
        raise MNISTError(
            f"{what}: subset={subset} is out of range, expected 1..{available} "
            f"(the number of images available)"
        )
    return int(subset)


def search_split(seed, subset=None, root=None, verify=True):
    """The DARTS search split of the training set: (search_train, search_val) Datasets.

    p = permutation(N) from backend.default_rng(seed), N = 60000 (or `subset` images:
    the first `subset` entries of p); search_train = p[:n // 2], search_val = p[n // 2 : n]
    (for odd n the validation half has the extra image). Disjoint, together covering the
    n selected images, and identical for the same seed. The test set is not touched.
    """
    images, labels = load_mnist(root, "train", verify=verify)
    n = _check_subset(subset, len(images), "search_split")
    if n < 2:
        raise MNISTError(
            f"search_split: subset={n} cannot be split 50/50 with at least one image on each "
            "side, expected subset >= 2"
        )
    order = backend.default_rng(seed).permutation(len(images))[:n]
    half = n // 2
    return (
        Dataset(images, labels, order[:half], name=f"search-train(seed={seed})"),
        Dataset(images, labels, order[half:], name=f"search-val(seed={seed})"),
    )


def full_train_set(root=None, subset=None, seed=0, verify=True):
    """All 60000 training images in file order (for retraining), or `subset` of them:
    the first `subset` entries of the permutation from backend.default_rng(seed)."""
    images, labels = load_mnist(root, "train", verify=verify)
    n = _check_subset(subset, len(images), "full_train_set")
    indices = None if subset is None else backend.default_rng(seed).permutation(len(images))[:n]
    return Dataset(images, labels, indices, name="train")


def holdout_split(holdout, root=None, subset=None, seed=0, verify=True):
    """The training images split for choosing a retraining setting without the test
    images: (train, held_out) Datasets. p = permutation(60000) from
    backend.default_rng(seed); held_out = p[:holdout], train = p[holdout:] (or its
    first `subset` entries). Disjoint, identical for the same seed."""
    images, labels = load_mnist(root, "train", verify=verify)
    held = _check_subset(holdout, len(images) - 1, "holdout_split")
    n = _check_subset(subset, len(images) - held, "holdout_split")
    order = backend.default_rng(seed).permutation(len(images))
    return (
        Dataset(images, labels, order[held : held + n], name=f"train-minus-holdout(seed={seed})"),
        Dataset(images, labels, order[:held], name=f"holdout(seed={seed})"),
    )


def test_set(root=None, subset=None, verify=True):
    """The 10000 test images (never used in the search), or the first `subset` of them."""
    images, labels = load_mnist(root, "test", verify=verify)
    n = _check_subset(subset, len(images), "test_set")
    return Dataset(images, labels, _np.arange(n, dtype=backend.int64), name="test")


test_set.__test__ = False  # not a pytest test, despite the name


# --------------------------------------------------------------------------- batches


class Batches:
    """Mini-batches of a :class:`Dataset`, reproducible and resumable.

    Epoch e visits the examples in the order  perm_e = permutation(N) drawn from
    backend.default_rng([seed, e])  (or 0..N-1 without `shuffle`), in batches of
    `batch_size`; the last batch is partial unless `drop_last`. So

        len(self) = ceil(N / B)  (or floor(N / B) with drop_last)

    Iterating yields the *remaining* batches of the current epoch as (x, y): x float32
    (B, 1, 28, 28), y int64 (B,), NumPy arrays or arrays on `device`. ``epoch`` and
    ``position`` (batches already taken in this epoch) always point at the next batch;
    :meth:`state_dict` / :meth:`load_state_dict` save and restore them, so a resumed run
    sees the same batches in the same order. Do not iterate one Batches from two loops
    at once: they share the position.
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, drop_last=False, device=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | _np.integer):
            raise ValueError(f"Batches: batch_size must be a positive int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"Batches: batch_size must be >= 1, got {batch_size}")
        if len(dataset) == 0:
            raise ValueError(f"Batches: {dataset!r} is empty, expected at least one example")
        if drop_last and batch_size > len(dataset):
            raise ValueError(
                f"Batches: batch_size {batch_size} > {len(dataset)} examples with drop_last=True "
                "gives no batches; use a smaller batch_size or drop_last=False"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.device = device
        self.epoch = 0
        self.position = 0
        self._order = (None, None)  # (epoch, order) of the last epoch asked for

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch):
        """The positions (0..N-1) in the order epoch `epoch` visits them."""
        if self._order[0] != epoch:
            n = len(self.dataset)
            if self.shuffle:
                perm = backend.default_rng([self.seed, epoch]).permutation(n)
            else:
                perm = _np.arange(n)
            self._order = (epoch, perm)
        return self._order[1]

    def next_batch(self):
        """The next batch, rolling over into the next epoch after the last one."""
        start = self.position * self.batch_size
        positions = self.order(self.epoch)[start : start + self.batch_size]
        # Advance before returning, so state_dict() taken after this batch resumes after it.
        self.position += 1
        if self.position == len(self):
            self.epoch, self.position = self.epoch + 1, 0
        return self.dataset.batch(positions, device=self.device)

    def __iter__(self):
        for _ in range(len(self) - self.position):
            yield self.next_batch()

    def state_dict(self):
        """Plain ints: where to resume, plus settings and a data fingerprint to check."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle": int(self.shuffle),
            "drop_last": int(self.drop_last),
            "num_examples": len(self.dataset),
            "fingerprint": self.dataset.fingerprint(),
        }

    def load_state_dict(self, state):
        """Resume at `state` (from :meth:`state_dict`; values may be 0-d arrays from a .npz).

        The settings and the data must match this loader, else the batches would differ.
        """
        state = {k: int(v) for k, v in state.items()}
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise ValueError(f"Batches.load_state_dict: state lacks {missing}")
        for key in ("seed", "batch_size", "shuffle", "drop_last", "num_examples", "fingerprint"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"Batches.load_state_dict: saved {key}={state[key]} but this loader has "
                    f"{key}={mine[key]}; resume with the same dataset and settings"
                )
        if state["epoch"] < 0 or not 0 <= state["position"] < len(self):
            raise ValueError(
                f"Batches.load_state_dict: epoch={state['epoch']}, position={state['position']} "
                f"out of range, expected epoch >= 0 and 0 <= position < {len(self)}"
            )
        self.epoch, self.position = state["epoch"], state["position"]


def paired_batches(train, val):
    """The DARTS search loop's data: ((x_train, y_train), (x_val, y_val)) for each remaining
    batch of `train`'s current epoch. `val` just supplies its next batch each step, rolling
    over into its next epoch when it runs out (so it never cuts the train epoch short)."""
    for train_batch in train:
        yield train_batch, val.next_batch()
