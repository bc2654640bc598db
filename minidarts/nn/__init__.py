"""minidarts.nn: what a network is made of, shaped like torch.nn.

    functional.py   F: the stateless functions (conv2d, pools, batch_norm, activations, losses)
    conv.py         convolution kernels (im2col, 1x1, depthwise) with their backward
    pool.py         max / average / adaptive pooling kernels with their backward
    batchnorm.py    batch normalisation with its backward
    module.py       Parameter and Module (the tree of layers and its state)
    layers.py       Conv2d, Linear, BatchNorm, pools, ReLU, Sequential, ...
    init.py         PyTorch's weight initialisation
    optim.py        SGD, Adam, cosine schedule, gradient clipping
    metrics.py      accuracy

Layer: above minidarts.engine, below minidarts.darts.
"""

from ..engine.random import manual_seed
from . import functional, init, optim
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ModuleList,
    ReLU,
    Sequential,
)
from .module import Module, Parameter, count_parameters

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Flatten",
    "Identity",
    "Linear",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "count_parameters",
    "functional",
    "init",
    "manual_seed",
    "optim",
]
