"""The DARTS search space: the 8 candidate operations on an edge of a cell.

    PRIMITIVES = none, max_pool_3x3, avg_pool_3x3, skip_connect,
                 sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5

exactly as in DARTS (Liu et al., 2019). Every operation maps C channels to C
channels; with stride 2 (edges leaving the inputs of a reduction cell) it halves
the height and width. `OPS[name](C, stride, affine)` builds one.

    sep_conv_kxk : ReLU - depthwise kxk (stride) - 1x1 - BN - ReLU - depthwise kxk - 1x1 - BN
    dil_conv_kxk : ReLU - depthwise kxk, dilation 2 (stride) - 1x1 - BN
    skip_connect : identity, or FactorizedReduce at stride 2
    pools        : 3x3, padding 1; the search adds a BN after them (see mixed_op.py)
    none         : zeros (the edge is absent)

BN layers here have affine=False during the search (DARTS: learned scales would
interfere with the architecture weights) and affine=True in the retrained network.

The space is open: `register_operation(name, builder)` adds an operation, and a
network built with `primitives=(..., name)` searches with it. Its weight count
(for the complexity and the expected-cost rule) comes from building it once per
(C, stride, affine), never from its name, unless the registration gives a count.
"""

from .. import nn
from ..engine import random
from ..engine.ops import cat
from ..nn import functional as F

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Module):
    """ReLU - conv kxk (no bias) - BN: the preprocessing of a cell's inputs (k = 1)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    """ReLU - depthwise kxk conv with dilation (groups = C_in) - pointwise 1x1 - BN.

    A depthwise conv followed by a 1x1 conv is a 'separable' convolution: k*k*C + C*C'
    weights instead of k*k*C*C'."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked DilConv blocks with dilation 1, the stride on the first (DARTS's
    sep_conv: the stacking gives it the receptive field of a (2k-1)x(2k-1) conv)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )

    def forward(self, x):
        return self.op(x)


class Zero(nn.Module):
    """The 'none' operation: zeros shaped like the output of a real operation."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return x * 0.0


class FactorizedReduce(nn.Module):
    """skip_connect at stride 2: halve H and W without losing half of the pixels.

    Two 1x1 convs with stride 2, one on x and one on x shifted by one pixel
    (x[:, :, 1:, 1:]), each giving C_out/2 channels, so together they see every
    pixel of a 2x2 block; concatenated, then BN."""

    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce: C_out must be even, got {C_out}")
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        y1 = self.conv_1(x)
        y2 = self.conv_2(x[:, :, 1:, 1:])
        if y2.shape != y1.shape:
            # odd H or W: the shifted input is one pixel short; pad it back at the end
            y2 = F.pad(y2, (0, y1.shape[3] - y2.shape[3], 0, y1.shape[2] - y2.shape[2]))
        return self.bn(cat([y1, y2], dim=1))


class Pool(nn.Module):
    """A 3x3 max or average pool with padding 1 (average: padding not counted)."""

    def __init__(self, kind, stride):
        super().__init__()
        self.kind, self.stride = kind, stride

    def forward(self, x):
        if self.kind == "max":
            return F.max_pool2d(x, 3, stride=self.stride, padding=1)
        return F.avg_pool2d(x, 3, stride=self.stride, padding=1, count_include_pad=False)


def _skip(C, stride, affine):
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


OPS = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: Pool("max", stride),
    "avg_pool_3x3": lambda C, stride, affine: Pool("avg", stride),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}

# DARTS's own builders, as registered above: the fast path (fast_cell.py) runs only these
# on several threads, since an operation registered later may not be safe to run so
# (one that draws from the global random generator would lose its determinism).
_DARTS_BUILDERS = dict(OPS)


def is_darts_operation(name):
    """Whether `name` is one of DARTS's 8 operations, built by its original builder."""
    return name in _DARTS_BUILDERS and OPS.get(name) is _DARTS_BUILDERS[name]


# counts given at registration: name -> (builder, int or function (C, stride, affine))
_GIVEN_COUNTS = {}
# counts read off built modules: (builder, C, stride, affine) -> int. Keyed by the
# builder itself, so an operation swapped in behind an old name is counted afresh.
_BUILT_COUNTS = {}


class UnknownOperationError(KeyError, ValueError):
    """An operation name that is not registered: a failed lookup (KeyError) and a bad
    argument (ValueError) at once, so either `except` catches it. The message names the
    registered operations."""

    def __str__(self):
        return str(self.args[0])  # KeyError would print the repr of the message


def operation_names():
    """The names of every registered operation, DARTS's 8 first, in registration order."""
    return tuple(OPS)


def _builder(name):
    builder = OPS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise UnknownOperationError(
            f"unknown operation {name!r}: the registered operations are "
            f"{', '.join(OPS)} (add one with register_operation(name, builder))"
        )
    return builder


def register_operation(name, builder, param_count=None):
    """Add (or replace) the candidate operation `name`.

    builder(C, stride, affine) returns a Module mapping (N, C, H, W) to
    (N, C, ceil(H / stride), ceil(W / stride)), with BN layers affine as asked.
    param_count: None to count the weights of a built module,

        params(name, C, stride, affine) = sum of p.numel() over p in op.parameters(),
        op = builder(C, stride, affine)

    (built once per (C, stride, affine) and cached); or an int (every edge); or a
    function (C, stride, affine) -> int. As in DARTS's search, an operation whose name
    contains 'pool' gets a BN (affine=False, no weights) after it in the mixed op.
    Returns `builder`. 'none' (the absent edge) cannot be replaced."""
    if not isinstance(name, str) or not name or name.strip() != name:
        raise ValueError(f"register_operation: name must be a non-empty string, got {name!r}")
    if name == "none":
        raise ValueError(
            "register_operation: 'none' is the absent edge (skipped by the mixed op, never "
            "derived) and cannot be replaced"
        )
    if not callable(builder):
        raise TypeError(f"register_operation({name!r}): builder must be callable")
    if not (
        param_count is None
        or callable(param_count)
        or (isinstance(param_count, int) and not isinstance(param_count, bool) and param_count >= 0)
    ):
        raise ValueError(
            f"register_operation({name!r}): param_count must be None, a non-negative int or "
            f"a function (C, stride, affine) -> int, got {param_count!r}"
        )
    OPS[name] = builder
    _GIVEN_COUNTS.pop(name, None)
    if param_count is not None:
        _GIVEN_COUNTS[name] = (builder, param_count)
    return builder


def build_operation(name, C, stride, affine=False):
    """The operation `name` on an edge with C channels: OPS[name](C, stride, affine),
    with an error naming the registered operations when `name` is not one of them."""
    return _builder(name)(C, stride, affine)


def op_param_count(name, C, stride, affine=False):
    """Number of weights of operation `name` on an edge with C channels: the count given
    at registration, or else that of the built module (cached per builder, C, stride
    and affine; built from a generator of its own, so the global random stream is
    untouched). For DARTS's operations this is

        sep_conv_kxk : 2 (k^2 C + C^2)      two depthwise + pointwise pairs
        dil_conv_kxk : k^2 C + C^2
        skip_connect : 0, or C^2 at stride 2 (FactorizedReduce: two 1x1 convs C -> C/2)
        pools, none  : 0
    plus 2C per BN layer when affine (tests/test_operations.py checks these)."""
    builder = _builder(name)
    given = _GIVEN_COUNTS.get(name)
    if given is not None and given[0] is builder:
        count = given[1]
        return int(count(C, stride, affine) if callable(count) else count)
    key = (builder, C, stride, bool(affine))
    if key not in _BUILT_COUNTS:
        with random.seeded(0):
            op = builder(C, stride, affine)
        _BUILT_COUNTS[key] = sum(p.numel() for p in op.parameters())
    return _BUILT_COUNTS[key]
