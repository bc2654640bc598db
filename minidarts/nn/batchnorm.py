"""Batch normalisation, as torch.nn.functional.batch_norm, for (N, C) and
(N, C, H, W) inputs (any (N, C, ...) in fact): one mean and variance per
channel c, over the n = N * H * W values of that channel.

Training (statistics of the batch, biased variance):

    mu = mean(x),  var = mean((x - mu)^2),  x_hat = (x - mu) / sqrt(var + eps)
    y = weight * x_hat + bias

and the running statistics move towards the batch's, with the UNBIASED
variance (as PyTorch does):

    running_mean <- (1 - momentum) running_mean + momentum mu
    running_var  <- (1 - momentum) running_var  + momentum var * n / (n - 1)

Evaluation uses the running statistics instead of the batch's, so y is a
fixed affine function of x.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor


def _xp(a):
    return backend.get_array_module(a)


def _data(t):
    return t.data if isinstance(t, Tensor) else t


def _channel_sum(a, b=None):
    """sum over every axis but the channel axis 1 of a (of a * b, without the product
    as a temporary), keeping the dims: einsum runs 2-4x faster on (64, 16, 14, 14) than
    a.sum(axis=(0, 2, 3)), whose reduction over non-adjacent axes is slow, and as
    accurately (same float32 rounding of the result, measured against float64).
    Half precision sums in float32 and returns float32 (a float16 sum of squares
    overflows: divide first, then cast, as mean() does), and inputs of more dims than
    einsum has letters for take sum()."""
    bshape = (1, a.shape[1]) + (1,) * (a.ndim - 2)
    if a.dtype.itemsize < 4 or a.ndim > 12:
        product = a if b is None else a * b
        axes = (0,) + tuple(range(2, a.ndim))
        wide = _xp(a).float32 if a.dtype.itemsize < 4 else a.dtype
        return product.sum(axis=axes, dtype=wide, keepdims=True)
    axes = "nc" + "hwdefgijkl"[: a.ndim - 2]  # "nchw" for an image batch
    if b is None:
        return _xp(a).einsum(f"{axes}->c", a).reshape(bshape)
    return _xp(a).einsum(f"{axes},{axes}->c", a, b).reshape(bshape)


def _channel_mean(a, b=None):
    """_channel_sum / n, in a's dtype."""
    n = a.size // a.shape[1]
    return (_channel_sum(a, b) / n).astype(a.dtype, copy=False)


class _BatchNormBase(Function):
    """Shared plumbing: the optional weight and bias are extra inputs after x."""

    def _setup(self, x, params, has_weight, has_bias):
        self.bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # per-channel values, broadcastable
        params = list(params)
        self.has_weight, self.has_bias = has_weight, has_bias
        weight = params.pop(0).reshape(self.bshape) if has_weight else None
        bias = params.pop(0).reshape(self.bshape) if has_bias else None
        return weight, bias


class BatchNormTrain(_BatchNormBase):
    """y = weight * x_hat + bias with the batch's statistics. With g = gy * weight,

        gx = (1 / sqrt(var + eps)) * (g - mean(g) - x_hat * mean(g * x_hat))

    (the compact formula: x_hat depends on x directly and through mu and var),
    gw = sum gy * x_hat, gb = sum gy."""

    def forward(
        self, x, *params, has_weight, has_bias, running_mean, running_var, momentum, eps, more=()
    ):
        """more: (running_mean, running_var) pairs of other layers that normalise this
        same x (the search's pools that read one state, darts/fast_edges.py): each is
        updated as running_mean and running_var are."""
        xp = _xp(x)
        weight, bias = self._setup(x, params, has_weight, has_bias)
        n = x.size // x.shape[1]
        # In-place steps below reuse xc (a large temporary costs about as much as the
        # arithmetic on it): it becomes x_hat.
        mean = _channel_mean(x)
        xc = x - mean
        var = _channel_mean(xc, xc)
        self.invstd = 1.0 / xp.sqrt(var + eps)
        xc *= self.invstd
        self.x_hat = xc
        self.weight, self.n = weight, n
        for rm, rv in ((running_mean, running_var),) + tuple(more):
            if rm is not None:
                rm *= 1.0 - momentum
                rm += momentum * mean.reshape(-1).astype(rm.dtype)
            if rv is not None:
                unbiased = var.reshape(-1) * (n / (n - 1))
                rv *= 1.0 - momentum
                rv += momentum * unbiased.astype(rv.dtype)
        if weight is None:
            # The output may share its array with the saved x_hat: no op writes
            # into its inputs, so this saves a copy in DARTS' affine=False search.
            return self.x_hat if bias is None else self.x_hat + bias
        y = self.x_hat * weight
        if bias is not None:
            y += bias
        return y

    def backward(self, gy):
        x_hat, n, dtype = self.x_hat, self.n, gy.dtype
        sum_gy = _channel_sum(gy)  # float32 for half precision (see _channel_sum)
        sum_gy_xhat = _channel_sum(gy, x_hat)
        gx = None
        if self.needs_input_grad[0]:
            scale = self.invstd if self.weight is None else self.invstd * self.weight
            # gx = scale * (gy - sum_gy / n - x_hat * sum_gy_xhat / n), in place
            gx = x_hat * (-sum_gy_xhat / n).astype(dtype, copy=False)
            gx += gy
            gx -= (sum_gy / n).astype(dtype, copy=False)
            gx *= scale
        grads = [gx]
        if self.has_weight:
            grads.append(sum_gy_xhat.reshape(-1).astype(dtype, copy=False))
        if self.has_bias:
            grads.append(sum_gy.reshape(-1).astype(dtype, copy=False))
        return tuple(grads)


class BatchNormEval(_BatchNormBase):
    """y = weight * (x - running_mean) / sqrt(running_var + eps) + bias, an affine map
    of x with fixed coefficients;  gx = gy * weight / sqrt(running_var + eps),
    gw = sum gy * x_hat, gb = sum gy."""

    def forward(self, x, *params, has_weight, has_bias, running_mean, running_var, eps):
        xp = _xp(x)
        weight, bias = self._setup(x, params, has_weight, has_bias)
        mean = running_mean.astype(x.dtype, copy=False).reshape(self.bshape)
        var = running_var.astype(x.dtype, copy=False).reshape(self.bshape)
        self.invstd = 1.0 / xp.sqrt(var + eps)
        self.x, self.mean = x, mean
        self.scale = self.invstd if weight is None else self.invstd * weight
        y = x - mean
        y *= self.scale
        if bias is not None:
            y += bias
        return y

    def backward(self, gy):
        grads = [gy * self.scale if self.needs_input_grad[0] else None]
        if self.has_weight:
            x_hat = (self.x - self.mean) * self.invstd
            grads.append(_channel_sum(gy, x_hat).reshape(-1).astype(gy.dtype, copy=False))
        if self.has_bias:
            grads.append(_channel_sum(gy).reshape(-1).astype(gy.dtype, copy=False))
        return tuple(grads)


def _check(x, running_mean, running_var, weight, bias, training):
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an (N, C, ...) input, got shape {x.shape}")
    if not backend.is_floating(_data(x)):
        raise TypeError(f"batch_norm: expected a floating-point input, got dtype {x.dtype}")
    c = x.shape[1]
    for name, t in [
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ]:
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({c},) for an input with {c} channels "
                f"(shape {x.shape}), got {tuple(t.shape)}"
            )
    if not training and (running_mean is None or running_var is None):
        raise ValueError(
            "batch_norm: running_mean and running_var are needed when training=False "
            "(evaluation normalises with the running statistics)"
        )
    if training and _data(x).size // c <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, got input "
            f"shape {x.shape}"
        )


def batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalisation, as torch.nn.functional.batch_norm:

        y = weight * (x - mu) / sqrt(var + eps) + bias      (per channel, axis 1)

    training=True: mu and var are the batch mean and biased variance over every
    axis but 1, and running_mean / running_var (if given) are updated in place,
        running <- (1 - momentum) running + momentum * batch statistic
    with the unbiased variance var * n / (n - 1).
    training=False: mu, var = running_mean, running_var.
    weight and bias (shape (C,)) are optional; the running statistics may be
    Tensors or arrays, and None only when training."""
    fn, params, options = prepare(
        x, running_mean, running_var, weight, bias, training, momentum, eps
    )
    return fn.apply(x, *params, **options)


def prepare(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """batch_norm's call, checked, not yet made: (the Function, its inputs after x, its
    options), for batch_norm and for a fused kernel that ends in a batch norm
    (darts/fast_ops.py)."""
    _check(x, running_mean, running_var, weight, bias, training)
    params = [t for t in (weight, bias) if t is not None]
    flags = dict(has_weight=weight is not None, has_bias=bias is not None)
    rm, rv = _data(running_mean), _data(running_var)
    if training:
        options = dict(running_mean=rm, running_var=rv, momentum=momentum, eps=eps)
        return BatchNormTrain, params, dict(flags, **options)
    return BatchNormEval, params, dict(flags, running_mean=rm, running_var=rv, eps=eps)
