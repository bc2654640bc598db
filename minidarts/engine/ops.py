"""The differentiable operations of the engine, each backward beside its forward.

Arithmetic (with NumPy broadcasting), exp/log/sqrt/pow, batched matmul,
reductions (sum, mean, max over `dim` with `keepdim`, as in PyTorch), shape
operations (reshape, permute/transpose, indexing, cat, stack, pad) and the
activations and losses (relu, sigmoid, tanh, softmax, log_softmax,
cross_entropy). The convolution, pooling and batch-norm kernels live in
minidarts.nn.

Notation in the docstrings: y is the forward output, gy = dL/dy the gradient
arriving at backward, gx = dL/dx the gradient it returns.

The ops live in four files by family (arithmetic, reductions, shape,
activations); this module gathers them, so that `ops.add` is one name to
remember and Tensor's methods find every op in one place.
"""

from .activations import (  # noqa: F401
    cross_entropy,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from .arithmetic import (  # noqa: F401
    add,
    div,
    exp,
    log,
    matmul,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    unbroadcast,
)
from .reductions import (  # noqa: F401
    max,
    mean,
    sum,
)
from .shape import (  # noqa: F401
    cat,
    getitem,
    pad,
    permute,
    reshape,
    stack,
    transpose,
)
