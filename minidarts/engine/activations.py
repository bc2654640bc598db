"""Activations and the loss: relu, sigmoid, tanh, softmax, log_softmax and
cross_entropy, each backward beside its forward.

Notation as in arithmetic.py.
"""

from . import backend
from .arithmetic import _axes, _xp
from .autograd import Function, Tensor

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
    keeps e^ from overflowing); its backward is the task backward_softmax."""

    def forward(self, x, dim):
        xp = _xp(x)
        self.dim = dim
        e = xp.exp(x - x.max(axis=dim, keepdims=True))
        self.y = e / e.sum(axis=dim, keepdims=True)
        return self.y

    def backward(self, gy):
        # BEGIN SOLUTION backward_softmax: (gx,) given gy, from the saved output self.y (self.dim)
        # HINT: dy_i/dx_j = y_i (delta_ij - y_j), so gx = y * (gy - sum_j gy_j y_j)
        # HINT: the sum runs along self.dim; keepdims=True lets it broadcast back
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
    """loss = mean over n of -log softmax(logits_n)[target_n]; its backward is the task
    backward_cross_entropy."""

    def forward(self, logits, target):
        xp = _xp(logits)
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(n)
        self.p, self.target, self.rows = xp.exp(logp), target, rows
        return -logp[rows, target].mean()

    def backward(self, gy):
        # BEGIN SOLUTION backward_cross_entropy: (glogits, None) given gy; target gets no gradient
        # HINT: glogits = gy * (softmax(logits) - onehot(target)) / N, N rows (the mean)
        # HINT: self.p holds softmax(logits); self.rows, self.target index each target entry
        g = self.p.copy()
        g[self.rows, self.target] -= 1
        return g * (gy / g.shape[0]), None
        # END SOLUTION


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


def class_targets(logits, target, where="cross_entropy"):
    """The array of N integer class indices in [0, C) that `target` (a Tensor, array or
    list) holds for (N, C) `logits`, on their device; a ValueError or TypeError naming
    `where` for anything else."""
    target_data = target.data if isinstance(target, Tensor) else target
    if not backend.is_array(target_data):
        target_data = backend.asarray(target_data, device=logits.device)
    if logits.ndim != 2:
        raise ValueError(f"{where}: input must be (N, C), got shape {logits.shape}")
    if not backend.is_integer(target_data):
        raise TypeError(
            f"{where}: target must hold integer class indices (int64), got dtype "
            f"{target_data.dtype}; convert with target.astype('int64')"
        )
    n, c = logits.shape
    if n == 0:  # NumPy's min of nothing would fail below, the mean would be NaN
        raise ValueError(f"{where}: the batch is empty (input of shape {logits.shape})")
    if tuple(target_data.shape) != (n,):
        raise ValueError(
            f"{where}: target must have shape ({n},) to match input {logits.shape}, "
            f"got {tuple(target_data.shape)}"
        )
    lo, hi = int(target_data.min()), int(target_data.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"{where}: target values must be in [0, {c - 1}], got [{lo}, {hi}]")
    return target_data


def cross_entropy(logits, target):
    """Mean cross-entropy of (N, C) logits against N integer class indices, as
    torch.nn.functional.cross_entropy: mean_n -log softmax(logits_n)[target_n].
    (minidarts.nn.functional.cross_entropy adds `reduction=`.)"""
    return CrossEntropy.apply(logits, Tensor(class_targets(logits, target)))
