"""Weight initialisers, as torch.nn.init: each fills a tensor in place and returns it.

Random numbers are drawn on the CPU from `rng` (a numpy Generator) or, by
default, from the global generator of minidarts.random (seeded by
minidarts.manual_seed), then cast to the tensor's dtype and device.
"""

import math

from ..engine import backend
from ..engine.random import get_rng


def _fill(tensor, values):
    tensor.data[...] = backend.asarray(values, dtype=tensor.dtype, device=tensor.device)
    return tensor


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight: for (out, in, *kernel), fan_in = in * prod(kernel)
    and fan_out = out * prod(kernel), as PyTorch."""
    if tensor.ndim < 2:
        raise ValueError(
            f"init: fan in and fan out need a weight with at least 2 dims, got shape {tensor.shape}"
        )
    receptive = 1
    for n in tensor.shape[2:]:
        receptive *= n
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0, rng=None):
    """Fill with samples of U(a, b)."""
    return _fill(tensor, get_rng(rng).uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, rng=None):
    """Fill with samples of N(mean, std^2)."""
    return _fill(tensor, get_rng(rng).normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    """Fill with `value`."""
    tensor.data[...] = value
    return tensor


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor, a=0.0, rng=None):
    """He initialisation (fan_in mode, leaky-ReLU gain), as torch.nn.init.kaiming_uniform_:

        U(-bound, bound),  bound = gain * sqrt(3 / fan_in),  gain = sqrt(2 / (1 + a^2)).

    PyTorch's Conv2d and Linear use a = sqrt(5), i.e. bound = 1 / sqrt(fan_in)."""
    fan_in, _ = calculate_fan_in_and_fan_out(tensor)
    if fan_in == 0:
        return tensor
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound, rng=rng)
