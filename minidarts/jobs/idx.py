"""MNIST's files: read the IDX format, check it, normalise the pixels.

The files
---------
MNIST comes as four files in the IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/),
usually gzip-compressed:

    train-images-idx3-ubyte.gz   60000 images, 28 x 28 pixels
    train-labels-idx1-ubyte.gz   60000 labels, digits 0..9
    t10k-images-idx3-ubyte.gz    10000 test images
    t10k-labels-idx1-ubyte.gz    10000 test labels

The repository ships them in ``data/mnist/`` together with ``SHA256SUMS`` (the output of
``sha256sum *.gz``). An IDX file is a header followed by a flat array, all big-endian:

    offset  size   content
    0       2      two zero bytes
    2       1      element type: 0x08 unsigned byte (MNIST), 0x09 signed byte, 0x0B int16,
                   0x0C int32, 0x0D float32, 0x0E float64
    3       1      number of dimensions d (3 for images, 1 for labels)
    4       4*d    the size of each dimension, uint32 big-endian (60000, 28, 28 / 60000)
    4+4*d   ...    the elements, row-major (C order), the last dimension varying fastest

so the four leading bytes read as one "magic number": 0x00000803 for images (unsigned bytes,
3 dimensions) and 0x00000801 for labels (unsigned bytes, 1 dimension). The payload must hold
exactly  prod(dims) * itemsize  bytes; a file with fewer (truncated download) or more (trailing
bytes) is rejected. Pixels are 0 (background) .. 255 (ink).

What this module checks
-----------------------
Every problem raises :class:`MNISTError` (a ``ValueError``) that names the file, what is wrong
and what was expected: missing file, corrupt gzip stream, wrong magic number / element type /
number of dimensions, images that are not 28 x 28, truncated or overlong payload, labels
outside 0..9, different numbers of images and labels, and - when the folder has a
``SHA256SUMS`` file - a SHA-256 digest that differs from the listed one. A folder of your
own without ``SHA256SUMS`` still loads (the structural checks still apply); ``verify=False``
skips the digest check for speed.

Splitting and batching: data.py.
"""

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

from ..engine import backend

# File parsing and index bookkeeping happen on the CPU; batches move to the device at the end.
_np = backend.numpy

MEAN = 0.1307  # mean of the MNIST training pixels, scaled to [0, 1]
STD = 0.3081  # their standard deviation
IMAGE_SIZE = 28
NUM_CLASSES = 10
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
CHECKSUM_FILE = "SHA256SUMS"
SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "data" / "mnist"

# IDX element type byte -> (big-endian numpy dtype, name used in messages)
IDX_DTYPES = {
    0x08: (">u1", "unsigned byte"),
    0x09: (">i1", "signed byte"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class MNISTError(ValueError):
    """A missing, corrupt or unexpected MNIST file (the message says which and why)."""


# --------------------------------------------------------------------------- IDX parsing


def _read_bytes(path):
    """The decompressed content of `path`: gzip if it starts with the gzip magic 1f 8b."""
    path = Path(path)
    if not path.is_file():
        raise MNISTError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw:
        raise MNISTError(
            f"{path}: the file is empty; download it again or restore the shipped copy"
        )
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise MNISTError(
                f"{path}: corrupt gzip stream ({e}); expected a complete gzip file - "
                "download it again or restore the shipped copy"
            ) from None
    if path.suffix == ".gz":
        raise MNISTError(
            f"{path}: named .gz but is not gzip-compressed (starts with {raw[:2].hex()}, "
            "expected 1f8b)"
        )
    return raw


def _describe(dims):
    """'60000 images of 28x28' / '60000 labels' / 'an array of shape 3x4x5' for messages."""
    if len(dims) == 3:
        return f"{dims[0]} images of {dims[1]}x{dims[2]}"
    if len(dims) == 1:
        return f"{dims[0]} labels"
    return "an array of shape " + "x".join(str(d) for d in dims)


def read_idx(path, magic=None):
    """Parse one IDX file (gzip-compressed or plain) into a read-only NumPy array.

    The header (see the module docstring) gives the element type t and the dims
    (n_1, ..., n_d); the payload must hold exactly  n_1 * ... * n_d * itemsize(t)  bytes.
    With `magic` (e.g. IMAGES_MAGIC) the four leading bytes must equal it.
    Multi-byte elements are converted to native byte order.
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise MNISTError(
            f"{path}: truncated header: {len(buf)} bytes, expected at least the 4-byte magic number"
        )
    found = int.from_bytes(buf[:4], "big")
    if buf[0] != 0 or buf[1] != 0:
        raise MNISTError(
            f"{path}: not an IDX file: magic number 0x{found:08X} should start with two zero "
            "bytes (0x0000....)"
        )
    if magic is not None and found != magic:
        raise MNISTError(
            f"{path}: wrong magic number 0x{found:08X} (element type 0x{buf[2]:02X}, "
            f"{buf[3]} dimensions), expected 0x{magic:08X} (element type 0x{(magic >> 8) & 255:02X}"
            f" = {IDX_DTYPES.get((magic >> 8) & 255, ('', '?'))[1]}, {magic & 255} dimensions)"
        )
    type_code, ndim = buf[2], buf[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise MNISTError(f"{path}: unknown IDX element type 0x{type_code:02X}, expected {known}")
    if ndim == 0:
        raise MNISTError(f"{path}: the header says 0 dimensions, expected at least 1")
    header_len = 4 + 4 * ndim
    if len(buf) < header_len:
        raise MNISTError(
            f"{path}: truncated header: {len(buf)} bytes, but {ndim} dimensions need "
            f"{header_len} header bytes"
        )
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _np.dtype(IDX_DTYPES[type_code][0])
    expected = math.prod(dims) * dtype.itemsize
    held = len(buf) - header_len
    if held != expected:
        what = "truncated" if held < expected else "trailing bytes"
        raise MNISTError(
            f"{path}: {what}: header says {_describe(dims)} = {expected} bytes, "
            f"file holds {held} (after the {header_len}-byte header)"
        )
    # A view into the decompressed bytes: no copy, and read-only, which protects the cache.
    arr = _np.frombuffer(buf, dtype=dtype, count=math.prod(dims), offset=header_len)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
        arr.flags.writeable = False
    return arr.reshape(dims)


def read_images(path):
    """MNIST images from an IDX file: uint8 array (N, 28, 28), values 0..255, read-only."""
    images = read_idx(path, magic=IMAGES_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise MNISTError(
            f"{path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    return images


def read_labels(path):
    """MNIST labels from an IDX file: int64 array (N,), digits 0..9, read-only."""
    labels = read_idx(path, magic=LABELS_MAGIC)
    bad = _np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise MNISTError(
            f"{path}: {bad.size} labels outside 0..{NUM_CLASSES - 1} "
            f"(first: {int(labels[i])} at index {i}), expected digits 0..{NUM_CLASSES - 1}"
        )
    labels = labels.astype(backend.int64)
    labels.flags.writeable = False
    return labels


# --------------------------------------------------------------------------- checksums


def sha256_file(path):
    """Hex SHA-256 digest of a file's bytes (as stored, i.e. of the .gz itself)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checksums(path):
    """{file name: hex digest} from a `sha256sum` listing ('<digest>  <name>' per line)."""
    sums = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise MNISTError(
                f"{path}: line {lineno} is not '<64 hex digits>  <file name>': {line!r}"
            )
        sums[parts[1].lstrip("*").strip()] = digest
    return sums


def verify_checksum(path, checksum_file=None):
    """Check `path` against the SHA256SUMS next to it (or `checksum_file`).

    Returns True when checked, False when there is no checksum file (nothing to check
    against); raises MNISTError on a mismatch or when the listing lacks the file.
    """
    path = Path(path)
    checksum_file = Path(checksum_file) if checksum_file else path.parent / CHECKSUM_FILE
    if not checksum_file.is_file():
        return False
    sums = read_checksums(checksum_file)
    if path.name not in sums:
        raise MNISTError(
            f"{path}: not listed in {checksum_file}; add its digest there (sha256sum), "
            f"or remove {CHECKSUM_FILE} (in Python: load with verify=False)"
        )
    actual = sha256_file(path)
    if actual != sums[path.name]:
        raise MNISTError(
            f"{path}: SHA-256 mismatch: expected {sums[path.name]} (from {checksum_file}), "
            f"actual {actual}; the file is damaged or not the original - restore it"
        )
    return True


# --------------------------------------------------------------------------- loading


def default_root():
    """The MNIST folder: $MINIDARTS_DATA if set, else the repository's data/mnist."""
    env = os.environ.get("MINIDARTS_DATA", "").strip()
    return Path(env) if env else SHIPPED_ROOT


def _find(root, stem):
    """`root/stem.gz`, else the uncompressed `root/stem`; a clear error when neither exists."""
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    where = "" if root.resolve() == SHIPPED_ROOT else " (the data folder asked for)"
    raise MNISTError(
        f"MNIST file not found: {root / (stem + '.gz')} (nor the uncompressed {stem}) in "
        f"{root}{where}. The repository ships all four files in {SHIPPED_ROOT}; point "
        "--data (data_root, root=) or MINIDARTS_DATA at a folder holding them"
    )


_cache = {}  # (resolved root, split) -> {"images", "labels", "verified"}


def clear_cache():
    """Forget the decoded arrays kept by :func:`load_mnist` (e.g. after replacing files)."""
    _cache.clear()


def load_mnist(root=None, split="train", verify=True):
    """The MNIST `split` ('train' or 'test') as (images, labels).

    images: uint8 (N, 28, 28), values 0..255; labels: int64 (N,), digits 0..9. Both are
    read-only and cached for the rest of the process (keyed by folder and split).
    `root` defaults to :func:`default_root`. With `verify`, files listed in the folder's
    SHA256SUMS are checked against their SHA-256 digests (skipped when there is no SHA256SUMS).
    """
    if split not in SPLITS:
        raise MNISTError(f"load_mnist: split must be one of {SPLITS}, got {split!r}")
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        _find(root, FILES[split][0])  # raises the 'not found' error with the shipped location
    key = (str(root.resolve()), split)
    entry = _cache.get(key)
    if entry is None:
        image_path, label_path = (_find(root, stem) for stem in FILES[split])
        if verify:  # before parsing, so a damaged file is reported as damaged
            verify_checksum(image_path)
            verify_checksum(label_path)
        images, labels = read_images(image_path), read_labels(label_path)
        if len(images) != len(labels):
            raise MNISTError(
                f"{root}: {image_path.name} holds {len(images)} images but {label_path.name} "
                f"holds {len(labels)} labels, expected one label per image"
            )
        entry = _cache[key] = {"images": images, "labels": labels, "verified": verify}
    elif verify and not entry["verified"]:
        for stem in FILES[split]:
            verify_checksum(_find(root, stem))
        entry["verified"] = True
    return entry["images"], entry["labels"]


def normalize(images):
    """uint8 images (N, 28, 28) -> float32 network input (N, 1, 28, 28):

        x = (pixel / 255 - MEAN) / STD,     MEAN = 0.1307, STD = 0.3081

    Works on NumPy or CuPy arrays (the result stays on the input's device).
    """
    xp = backend.get_array_module(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"normalize: expected images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), "
            f"got {tuple(images.shape)}"
        )
    x = images.astype(backend.float32)
    # One multiply-add with Python-float constants keeps float32 (no float64 temporaries).
    x *= 1.0 / (255.0 * STD)
    x -= MEAN / STD
    return xp.reshape(x, (x.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE))
