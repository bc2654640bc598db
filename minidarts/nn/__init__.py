"""minidarts.nn: what a network is made of, shaped like torch.nn.

    functional.py   F: the stateless functions (conv2d, pools, batch_norm, activations,
                    dropout, losses)
    conv.py         convolution kernels (im2col, 1x1) with their backward; Conv2d picks one
    depthwise.py    the depthwise kernel (banded matrices) with its backward
    pool.py         max / average / adaptive pooling kernels with their backward
    batchnorm.py    batch normalisation with its backward
    losses.py       cross_entropy, nll_loss, mse_loss (reduction=) and their modules
    module.py       Parameter and Module (the tree of layers and its state)
    layers.py       Conv2d, Linear, BatchNorm, pools, ReLU, Dropout, Sequential, ...
    containers.py   ParameterDict, ParameterList (parameters the tree can see)
    init.py         PyTorch's weight initialisation
    optim/          SGD, Adam, AdamW, gradient clipping; lr_scheduler: the cosine schedule
    utils.py        clip_grad_norm_ at its PyTorch home (nn.utils)
    metrics.py      accuracy

Layer: above minidarts.engine, below minidarts.darts.
"""

from ..engine.random import manual_seed
from . import functional, init, optim, utils
from .containers import ParameterDict, ParameterList
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ModuleList,
    ReLU,
    Sequential,
)
from .losses import CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module, Parameter, count_parameters

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "ReLU",
    "Sequential",
    "count_parameters",
    "functional",
    "init",
    "manual_seed",
    "optim",
    "utils",
]
