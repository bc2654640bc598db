"""Arithmetic with NumPy broadcasting, exp/log/sqrt/pow and batched matmul,
each backward beside its forward; and the helpers every op family shares
(unbroadcast, dim handling, broadcast errors).

Notation: y is the forward output, gy = dL/dy the gradient arriving at
backward, gx = dL/dx the gradient it returns.
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
    """y = a * b (broadcast); its backward is the task backward_mul."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return _binary("mul", _xp(a), lambda u, v: u * v, a, b)

    def backward(self, gy):
        # BEGIN SOLUTION backward_mul: (ga, gb) given gy: the gradients of a and b, in their shapes
        # HINT: ga = gy * b, gb = gy * a, each summed back over the dims broadcasting added
        # HINT: unbroadcast(g, shape) does that summing
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
    """y = a @ b, batched over leading dims (broadcast); its backward is the task
    backward_matmul.

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
        # BEGIN SOLUTION backward_matmul: (ga, gb) given gy, in a's and b's shapes (1-D, batched)
        # HINT: on the last two dims ga = gy @ b^T, gb = a^T @ gy (xp.swapaxes(m, -1, -2))
        # HINT: a 1-D a is a row a[None, :], a 1-D b a column b[:, None]: give gy the axis
        # HINT: the product dropped, then unbroadcast the batch dims and reshape back
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
