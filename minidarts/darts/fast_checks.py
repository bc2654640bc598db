"""Which operations of the edges that read one state may run as one call (fast_ops.py).

A group of edges runs as one call only where every edge's modules are DARTS's as built:
the classes operations.py builds, with their own forward methods (a test that swaps
ReLU for a smooth function, or a user who patches a layer, gets the modules), the
geometry of each operation, batch norms without weights and with the same settings on
every edge, and an input the kernels take as the modules would (a 4-D floating CPU
tensor of the weights' dtype). Anything else runs edge by edge, through the modules,
which raise their own clear errors for bad input.
"""

import weakref

from ..engine import backend
from ..engine.autograd import Tensor
from ..nn.conv import out_size
from ..nn.layers import BatchNorm2d, Conv2d, Identity, ReLU, Sequential
from ..nn.module import changes
from .operations import DilConv, FactorizedReduce, Pool, SepConv

# The modules' own forward methods, as defined: a group runs as one call only while its
# layers still compute what that call computes (a test that swaps ReLU for a smooth
# function, or a user who patches a layer, gets the modules).
_FORWARD = {
    cls: cls.forward
    for cls in (ReLU, Conv2d, BatchNorm2d, Sequential, DilConv, SepConv, Identity, Pool)
    + (FactorizedReduce,)
}


def unchanged(module):
    """Whether the module is one of _FORWARD's classes and computes what it defines."""
    cls = type(module)
    return cls in _FORWARD and cls.forward is _FORWARD[cls] and "forward" not in vars(module)


def is_stage(block):
    """Whether a DilConv is the four modules EdgeStage computes (as DARTS builds it)."""
    layers = list(block.op)
    if len(layers) != 4 or not all(unchanged(m) for m in [block, block.op] + layers):
        return False
    relu, dw, pw, bn = layers
    return (
        type(relu) is ReLU
        and type(dw) is Conv2d
        and dw.bias is None
        and dw.groups == dw.in_channels == dw.out_channels
        and type(pw) is Conv2d
        and pw.bias is None
        and pw.groups == 1
        and pw.in_channels == dw.out_channels
        and pw.kernel_size == (1, 1)
        and pw.stride == (1, 1)
        and pw.padding == (0, 0)
        and type(bn) is BatchNorm2d
    )


def bn_input_shape(block, x):
    """The shape of the BN's input (the 1x1's output) when the kernels take this call as
    the modules would (x a 4-D CPU float tensor with the block's channels and its
    weights' dtype, a kernel that fits the padded input); None otherwise. Off the CPU
    Conv2d picks im2col, not the depthwise kernel; for the rest the modules raise
    their own clear errors."""
    _, dw, pw, _ = block.op
    weights = (dw.weight, pw.weight)
    if not (
        isinstance(x, Tensor)
        and x.ndim == 4
        and x.shape[1] == dw.in_channels
        and backend.is_floating(x.data)
        and all(w.dtype == x.dtype for w in weights)
        and all(t.device == "cpu" for t in (x, *weights))
    ):
        return None
    n, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw_), (dh, dw_) = dw.kernel_size, dw.stride, dw.padding, dw.dilation
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw_, dw_)
    return (n, pw.out_channels, ho, wo) if min(ho, wo) >= 1 else None


def bns_agree(bns):
    """Whether the batch norms `bns` (one per edge) can run as one over their channels
    side by side: DARTS's search layers (no weight or bias), unchanged, all set alike."""
    a = bns[0]
    return all(
        type(bn) is BatchNorm2d
        and unchanged(bn)
        and bn.weight is None
        and bn.bias is None
        and (bn.training, bn.momentum, bn.eps) == (a.training, a.momentum, a.eps)
        and (bn.running_mean is None) == (a.running_mean is None)
        # a cumulative average (momentum None) weighs by each layer's own count
        and (
            a.momentum is not None
            or int(bn.num_batches_tracked.data) == int(a.num_batches_tracked.data)
        )
        for bn in bns
    )


def values_per_channel_ok(bn, n, h, w):
    """A training batch norm needs more than one value per channel (the readable path
    raises its own clear error there: such a call takes it)."""
    return not (bn.training or bn.running_mean is None) or n * h * w > 1


# stages_ok's answers, by the group's first block: (a weak reference to it, changes()
# when answered, the question, the answer). The checks walk every layer of every edge,
# and a step asks 60 times: their Python time was about 12% of a step at batch 1, which
# the threads wait for in turn (a step at batch 32 took 13% less with them answered
# once in one in-process A/B, 3% less in another). An answer holds while no module
# changed through the Module API (nn/module.py, changes(): attributes, parameters,
# sub-modules, train/eval, to()) and no class's forward was replaced; the weights'
# dtype and kind of array are checked at every call (fast_ops.py), as a Tensor's data
# can be replaced without the Module knowing.
_ANSWERS = {}


def _classes_unchanged():
    return all(cls.forward is forward for cls, forward in _FORWARD.items())


def stages_ok(blocks, x):
    """The shape of the output if the DilConv blocks (one per edge) can run as one
    EdgeStage on x (a tensor of the shape of each edge's input), else None; answered
    once while nothing changes (_ANSWERS)."""
    question, now = (tuple(map(id, blocks)), x.shape, x.dtype, type(x.data)), changes()
    classes = _classes_unchanged()  # else neither trusted nor kept
    entry = _ANSWERS.get(id(blocks[0]))
    if classes and entry is not None and entry[0]() is blocks[0]:
        if entry[1:3] == (now, question):
            return entry[3]
    answer = _check_stages(blocks, x)
    # a cumulative average (momentum None) makes the answer depend on the batch counts
    if classes and (answer is None or blocks[0].op[3].momentum is not None):
        _ANSWERS[id(blocks[0])] = (weakref.ref(blocks[0]), now, question, answer)
    return answer


def _check_stages(blocks, x):
    if not all(is_stage(b) for b in blocks):
        return None
    geometry = {
        (dw.kernel_size, dw.stride, dw.padding, dw.dilation, dw.in_channels, pw.out_channels)
        for _, dw, pw, _ in (b.op for b in blocks)
    }
    if len(geometry) != 1 or not bns_agree([b.op[3] for b in blocks]):
        return None
    shapes = {bn_input_shape(b, x) for b in blocks}
    shape = shapes.pop()
    if shapes or shape is None or not values_per_channel_ok(blocks[0].op[3], shape[0], *shape[2:]):
        return None
    return shape


def pools_ok(mods):
    """Whether the Sequential(Pool, BatchNorm2d) of each edge computes one output for all
    (in evaluation, only where their running statistics are equal)."""
    if not all(type(m) is Sequential and unchanged(m) and len(list(m)) == 2 for m in mods):
        return False
    pools, bns = [list(m)[0] for m in mods], [list(m)[1] for m in mods]
    key = (pools[0].kind, pools[0].stride)
    if not all(type(p) is Pool and unchanged(p) and (p.kind, p.stride) == key for p in pools):
        return False
    if not bns_agree(bns):
        return False
    first = bns[0]
    if first.training or first.running_mean is None:
        return True
    xp = backend.get_array_module(first.running_mean.data)
    return all(
        xp.array_equal(bn.running_mean.data, first.running_mean.data)
        and xp.array_equal(bn.running_var.data, first.running_var.data)
        for bn in bns
    )


def reduces_ok(mods, x):
    """Whether the FactorizedReduce of each edge can run as one EdgesFactorizedReduce."""
    first = mods[0]

    def conv_ok(c):
        return (
            type(c) is Conv2d
            and unchanged(c)
            and c.bias is None
            and (c.kernel_size, c.stride, c.padding, c.dilation, c.groups)
            == ((1, 1), (2, 2), (0, 0), (1, 1), 1)
            and (c.in_channels, c.out_channels)
            == (first.conv_1.in_channels, first.conv_1.out_channels)
            and c.weight.dtype == x.dtype
            and c.weight.device == "cpu"
        )

    if not all(
        type(m) is FactorizedReduce
        and unchanged(m)
        and type(m.relu) is ReLU
        and unchanged(m.relu)
        and conv_ok(m.conv_1)
        and conv_ok(m.conv_2)
        for m in mods
    ):
        return False
    if not (x.ndim == 4 and x.shape[1] == first.conv_1.in_channels and x.device == "cpu"):
        return False
    n, _, h, w = x.shape
    bns = [m.bn for m in mods]
    return bns_agree(bns) and values_per_channel_ok(bns[0], n, (h + 1) // 2, (w + 1) // 2)
