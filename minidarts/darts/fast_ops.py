"""The conv operations on the fast path: each ReLU - depthwise - 1x1 - BN stage as one Function.

A DilConv (operations.py) is four modules, so four Functions in the graph: ReLU, the
depthwise convolution, the 1x1 convolution and batch norm; a SepConv is two DilConvs.
With four such operations on each of 14 edges, those stages are most of a cell's
arrays and most of its Python time. On the fast path (fast_cell.py) each stage is one
Function, `ReluConvBN`, that calls the kernels the four Functions call, in the same
order, on the same arrays, and

- fuses the ReLU into the copies the depthwise kernel makes anyway (nn/conv.py,
  _Depthwise's relu_mask): relu(x) is never an array, nor a pass over memory, in the
  forward or the backward; the four stages of a mixed op that read the same x (both
  SepConvs' first stages, both DilConvs) share one mask x > 0 (SharedMask);
- keeps only what its backward reads: the graph of the four Functions keeps relu(x)
  and the 1x1 convolution's output alive until the backward, as inputs of the next
  Function, though no backward reads them: two arrays the size of a node per stage;
- costs one Function's Python time instead of four modules', four argument checks and
  four graph records: time that every step pays whatever the batch, and that the
  threads of the fast path wait for in turn (each holds Python's lock while it runs).

The arithmetic is the four Functions', step by step (ReLU's x * mask and gx * mask
included), so the numbers are the same to the bit: tests/test_fast_cell.py compares the
fast and the readable path's forward, every gradient and the BN statistics with
array_equal, and tests/test_fast_ops.py checks ReluConvBN's own gradients against
central differences.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor
from ..nn import batchnorm
from ..nn.conv import _Depthwise, _Pointwise, out_size
from ..nn.layers import BatchNorm2d, Conv2d, ReLU, Sequential
from .operations import DilConv, SepConv


class ReluConvBN(Function):
    """y = BN(conv1x1(depthwise(relu(x), w_dw), w_pw)), one DilConv stage:

        forward   mask = x > 0;  a = depthwise(x * mask) (the mask applied in the
                  kernel's stack copy);  b = w_pw @ a;  y = BN(b)
        backward  gb from BN's backward, then (ga, g w_pw) from the 1x1's,
                  (gx_relu, g w_dw) from the depthwise's, gx = gx_relu * mask (in the
                  depthwise kernel's gather)

    Inputs x, w_dw, w_pw and BN's weight and bias where it has them; the depthwise
    geometry and the batch norm's call (batchnorm.prepare) come as options, and so
    may x > 0 (relu_mask), where several stages read the same x (SharedMask)."""

    def forward(self, x, w_dw, w_pw, *bn_params, stride, padding, dilation, bn, relu_mask=None):
        fn, options = bn
        need = self.needs_input_grad
        self.depthwise = _Depthwise(stride, padding, dilation)
        self.pointwise = _Pointwise((1, 1))
        self.bn = fn()
        # the BN's own input needs a gradient whenever anything before it does
        self.bn.needs_input_grad = (any(need[:3]),) + tuple(need[3:])
        mask = x > 0 if relu_mask is None else relu_mask
        a = self.depthwise.forward(x, w_dw, relu_mask=mask)
        b = self.pointwise.forward(a, w_pw)
        # keep only what the backward will read: the depthwise input for its weight
        # gradient, the mask for any gradient before it, the 1x1's input for its weight
        # gradient (in the architecture step, whose weights are frozen, none but the mask)
        if not need[1]:
            self.depthwise.x = None
        if not (need[0] or need[1]):
            self.depthwise.mask = None
        if not need[2]:
            self.pointwise.x2 = None
        return self.bn.forward(b, *bn_params, **options)

    def backward(self, gy):
        need = self.needs_input_grad
        gb, *bn_grads = self.bn.backward(gy)
        if gb is None:  # only BN's own weight and bias need a gradient
            return (None, None, None, *bn_grads)
        ga, g_pw = self.pointwise.backward(gb, need[0] or need[1], need[2])
        gx, g_dw = (None, None) if ga is None else self.depthwise.backward(ga, need[0], need[1])
        return (gx, g_dw, g_pw, *bn_grads)


# The modules' own forward methods, as defined: a stage is fused only while its layers
# still compute what ReluConvBN computes (a test that swaps ReLU for a smooth function,
# or a user who patches a layer, gets the modules).
_FORWARD = {cls: cls.forward for cls in (ReLU, Conv2d, BatchNorm2d, Sequential, DilConv, SepConv)}


def _unchanged(module):
    """Whether the module is one of _FORWARD's classes and computes what it defines."""
    cls = type(module)
    return cls in _FORWARD and cls.forward is _FORWARD[cls] and "forward" not in vars(module)


def _is_stage(block):
    """Whether a DilConv is the four modules ReluConvBN computes (as DARTS builds it)."""
    layers = list(block.op)
    if len(layers) != 4 or not all(_unchanged(m) for m in [block, block.op] + layers):
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


def _bn_input_shape(block, x):
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


class SharedMask:
    """x > 0 for every stage that reads x, computed on the first request and then
    shared: four operations of a mixed op (both SepConvs' first stages and both
    DilConvs) start with relu(x) of the same x, and each stage keeps its mask for the
    backward, so four masks were four passes over x and four arrays alive until the
    backward, where one does."""

    def __init__(self, x):
        self.x, self._mask = x, None

    def of(self, x):
        """x > 0 if x is the shared input; None for any other tensor."""
        if x is not self.x:
            return None
        if self._mask is None:
            self._mask = x.data > 0
        return self._mask


def relu_conv_bn(block, x, shared=None):
    """block(x) for a DilConv block, as one ReluConvBN (the same numbers), or as the
    modules where the kernels would not take the call as they do (_bn_input_shape).
    shared: a SharedMask of the operations reading the same x."""
    shape = _bn_input_shape(block, x)
    if shape is None:
        return block(x)
    _, dw, pw, bn = block.op
    args = bn.batch_norm_args(x)  # counts the batch as bn(...) would; x is 4-D as its input
    # prepare checks the call on an array of the BN input's shape (one element: no memory)
    xp = backend.get_array_module(x.data)
    fn, params, options = batchnorm.prepare(xp.broadcast_to(xp.empty((), x.dtype), shape), **args)
    return ReluConvBN.apply(
        x,
        dw.weight,
        pw.weight,
        *params,
        stride=dw.stride,
        padding=dw.padding,
        dilation=dw.dilation,
        bn=(fn, options),
        relu_mask=None if shared is None else shared.of(x),
    )


def run(op, x, shared=None):
    """op(x) for one candidate operation of a mixed op, its conv stages fused where it
    is DARTS's SepConv or DilConv; any other operation is called as it is. shared: a
    SharedMask of x (only the stages that read x itself use it)."""
    if type(op) is SepConv and _unchanged(op) and _unchanged(op.op):
        for block in op.op:  # two DilConv stages, each fused where it can be
            x = run(block, x, shared)
        return x
    if type(op) is DilConv and _is_stage(op):
        return relu_conv_bn(op, x, shared)
    return op(x)
