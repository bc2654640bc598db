"""The functional interface, as torch.nn.functional (imported as F).

    import minidarts.functional as F
    loss = F.cross_entropy(F.linear(x, w, b), y)

Activations and losses come from ops.py; the convolution, pooling and
batch-norm kernels from their own modules.
"""

from ..engine.ops import cross_entropy, log_softmax, pad, relu, sigmoid, softmax, tanh
from .batchnorm import batch_norm
from .conv import conv2d
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


__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "linear",
    "log_softmax",
    "max_pool2d",
    "pad",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]
