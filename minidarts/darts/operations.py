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
"""

from .. import nn
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


def op_param_count(name, C, stride, affine=False):
    """Number of weights of candidate operation `name` on an edge with C channels,
    counted from the formulas (building the op would draw random numbers):

        sep_conv_kxk : 2 (k^2 C + C^2)      two depthwise + pointwise pairs
        dil_conv_kxk : k^2 C + C^2
        skip_connect : 0, or C^2 at stride 2 (FactorizedReduce: two 1x1 convs C -> C/2)
        pools, none  : 0
    plus 2C per BN layer when affine. tests/test_operations.py checks these against
    the built modules."""
    bn = 2 * C if affine else 0
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return 2 * (k * k * C + C * C + bn)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return k * k * C + C * C + bn
    if name == "skip_connect":
        return 0 if stride == 1 else C * C + bn
    if name in PRIMITIVES:
        return 0
    raise KeyError(f"unknown operation {name!r}: expected one of {PRIMITIVES}")
