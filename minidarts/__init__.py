"""minidarts: differentiable architecture search (DARTS) with complexity control,
written from scratch on NumPy (CPU) and CuPy (GPU) for reading and teaching.

The package is five layers, each a subpackage that imports only from the layers
below it (tests/test_layout.py checks it):

    engine     arrays to gradients: backend (numpy/cupy), Tensor/Function, ops, gradcheck
    nn         functional (F), the conv/pool/batch-norm kernels, Module and layers, optim
    darts      the paper: operations, mixed op (eq. 2), cell (eq. 1), networks, genotype,
               architect (eq. 3), complexity, hypernetworks (eq. 4-5)
    jobs       what a user runs: data, config, search, train, sweep, experiment, plots, bench
    classroom  the assignment tool
"""

from . import nn
from .engine import backend
from .engine.autograd import Function, Tensor, is_grad_enabled, no_grad, tensor
from .engine.backend import get_array_module, set_default_device, to_numpy
from .engine.gradcheck import gradcheck, numerical_grad
from .engine.ops import (
    cat,
    exp,
    log,
    matmul,
    max,
    mean,
    permute,
    reshape,
    sqrt,
    stack,
    sum,
    transpose,
)
from .engine.parallel import num_threads, set_num_threads
from .engine.random import manual_seed
from .nn import functional, optim

# the layers, bottom up: a module may import from its own layer and the ones before it
LAYERS = ("engine", "nn", "darts", "jobs", "classroom")

__version__ = "0.1.0"

# Reuse freed array memory instead of page-faulting it back in (see its docstring):
# a DARTS step on the CPU runs about a third faster. MINIDARTS_MALLOC_TUNING=0 skips it.
backend.keep_freed_memory()

__all__ = [
    "Function",
    "Tensor",
    "backend",
    "cat",
    "exp",
    "functional",
    "get_array_module",
    "gradcheck",
    "is_grad_enabled",
    "log",
    "manual_seed",
    "matmul",
    "max",
    "mean",
    "nn",
    "no_grad",
    "num_threads",
    "numerical_grad",
    "optim",
    "permute",
    "reshape",
    "set_default_device",
    "set_num_threads",
    "sqrt",
    "stack",
    "sum",
    "tensor",
    "to_numpy",
    "transpose",
]
