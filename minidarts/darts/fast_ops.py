"""The operations of a search cell with the edges that read one state as one call.

In a cell every state feeds several edges (each input state one edge into every node,
node j one into every later node), and each edge runs the same candidate operations on
it. Run edge by edge, a cell is about 250 Functions, most of them small: each pays its
Python time whatever the batch, and the threads of the fast path (fast_cell.py) wait
for Python's lock (the GIL) in turn. Here one operation of the E edges that read a
state is one call (`group_op`):

- a conv stage (ReLU - depthwise - 1x1 - BN; a DilConv, half a SepConv) is one
  Function, `EdgeStage`: the depthwise kernel convolves each channel with its E filters
  side by side (nn/depthwise.py, _Depthwise with a weight (C, E, kh, kw): one stack of the
  state, one product per kernel row), the E 1x1 convolutions are one batched product,
  one batch norm runs over the E*C channels, and the ReLU is fused into the kernel's
  copies (one mask x > 0 for every stage that reads the state);
- a pool and its batch norm (no weights in the search) give every edge the same output:
  they run once, and each edge's BN layer counts the batch and updates its running
  statistics as its own call would (batchnorm.BatchNormTrain's `more`);
- skip_connect at stride 2 (FactorizedReduce) is one Function, `EdgesFactorizedReduce`;
  the identity at stride 1 is the state itself.

Each keeps only what its backward reads (in the architecture step, whose weights are
frozen, the ReLU mask), and a large batch runs the depthwise kernel a chunk of images
at a time (CHUNK_ELEMENTS), which keeps its arrays in the cache. The numbers are the
edge-by-edge modules' up to rounding: products and sums over the edges run in another
order (a pool's gradient is summed over the edges before its backward, not after).
Where the modules of a group are not DARTS's as built (fast_checks.py: an affine batch
norm, different settings, a layer patched or replaced), each edge calls its own
modules. tests/test_fast_ops.py checks each Function against central differences and
each kind of group against its modules.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor
from ..engine.ops import cat
from ..nn import batchnorm
from ..nn.conv import _Pointwise, out_size
from ..nn.depthwise import _Depthwise
from ..nn.layers import Identity, Sequential
from .fast_checks import pools_ok, reduces_ok, stages_ok, unchanged
from .operations import DilConv, FactorizedReduce, SepConv


def _data(t):
    return t.data if isinstance(t, Tensor) else t


# --- the batch norms of E edges as one -----------------------------------------------------


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

# Output elements per depthwise call (EdgeStage): a chunk of images at a time keeps the
# kernel's row stack and products in the cache the two threads share (whole, they are
# 14 MB each for an input state's 4 edges at batch 256). Measured on 2 threads, the
# conv stages of two input states, forward and backward, ms an image at batch 32 / 64 /
# 256: whole 2.52 / 2.43 / 2.68, 1 << 18 elements 2.50 / 2.45 / 2.36, 1 << 19 2.54 /
# 2.37 / 2.30 (7 interleaved rounds); 1 << 16 was slower at every batch.
CHUNK_ELEMENTS = 1 << 19


class _DepthwiseChunks:
    """nn/depthwise.py's _Depthwise, a chunk of images at a time (each image's convolution is
    its own; the weight gradient is summed over the chunks)."""

    def __init__(self, stride, padding, dilation):
        self.geometry, self.parts = (stride, padding, dilation), []

    def forward(self, x, w, relu_mask):
        xp = backend.get_array_module(x)
        (n, c, h, wd), (e, kh, kw) = x.shape, w.shape[1:]
        (sh, sw), (ph, pw), (dh, dw) = self.geometry
        ho, wo = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
        step = max(1, CHUNK_ELEMENTS // (e * c * ho * wo))
        self.x_shape = x.shape
        out = xp.empty((n, e * c, ho, wo), dtype=x.dtype)
        for i in range(0, n, step):
            part = _Depthwise(*self.geometry)
            part.forward(x[i : i + step], w, relu_mask[i : i + step], out=out[i : i + step])
            self.parts.append((i, min(n, i + step), part))
        return out

    def forget(self, x, mask):
        """Let go of the input (no weight gradient) or the mask (no gradient at all)."""
        for _, _, part in self.parts:
            part.x = None if x else part.x
            part.mask = None if mask else part.mask

    def backward(self, gy, need_x, need_w):
        xp = backend.get_array_module(gy)
        gx = xp.empty(self.x_shape, dtype=gy.dtype) if need_x else None
        gw = None
        for i, j, part in self.parts:
            gx_part, gw_part = part.backward(gy[i:j], need_x, need_w)
            if need_x:
                gx[i:j] = gx_part
            if need_w:
                gw = gw_part if gw is None else gw + gw_part
        return gx, gw


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
        self.depthwise = _DepthwiseChunks(stride, padding, dilation)
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
        self.depthwise.forget(x=not self.need_dw, mask=not (self.need_x or self.need_dw))
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


def _stage_weights(blocks, x):
    """The blocks' depthwise and 1x1 weights, or None where one is not of x's dtype or
    kind of array (a Tensor's data can be replaced after fast_checks answered for these
    blocks, without the Module knowing)."""
    dws, pws = [b.op[1].weight for b in blocks], [b.op[2].weight for b in blocks]
    kind = (x.dtype, type(x.data))
    return (dws, pws) if all((w.dtype, type(w.data)) == kind for w in dws + pws) else None


def _stage(blocks, weights, x, shared, mask=None):
    """The blocks' stage on x as one EdgeStage (shared: x is the state all read)."""
    _, dw, _, _ = blocks[0].op
    fn, options, write_back = _bn_call([b.op[3] for b in blocks], x)
    y = EdgeStage.apply(
        x,
        *weights[0],
        *weights[1],
        shared=shared,
        stride=dw.stride,
        padding=dw.padding,
        dilation=dw.dilation,
        bn=(fn, options),
        relu_mask=mask,
    )
    write_back()
    return y


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
        type(m) is SepConv and unchanged(m) and unchanged(m.op) for m in mods
    ):
        if all(len(list(m.op)) == 2 for m in mods):
            blocks1, blocks2 = zip(*[list(m.op) for m in mods])
            shape = stages_ok(blocks1, h)
            # the second stage's input: one edge's first-stage output (its shape only)
            xp = backend.get_array_module(h.data)
            like = shape and Tensor(xp.broadcast_to(xp.zeros((), h.dtype), shape))
            if shape and stages_ok(blocks2, like):
                w1, w2 = _stage_weights(blocks1, h), _stage_weights(blocks2, h)
                if w1 and w2:
                    y = _stage(blocks1, w1, h, True, mask)
                    return _stage(blocks2, w2, y, False), False
    elif type(first) is DilConv and stages_ok(mods, h):
        weights = _stage_weights(mods, h)
        if weights:
            return _stage(mods, weights, h, True, mask), False
    elif type(first) is Sequential and pools_ok(mods):
        return _pools(mods, h), True
    elif all(type(m) is Identity and unchanged(m) for m in mods):
        return h, True
    elif type(first) is FactorizedReduce and reduces_ok(mods, h):
        return _reduces(mods, h, mask), False
    outs = [m(h) for m in mods]
    return (cat(outs, dim=1) if len(outs) > 1 else outs[0]), False
