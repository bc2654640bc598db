"""Reductions: sum, mean and max over `dim` with `keepdim`, as in PyTorch.

Notation as in arithmetic.py.
"""

from .arithmetic import _axes, _xp
from .autograd import Function

# --- reductions ------------------------------------------------------------------


class Sum(Function):
    """y = sum of x over `axes`;  gx = gy broadcast back over the summed axes."""

    def forward(self, x, axes, keepdim):
        self.shape, self.axes = x.shape, axes
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, gy):
        gy = _expand_reduced(gy, self.shape, self.axes)
        return (_xp(gy).broadcast_to(gy, self.shape),)


class Mean(Function):
    """y = mean of x over `axes`;  gx = gy / n broadcast back (n = elements averaged)."""

    def forward(self, x, axes, keepdim):
        self.shape, self.axes = x.shape, axes
        self.n = 1
        for a in axes:
            self.n *= x.shape[a]
        return x.mean(axis=axes, keepdims=keepdim)

    def backward(self, gy):
        gy = _expand_reduced(gy, self.shape, self.axes) / self.n
        return (_xp(gy).broadcast_to(gy, self.shape),)


class Max(Function):
    """y = max of x over `axes`;  gx = gy at the maximum, 0 elsewhere.

    Ties share the gradient equally (as torch.amax), so the result does not
    depend on which of equal elements comes first."""

    def forward(self, x, axes, keepdim):
        if x.size == 0:
            raise ValueError("max: the tensor is empty")
        self.shape, self.axes = x.shape, axes
        m = x.max(axis=axes, keepdims=True)
        mask = (x == m).astype(x.dtype)
        self.mask = mask / mask.sum(axis=axes, keepdims=True)
        return m if keepdim else m.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    def backward(self, gy):
        return (_expand_reduced(gy, self.shape, self.axes) * self.mask,)


def _expand_reduced(gy, shape, axes):
    """Put back the reduced axes (as size 1) so gy broadcasts against the input."""
    return gy.reshape([1 if i in axes else n for i, n in enumerate(shape)])


def sum(x, dim=None, keepdim=False):
    """Sum over `dim` (None: all elements), as torch.sum."""
    return Sum.apply(x, axes=_axes(dim, x.ndim, "sum"), keepdim=keepdim)


def mean(x, dim=None, keepdim=False):
    """Mean over `dim` (None: all elements), as torch.mean."""
    return Mean.apply(x, axes=_axes(dim, x.ndim, "mean"), keepdim=keepdim)


def max(x, dim=None, keepdim=False):
    """Maximum over `dim` (None: all elements); the values only, as torch.amax."""
    return Max.apply(x, axes=_axes(dim, x.ndim, "max"), keepdim=keepdim)
