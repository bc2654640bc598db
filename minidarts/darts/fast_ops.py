"""The operations of a search cell with the edges that read one state as one call.

In a cell every state feeds several edges (each input state one edge into every node,
node j one into every later node), and each edge runs the same candidate operations on
it. Run edge by edge, a cell is about 250 Functions, most of them small: each pays its
Python time whatever the batch, and the threads of the fast path (fast_cell.py) wait
for Python's lock (the GIL) in turn. Here one operation of the E edges that read a
state is one call (`group_op`):

- a conv stage (ReLU - depthwise - 1x1 - BN; a DilConv, half a SepConv) is one
  Function, `EdgeStage`: the depthwise kernel convolves each channel with its E filters
  side by side (nn/conv.py, _Depthwise with a weight (C, E, kh, kw): one stack of the
  state, one product per kernel row), the E 1x1 convolutions are one batched product,
  one batch norm runs over the E*C channels, and the ReLU is fused into the kernel's
  copies (one mask x > 0 for every stage that reads the state);
- a pool and its batch norm (no weights in the search) give every edge the same output:
  they run once, and each edge's BN layer counts the batch and updates its running
  statistics as its own call would (batchnorm.BatchNormTrain's `more`);
- skip_connect at stride 2 (FactorizedReduce) is one Function, `EdgesFactorizedReduce`;
  the identity at stride 1 is the state itself.

Each keeps only what its backward reads (in the architecture step, whose weights are
frozen, the ReLU mask). The numbers are the edge-by-edge modules' up to rounding:
products and sums over the edges run in another order (a pool's gradient is summed
over the edges before its backward, not after). Where the modules of a group are not
DARTS's as built (an affine batch norm, different settings, a layer patched or
replaced), each edge calls its own modules. tests/test_fast_ops.py checks each
Function against central differences and each kind of group against its modules.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor
from ..engine.ops import cat
from ..nn import batchnorm
from ..nn.conv import _Depthwise, _Pointwise, out_size
from ..nn.layers import BatchNorm2d, Conv2d, Identity, ReLU, Sequential
from .operations import DilConv, FactorizedReduce, Pool, SepConv

# The modules' own forward methods, as defined: a group runs as one call only while its
# layers still compute what that call computes (a test that swaps ReLU for a smooth
# function, or a user who patches a layer, gets the modules).
_FORWARD = {
    cls: cls.forward
    for cls in (ReLU, Conv2d, BatchNorm2d, Sequential, DilConv, SepConv, Identity, Pool)
    + (FactorizedReduce,)
}


def _unchanged(module):
    """Whether the module is one of _FORWARD's classes and computes what it defines."""
    cls = type(module)
    return cls in _FORWARD and cls.forward is _FORWARD[cls] and "forward" not in vars(module)


def _is_stage(block):
    """Whether a DilConv is the four modules EdgeStage computes (as DARTS builds it)."""
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


def _data(t):
    return t.data if isinstance(t, Tensor) else t


# --- the batch norms of E edges as one -----------------------------------------------------


def _bns_agree(bns):
    """Whether the batch norms `bns` (one per edge) can run as one over their channels
    side by side: DARTS's search layers (no weight or bias), unchanged, all set alike."""
    a = bns[0]
    return all(
        type(bn) is BatchNorm2d
        and _unchanged(bn)
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


def _bn_call(bns, x):
    """The E batch norms' call as one over E*C channels: (Function, options, write_back),
    counting the batch in each layer as its call would (x: the stage's 4-D input).
    write_back() hands each layer its slice of the running statistics."""
    args = [bn.batch_norm_args(x) for bn in bns]
    rms = [_data(a["running_mean"]) for a in args]
    rvs = [_data(a["running_var"]) for a in args]
    xp = backend.get_array_module(x.data)
    rm = None if rms[0] is None else xp.concatenate(rms)
    rv = None if rvs[0] is None else xp.concatenate(rvs)
    first = args[0]
    if first["training"]:
        fn = batchnorm.BatchNormTrain
        options = dict(running_mean=rm, running_var=rv, momentum=first["momentum"])
    else:
        fn, options = batchnorm.BatchNormEval, dict(running_mean=rm, running_var=rv)

    def write_back():
        if rm is not None and first["training"]:
            c = rms[0].shape[0]
            for k, (m, v) in enumerate(zip(rms, rvs)):
                m[...] = rm[k * c : (k + 1) * c]
                v[...] = rv[k * c : (k + 1) * c]

    return fn, dict(options, has_weight=False, has_bias=False, eps=first["eps"]), write_back


def _run_bn(fn, options, y):
    """y normalised by the Function fn with options; (the Function, its output)."""
    bn = fn()
    return bn, bn.forward(y, **options)


# --- one conv stage of E edges ----------------------------------------------------------------


class EdgeStage(Function):
    """One DilConv stage (ReLU - depthwise - 1x1 - BN) on E edges at once:

        a_e = depthwise(relu(x_e), dw_e);  b_e = pw_e @ a_e;  y = BN([b_1 .. b_E])

    shared=True: x (N, C, H, W) is the state that all E edges read; the depthwise kernel
    takes each channel's E filters side by side (weight (C, E, kh, kw)). shared=False:
    x (N, E*C, H, W) holds edge e's input in channels e*C ..: a depthwise convolution of
    E*C channels (a SepConv's second stage). The E 1x1 convolutions are one batched
    product (E, C', C) @ (N, E, C, HW); one batch norm runs over the E*C' channels.
    Inputs: x, then the E depthwise weights (C, 1, kh, kw), then the E 1x1 weights
    (C', C, 1, 1). Backward: BN's, the batched product's (gw_e = sum_n gb_e a_e^T,
    ga_e = pw_e^T gb_e), then the depthwise kernel's, gx summed over the E filters for a
    shared x; the ReLU fused into the depthwise kernel's copies (x * mask in its stack,
    gx * mask in its gather)."""

    def forward(self, x, *weights, shared, stride, padding, dilation, bn, relu_mask=None):
        xp = backend.get_array_module(x)
        e = self.e = len(weights) // 2
        need = self.needs_input_grad
        self.need_x, self.need_dw, self.need_pw = need[0], any(need[1 : 1 + e]), any(need[1 + e :])
        dws, pws = weights[:e], weights[e:]
        w_dw = xp.concatenate(dws, axis=1 if shared else 0)
        self.shared, self.dw_shape, self.pw_shape = shared, dws[0].shape, pws[0].shape
        self.depthwise = _Depthwise(stride, padding, dilation)
        mask = x > 0 if relu_mask is None else relu_mask
        a = self.depthwise.forward(x, w_dw, relu_mask=mask)  # (N, E*C, Ho, Wo)
        n, ec, ho, wo = a.shape
        c, c_out = ec // e, pws[0].shape[0]
        self.w_pw = xp.stack([w.reshape(c_out, c) for w in pws])  # (E, C', C)
        a = a.reshape(n, e, c, ho * wo)
        b = xp.matmul(self.w_pw, a).reshape(n, e * c_out, ho, wo)
        # keep what the backward reads (the architecture step, its weights
        # frozen, keeps only the mask)
        self.a = a if self.need_pw else None
        if not self.need_dw:
            self.depthwise.x = None
        if not (self.need_x or self.need_dw):
            self.depthwise.mask = None
        fn, options = bn
        self.bn, y = _run_bn(fn, options, b)
        self.bn.needs_input_grad = (True,)
        return y

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        e = self.e
        (gb,) = self.bn.backward(gy)
        n, ec_out, ho, wo = gb.shape
        gb = gb.reshape(n, e, ec_out // e, ho * wo)
        g_dw, g_pw = [None] * e, [None] * e
        if self.need_pw:
            gw = xp.matmul(gb, self.a.swapaxes(-1, -2)).sum(axis=0)  # (E, C', C)
            g_pw = [gw[k].reshape(self.pw_shape) for k in range(e)]
        gx = None
        if self.need_x or self.need_dw:
            ga = xp.matmul(self.w_pw.swapaxes(-1, -2), gb)  # (N, E, C, HW)
            ga = ga.reshape(n, -1, ho, wo)
            gx, gw = self.depthwise.backward(ga, self.need_x, self.need_dw)
            if self.need_dw:
                c = self.dw_shape[0]
                if self.shared:  # (C, E, kh, kw)
                    g_dw = [xp.ascontiguousarray(gw[:, k : k + 1]) for k in range(e)]
                else:  # (E*C, 1, kh, kw)
                    g_dw = [gw[k * c : (k + 1) * c] for k in range(e)]
        return (gx, *g_dw, *g_pw)


class EdgesFactorizedReduce(Function):
    """skip_connect at stride 2 (operations.FactorizedReduce) on E edges reading one x:

        r = relu(x);  y1 = [c1_1 .. c1_E] @ r[::2, ::2];  y2 = [c2_1 .. c2_E] @ r[1::2, 1::2]
        y = BN(edge e's channels: y1_e then y2_e (y2 zero-padded at the end if shorter))

    each 1x1 convolution of the E edges one product with their weights stacked.
    Inputs: x, the E conv_1 weights, the E conv_2 weights (C/2, C_in, 1, 1)."""

    def forward(self, x, *weights, bn, relu_mask=None):
        xp = backend.get_array_module(x)
        e = self.e = len(weights) // 2
        need = self.needs_input_grad
        self.need_x, self.need_w = need[0], any(need[1:])
        self.w_shape = weights[0].shape
        self.mask = x > 0 if relu_mask is None else relu_mask
        r = x * self.mask  # ReLU's x * mask, as the ReLU Function computes it
        self.p1, self.p2 = _Pointwise((2, 2)), _Pointwise((2, 2))
        y1 = self.p1.forward(r, xp.concatenate(weights[:e]))  # (N, E*C/2, Ho, Wo)
        y2 = self.p2.forward(r[:, :, 1:, 1:], xp.concatenate(weights[e:]))
        n, _, ho, wo = y1.shape
        half, (h2, w2) = self.w_shape[0], y2.shape[2:]
        self.h2w2 = h2, w2
        y = xp.zeros((n, e, 2 * half, ho, wo), dtype=y1.dtype)
        y[:, :, :half] = y1.reshape(n, e, half, ho, wo)
        y[:, :, half:, :h2, :w2] = y2.reshape(n, e, half, h2, w2)
        if not self.need_w:
            self.p1.x2 = self.p2.x2 = None
        fn, options = bn
        self.bn, out = _run_bn(fn, options, y.reshape(n, e * 2 * half, ho, wo))
        self.bn.needs_input_grad = (True,)
        return out

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        e, half, (h2, w2) = self.e, self.w_shape[0], self.h2w2
        (gb,) = self.bn.backward(gy)
        n, _, ho, wo = gb.shape
        gb = gb.reshape(n, e, 2 * half, ho, wo)
        gy1 = xp.ascontiguousarray(gb[:, :, :half]).reshape(n, e * half, ho, wo)
        gy2 = xp.ascontiguousarray(gb[:, :, half:, :h2, :w2]).reshape(n, e * half, h2, w2)
        gx1, gw1 = self.p1.backward(gy1, self.need_x, self.need_w)
        gx2, gw2 = self.p2.backward(gy2, self.need_x, self.need_w)
        gx = None
        if self.need_x:
            gx1[:, :, 1:, 1:] += gx2
            gx = gx1 * self.mask  # ReLU's backward
        g1 = g2 = [None] * e
        if self.need_w:
            g1 = [gw1[k * half : (k + 1) * half] for k in range(e)]
            g2 = [gw2[k * half : (k + 1) * half] for k in range(e)]
        return (gx, *g1, *g2)


def _values_per_channel_ok(bn, n, h, w):
    """A training batch norm needs more than one value per channel (the readable path
    raises its own clear error there: such a call takes it)."""
    return not (bn.training or bn.running_mean is None) or n * h * w > 1


def _stages_ok(blocks, x):
    """The shape of the output if the DilConv blocks (one per edge) can run as one
    EdgeStage on x (a tensor of the shape of each edge's input), else None."""
    if not all(_is_stage(b) for b in blocks):
        return None
    geometry = {
        (dw.kernel_size, dw.stride, dw.padding, dw.dilation, dw.in_channels, pw.out_channels)
        for _, dw, pw, _ in (b.op for b in blocks)
    }
    if len(geometry) != 1 or not _bns_agree([b.op[3] for b in blocks]):
        return None
    shapes = {_bn_input_shape(b, x) for b in blocks}
    shape = shapes.pop()
    if shapes or shape is None or not _values_per_channel_ok(blocks[0].op[3], shape[0], *shape[2:]):
        return None
    return shape


def _stage(blocks, x, shared, mask=None):
    """The blocks' stage on x as one EdgeStage (shared: x is the state all read)."""
    _, dw, _, _ = blocks[0].op
    fn, options, write_back = _bn_call([b.op[3] for b in blocks], x)
    y = EdgeStage.apply(
        x,
        *[b.op[1].weight for b in blocks],
        *[b.op[2].weight for b in blocks],
        shared=shared,
        stride=dw.stride,
        padding=dw.padding,
        dilation=dw.dilation,
        bn=(fn, options),
        relu_mask=mask,
    )
    write_back()
    return y


def _pools_ok(mods):
    """Whether the Sequential(Pool, BatchNorm2d) of each edge computes one output for all
    (in evaluation, only where their running statistics are equal)."""
    if not all(type(m) is Sequential and _unchanged(m) and len(list(m)) == 2 for m in mods):
        return False
    pools, bns = [list(m)[0] for m in mods], [list(m)[1] for m in mods]
    key = (pools[0].kind, pools[0].stride)
    if not all(type(p) is Pool and _unchanged(p) and (p.kind, p.stride) == key for p in pools):
        return False
    if not _bns_agree(bns):
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


def _pools(mods, h):
    """One pool and one batch norm for all edges; each edge's layer counts the batch and
    updates its running statistics as its own call would (BatchNormTrain's `more`)."""
    pool, bns = list(mods[0])[0], [list(m)[1] for m in mods]
    y = pool(h)
    args = [bn.batch_norm_args(y) for bn in bns]
    fn, params, options = batchnorm.prepare(y, **args[0])
    if fn is batchnorm.BatchNormTrain:
        options["more"] = tuple(
            (_data(a["running_mean"]), _data(a["running_var"])) for a in args[1:]
        )
    return fn.apply(y, *params, **options)


def _reduces_ok(mods, x):
    """Whether the FactorizedReduce of each edge can run as one EdgesFactorizedReduce."""
    first = mods[0]

    def conv_ok(c):
        return (
            type(c) is Conv2d
            and _unchanged(c)
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
        and _unchanged(m)
        and type(m.relu) is ReLU
        and _unchanged(m.relu)
        and conv_ok(m.conv_1)
        and conv_ok(m.conv_2)
        for m in mods
    ):
        return False
    if not (x.ndim == 4 and x.shape[1] == first.conv_1.in_channels and x.device == "cpu"):
        return False
    n, _, h, w = x.shape
    bns = [m.bn for m in mods]
    return _bns_agree(bns) and _values_per_channel_ok(bns[0], n, (h + 1) // 2, (w + 1) // 2)


def _reduces(mods, x, mask):
    fn, options, write_back = _bn_call([m.bn for m in mods], x)
    y = EdgesFactorizedReduce.apply(
        x,
        *[m.conv_1.weight for m in mods],
        *[m.conv_2.weight for m in mods],
        bn=(fn, options),
        relu_mask=mask,
    )
    write_back()
    return y


def group_op(mods, h, mask):
    """One candidate operation on the E edges that read state h: (output, shared), the
    output (N, E*C, H', W') (edge e in channels e*C ..), or (N, C, H', W') where it is
    the same for every edge (shared). mods: the operation's module on each edge; mask:
    h > 0, shared by every stage that starts with relu(h). Where the modules are not
    DARTS's as built, each edge calls its own (the readable numbers exactly)."""
    first = mods[0]
    if type(first) is SepConv and all(
        type(m) is SepConv and _unchanged(m) and _unchanged(m.op) for m in mods
    ):
        if all(len(list(m.op)) == 2 for m in mods):
            blocks1, blocks2 = zip(*[list(m.op) for m in mods])
            shape = _stages_ok(blocks1, h)
            # the second stage's input: one edge's first-stage output (its shape only)
            xp = backend.get_array_module(h.data)
            like = shape and Tensor(xp.broadcast_to(xp.zeros((), h.dtype), shape))
            if shape and _stages_ok(blocks2, like):
                y = _stage(blocks1, h, True, mask)
                return _stage(blocks2, y, False), False
    elif type(first) is DilConv and _stages_ok(mods, h):
        return _stage(mods, h, True, mask), False
    elif type(first) is Sequential and _pools_ok(mods):
        return _pools(mods, h), True
    elif all(type(m) is Identity and _unchanged(m) for m in mods):
        return h, True
    elif type(first) is FactorizedReduce and _reduces_ok(mods, h):
        return _reduces(mods, h, mask), False
    outs = [m(h) for m in mods]
    return (cat(outs, dim=1) if len(outs) > 1 else outs[0]), False
