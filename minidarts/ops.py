"""The differentiable operations of the engine, each backward beside its forward.

Arithmetic (with NumPy broadcasting), exp/log/sqrt/pow, batched matmul,
reductions (sum, mean, max over `dim` with `keepdim`, as in PyTorch), shape
operations (reshape, permute/transpose, indexing, cat, stack, pad) and the
activations and losses (relu, sigmoid, tanh, softmax, log_softmax,
cross_entropy). The convolution, pooling and batch-norm kernels live in
their own modules.

Notation in the docstrings: y is the forward output, gy = dL/dy the gradient
arriving at backward, gx = dL/dx the gradient it returns.
"""

import builtins

from . import backend
from .autograd import Function, Tensor


def _xp(a):
    return backend.get_array_module(a)


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    If x of shape (3, 1) was broadcast to (2, 3, 4), each x[i, 0] fed 2 * 4
    outputs, so its gradient is the sum of theirs: sum over the new leading axis
    and over the axis where x had size 1."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _axes(dim, ndim, opname):
    """PyTorch's `dim` (None, int or tuple, negatives allowed) as a tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < builtins.max(ndim, 1):
            raise IndexError(f"{opname}: dim {d} is out of range for a tensor with {ndim} dims")
        out.append(d % builtins.max(ndim, 1))
    return tuple(out)


def _binary(opname, xp, fn, a, b):
    try:
        return fn(a, b)
    except ValueError:
        raise ValueError(
            f"{opname}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast "
            f"together (each dim must match or be 1)"
        ) from None


# --- arithmetic ------------------------------------------------------------------


class Add(Function):
    """y = a + b;  ga = gy, gb = gy (summed back over broadcast dims)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return _binary("add", _xp(a), lambda u, v: u + v, a, b)

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(gy, self.shapes[1])


class Sub(Function):
    """y = a - b;  ga = gy, gb = -gy."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return _binary("sub", _xp(a), lambda u, v: u - v, a, b)

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(-gy, self.shapes[1])


class Mul(Function):
    """y = a * b;  ga = gy * b, gb = gy * a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return _binary("mul", _xp(a), lambda u, v: u * v, a, b)

    def backward(self, gy):
        # BEGIN SOLUTION backward_mul: (ga, gb) for y = a * b, summed back to each input's shape
        a, b = self.a, self.b
        return unbroadcast(gy * b, a.shape), unbroadcast(gy * a, b.shape)
        # END SOLUTION


class Div(Function):
    """y = a / b;  ga = gy / b, gb = -gy * a / b^2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return _binary("div", _xp(a), lambda u, v: u / v, a, b)

    def backward(self, gy):
        a, b = self.a, self.b
        ga = gy / b
        return unbroadcast(ga, a.shape), unbroadcast(-ga * a / b, b.shape)


class Neg(Function):
    """y = -x;  gx = -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return (-gy,)


class PowScalar(Function):
    """y = x^p for a constant p;  gx = gy * p * x^(p-1)."""

    def forward(self, x, p):
        self.x, self.p = x, p
        return x**p

    def backward(self, gy):
        if self.p == 0:  # x^0 = 1 is constant; x^-1 would turn 0 * inf into NaN at x = 0
            return (gy * 0,)
        return (gy * self.p * self.x ** (self.p - 1),)


class Pow(Function):
    """y = a^b for tensors;  ga = gy * b * a^(b-1), gb = gy * y * log(a)  (a > 0)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = _binary("pow", _xp(a), lambda u, v: u**v, a, b)
        return self.y

    def backward(self, gy):
        a, b, y = self.a, self.b, self.y
        xp = _xp(a)
        ga = gy * b * a ** (b - 1)
        gb = gy * y * xp.log(xp.where(a > 0, a, 1))
        return unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)


class Exp(Function):
    """y = e^x;  gx = gy * y."""

    def forward(self, x):
        self.y = _xp(x).exp(x)
        return self.y

    def backward(self, gy):
        return (gy * self.y,)


class Log(Function):
    """y = ln x;  gx = gy / x."""

    def forward(self, x):
        self.x = x
        return _xp(x).log(x)

    def backward(self, gy):
        return (gy / self.x,)


class Sqrt(Function):
    """y = sqrt(x);  gx = gy / (2 y)."""

    def forward(self, x):
        self.y = _xp(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return (gy / (2 * self.y),)


class MatMul(Function):
    """y = a @ b, batched over leading dims (broadcast);  ga = gy @ b^T, gb = a^T @ gy.

    1-D operands follow NumPy: a vector on the left is a row, on the right a column."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dim (use * for scalars)")
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if a.shape[-1] != k_b:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match: the last "
                f"dim of the first ({a.shape[-1]}) must equal the "
                f"{'first' if b.ndim == 1 else 'second-to-last'} dim of the second ({k_b})"
            )
        self.a, self.b = a, b
        try:
            return _xp(a).matmul(a, b)
        except ValueError:
            raise ValueError(
                f"matmul: the batch dims of {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                f"broadcast together"
            ) from None

    def backward(self, gy):
        # BEGIN SOLUTION backward_matmul: (ga, gb) for y = a @ b, batched and broadcast
        a, b = self.a, self.b
        xp = _xp(a)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = gy
        # b's axis first: for vector @ vector gy is 0-d, and -2 exists only after it.
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = xp.matmul(g2, xp.swapaxes(b2, -1, -2))
        gb = xp.matmul(xp.swapaxes(a2, -1, -2), g2)
        return unbroadcast(ga, a2.shape).reshape(a.shape), unbroadcast(gb, b2.shape).reshape(
            b.shape
        )
        # END SOLUTION


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


# --- activations and losses --------------------------------------------------------


class ReLU(Function):
    """y = max(x, 0);  gx = gy where x > 0."""

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        return (gy * self.mask,)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2, which never overflows;
    gx = gy * y * (1 - y)."""

    def forward(self, x):
        self.y = 0.5 * (1 + _xp(x).tanh(0.5 * x))
        return self.y

    def backward(self, gy):
        return (gy * self.y * (1 - self.y),)


class Tanh(Function):
    """y = tanh x;  gx = gy * (1 - y^2)."""

    def forward(self, x):
        self.y = _xp(x).tanh(x)
        return self.y

    def backward(self, gy):
        return (gy * (1 - self.y * self.y),)


class Softmax(Function):
    """y_i = e^(x_i - m) / sum_j e^(x_j - m), m = max x (shifting changes nothing but
    keeps e^ from overflowing);  gx = y * (gy - sum_j gy_j y_j)."""

    def forward(self, x, dim):
        xp = _xp(x)
        self.dim = dim
        e = xp.exp(x - x.max(axis=dim, keepdims=True))
        self.y = e / e.sum(axis=dim, keepdims=True)
        return self.y

    def backward(self, gy):
        # BEGIN SOLUTION backward_softmax: gx = y * (gy - sum(gy * y)) along self.dim
        y = self.y
        return (y * (gy - (gy * y).sum(axis=self.dim, keepdims=True)),)
        # END SOLUTION


class LogSoftmax(Function):
    """y_i = x_i - m - log sum_j e^(x_j - m);  gx = gy - softmax(x) * sum_j gy_j."""

    def forward(self, x, dim):
        xp = _xp(x)
        self.dim = dim
        shifted = x - x.max(axis=dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        self.y = y
        return y

    def backward(self, gy):
        xp = _xp(gy)
        return (gy - xp.exp(self.y) * gy.sum(axis=self.dim, keepdims=True),)


class CrossEntropy(Function):
    """loss = mean over n of -log softmax(logits_n)[target_n];
    glogits = gy * (softmax(logits) - onehot(target)) / N."""

    def forward(self, logits, target):
        xp = _xp(logits)
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(n)
        self.p, self.target, self.rows = xp.exp(logp), target, rows
        return -logp[rows, target].mean()

    def backward(self, gy):
        # BEGIN SOLUTION backward_cross_entropy: (softmax - onehot) * gy / N, None for target
        g = self.p.copy()
        g[self.rows, self.target] -= 1
        return g * (gy / g.shape[0]), None
        # END SOLUTION


# --- the public functions --------------------------------------------------------


def add(a, b):
    """a + b with broadcasting."""
    return Add.apply(a, b)


def sub(a, b):
    """a - b with broadcasting."""
    return Sub.apply(a, b)


def mul(a, b):
    """a * b with broadcasting."""
    return Mul.apply(a, b)


def div(a, b):
    """a / b with broadcasting."""
    return Div.apply(a, b)


def neg(x):
    """-x."""
    return Neg.apply(x)


def pow(base, exponent):
    """base ** exponent; a constant exponent is not differentiated."""
    if isinstance(base, Tensor) and backend.is_scalar(exponent):
        # a Python number, so x ** np.float64(2) keeps x's dtype
        return PowScalar.apply(base, p=backend.to_numpy(exponent).item())
    return Pow.apply(base, exponent)


def exp(x):
    """e^x elementwise."""
    return Exp.apply(x)


def log(x):
    """Natural logarithm elementwise."""
    return Log.apply(x)


def sqrt(x):
    """Square root elementwise."""
    return Sqrt.apply(x)


def matmul(a, b):
    """Matrix product a @ b, batched and broadcast over leading dims (as torch.matmul)."""
    return MatMul.apply(a, b)


def sum(x, dim=None, keepdim=False):
    """Sum over `dim` (None: all elements), as torch.sum."""
    return Sum.apply(x, axes=_axes(dim, x.ndim, "sum"), keepdim=keepdim)


def mean(x, dim=None, keepdim=False):
    """Mean over `dim` (None: all elements), as torch.mean."""
    return Mean.apply(x, axes=_axes(dim, x.ndim, "mean"), keepdim=keepdim)


def max(x, dim=None, keepdim=False):
    """Maximum over `dim` (None: all elements); the values only, as torch.amax."""
    return Max.apply(x, axes=_axes(dim, x.ndim, "max"), keepdim=keepdim)


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


def relu(x):
    """max(x, 0)."""
    return ReLU.apply(x)


def sigmoid(x):
    """1 / (1 + e^-x)."""
    return Sigmoid.apply(x)


def tanh(x):
    """Hyperbolic tangent."""
    return Tanh.apply(x)


def softmax(x, dim):
    """exp(x) / sum(exp(x)) along `dim`, stable for large x."""
    return Softmax.apply(x, dim=_axes(dim, x.ndim, "softmax")[0])


def log_softmax(x, dim):
    """log(softmax(x)) along `dim`, computed without forming softmax (stable)."""
    return LogSoftmax.apply(x, dim=_axes(dim, x.ndim, "log_softmax")[0])


def cross_entropy(logits, target):
    """Mean cross-entropy of (N, C) logits against N integer class indices, as
    torch.nn.functional.cross_entropy: mean_n -log softmax(logits_n)[target_n]."""
    target_data = target.data if isinstance(target, Tensor) else target
    if not backend.is_array(target_data):
        target_data = backend.asarray(target_data, device=logits.device)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    if not backend.is_integer(target_data):
        raise TypeError(
            f"cross_entropy: target must hold integer class indices (int64), got dtype "
            f"{target_data.dtype}; convert with target.astype('int64')"
        )
    n, c = logits.shape
    if tuple(target_data.shape) != (n,):
        raise ValueError(
            f"cross_entropy: target must have shape ({n},) to match logits {logits.shape}, "
            f"got {tuple(target_data.shape)}"
        )
    lo, hi = int(target_data.min()), int(target_data.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"cross_entropy: target values must be in [0, {c - 1}], got [{lo}, {hi}]")
    return CrossEntropy.apply(logits, Tensor(target_data))
