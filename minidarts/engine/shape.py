"""Shape operations: reshape, permute/transpose, indexing, cat, stack, pad.

Notation as in arithmetic.py.
"""

from . import backend
from .arithmetic import _axes, _xp
from .autograd import Function, Tensor

# --- shapes ----------------------------------------------------------------------


class Reshape(Function):
    """y = x viewed with another shape;  gx = gy reshaped back."""

    def forward(self, x, shape):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.size} elements) "
                f"as {tuple(shape)}"
            ) from None

    def backward(self, gy):
        return (gy.reshape(self.shape),)


class Permute(Function):
    """y = x with its axes reordered;  gx = gy with the inverse order."""

    def forward(self, x, dims):
        if sorted(dims) != list(range(x.ndim)):
            raise ValueError(f"permute: {dims} is not an ordering of the {x.ndim} dims")
        self.dims = dims
        return x.transpose(dims)

    def backward(self, gy):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return (gy.transpose(inverse),)


def _is_basic_index(index):
    """True for ints, slices, None and Ellipsis, which never select an element twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(p, (int, slice)) or p is None or p is Ellipsis
        for p in parts
        if not isinstance(p, bool)
    )


class GetItem(Function):
    """y = x[index];  gx = zeros with gy added at the selected places.

    Advanced (integer-array) indices can select an element more than once, so
    their backward adds with scatter_add rather than assigning."""

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, gy):
        xp = _xp(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        if _is_basic_index(self.index):
            gx[self.index] = gy
        else:
            backend.scatter_add(xp, gx, self.index, gy)
        return (gx,)


class Cat(Function):
    """y = the inputs joined along `dim`;  each gx is its slice of gy."""

    def forward(self, *xs, dim):
        self.dim = dim
        self.sizes = [x.shape[dim] for x in xs]
        try:
            return _xp(xs[0]).concatenate(xs, axis=dim)
        except ValueError:
            raise ValueError(
                f"cat: shapes {[tuple(x.shape) for x in xs]} must match except in dim {dim}"
            ) from None

    def backward(self, gy):
        bounds = [0]
        for n in self.sizes:
            bounds.append(bounds[-1] + n)
        idx = [slice(None)] * gy.ndim
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            idx[self.dim] = slice(lo, hi)
            out.append(gy[tuple(idx)])
        return tuple(out)


class Stack(Function):
    """y = the inputs stacked along a new `dim`;  each gx is its index of gy."""

    def forward(self, *xs, dim):
        self.dim = dim
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"stack: all inputs need the same shape, got {sorted(shapes)}")
        return _xp(xs[0]).stack(xs, axis=dim)

    def backward(self, gy):
        xp = _xp(gy)
        return tuple(xp.take(gy, i, axis=self.dim) for i in range(gy.shape[self.dim]))


class Pad(Function):
    """y = x with constant borders;  gx = the interior of gy."""

    def forward(self, x, widths, value):
        self.interior = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return _xp(x).pad(x, widths, mode="constant", constant_values=value)

    def backward(self, gy):
        return (gy[self.interior],)


def reshape(x, *shape):
    """x with a new shape (one dim may be -1), as torch.reshape."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(x, shape=tuple(int(n) for n in shape))


def permute(x, *dims):
    """x with its dims reordered, as torch.permute."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    return Permute.apply(x, dims=tuple(d % x.ndim for d in dims))


def transpose(x, dim0, dim1):
    """x with two dims swapped, as torch.transpose."""
    dims = list(range(x.ndim))
    d0, d1 = _axes((dim0, dim1), x.ndim, "transpose")
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, dims=tuple(dims))


def getitem(x, index):
    """x[index]: ints, slices, None, Ellipsis, integer or boolean arrays/tensors."""
    if isinstance(index, tuple):
        index = tuple(p.data if isinstance(p, Tensor) else p for p in index)
    elif isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, list):
        index = backend.asarray(index, device=x.device)
    return GetItem.apply(x, index=index)


def cat(tensors, dim=0):
    """Join tensors along an existing dim, as torch.cat."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    return Cat.apply(*tensors, dim=_axes(dim, tensors[0].ndim, "cat")[0])


def stack(tensors, dim=0):
    """Stack same-shaped tensors along a new dim, as torch.stack."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    return Stack.apply(*tensors, dim=_axes(dim, tensors[0].ndim + 1, "stack")[0])


def pad(x, pad, value=0.0):
    """Constant padding as torch.nn.functional.pad: `pad` lists (before, after) pairs
    starting from the LAST dim, e.g. (1, 1, 2, 2) pads W by 1 and H by 2."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: expected an even number of widths, at most 2 per dim ({2 * x.ndim}), "
            f"got {tuple(pad)}"
        )
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: widths must be non-negative, got {tuple(pad)}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return Pad.apply(x, widths=tuple(widths), value=value)
