"""The functional interface, as torch.nn.functional (imported as F).

    import minidarts.functional as F
    loss = F.cross_entropy(F.linear(x, w, b), y)

Activations come from ops.py, the losses from losses.py; the convolution, pooling
and batch-norm kernels from their own modules.
"""

from ..engine import backend, random
from ..engine.ops import log_softmax, pad, relu, sigmoid, softmax, tanh
from .batchnorm import batch_norm
from .conv import conv2d
from .losses import cross_entropy, mse_loss, nll_loss
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d


def linear(x, weight, bias=None):
    """y = x @ weight^T + bias, with weight shaped (out_features, in_features) as in
    torch.nn.functional.linear; x may have any number of leading dims."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"linear: input has {x.shape[-1]} features (shape {x.shape}) but weight "
            f"{weight.shape} expects {weight.shape[-1]}"
        )
    y = x @ weight.T
    return y if bias is None else y + bias


def dropout(x, p=0.5, training=True, rng=None):
    """Inverted dropout, as torch.nn.functional.dropout: in training each element is
    kept with probability 1 - p and scaled so the expectation is unchanged,

        y = x * keep / (1 - p),   keep_i = [u_i < 1 - p],  u_i ~ U[0, 1)

    (p = 1: zeros); not training, y = x. u is drawn on the CPU from `rng` (a numpy
    Generator) or the global generator of minidarts.manual_seed, so a seed repeats
    the masks on either device. The gradient is gy * keep / (1 - p)."""
    if isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    u = random.get_rng(rng).random(x.shape)
    keep = backend.asarray(u < 1 - p, dtype=x.dtype, device=x.device)
    return x * (keep * (1.0 / (1 - p)))


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "dropout",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "pad",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]
