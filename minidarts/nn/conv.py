"""2-D convolution (cross-correlation, as torch.nn.functional.conv2d), forward and backward.

For input x (N, C, H, W), weight w (O, C/G, kh, kw), groups G, stride s, padding p and
dilation d, output channel o (in group g = o // (O/G)) at pixel (h, w) is

    y[n, o, h, w] = b[o] + sum_{c in group g} sum_{i, j} w[o, c, i, j]
                                                          * xp[n, c, h*s + i*d, w*s + j*d]

where xp is x with p zeros on each border, and the output size is

    Ho = (H + 2p - d*(kh - 1) - 1) // s + 1          (Wo likewise).

Three kernels compute it, all vectorised (Python loops run over kernel taps only):

1. im2col, the general case. Every output pixel sees a (C/G, kh, kw) window of xp; copy each
   window into one column of a matrix, and the convolution becomes one matrix product.
   The windows need no index arithmetic: they are a *view* of xp with extra strides
   (as_strided), because moving one output pixel right moves the window s elements right
   and moving one kernel tap right moves it d elements right:

       xp (one channel, 4x4)        windows of a 2x2 kernel, stride 1   cols (K x P)
       +----+----+----+----+        (Ho, Wo, kh, kw) view, no copy       K = C*kh*kw = 4
       | a  | b  | c  | d  |                                               P = Ho*Wo = 9
       +----+----+----+----+        (0,0): a b    (0,1): b c  ...        a b c e f g i j k
       | e  | f  | g  | h  |               e f           f g              b c d f g h j k l
       +----+----+----+----+                                             e f g i j k m n o
       | i  | j  | k  | l  |        strides: pixel (h, w) -> (s*W, s)    f g h j k l n o p
       +----+----+----+----+                 tap   (i, j) -> (d*W, d)
       | m  | n  | o  | p  |                                             y = w (O x K) @ cols
       +----+----+----+----+

   Laying the view out as (N, G, C/G, kh, kw, Ho, Wo) makes the copy (N, G, K, P), so
   w (G, O/G, K) @ cols gives (N, G, O/G, P), which is already NCHW. The backward is two
   more products: dw = gy @ cols^T (summed over n), dcols = w^T @ gy, and "col2im" adds
   every tap's column block back onto the input pixels it was read from (one strided add
   per tap).

2. 1x1 convolutions (pointwise, no padding, groups 1): no windows at all, y[n] = w @ x[n]
   with x viewed as (N, C, H*W); a stride is a slice x[:, :, ::s, ::s].

3. Depthwise convolutions (groups == in == out channels, DARTS' sep/dil convs): banded
   (Toeplitz) matrices, one per kernel row, over a stack of the images' rows
   (nn/depthwise.py). On a GPU im2col is fastest: kernel 1 takes them there.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor
from .arguments import as_strided, out_size, pair
from .depthwise import _Depthwise


def _xp(a):
    return backend.get_array_module(a)


def _pad_hw(x, ph, pw):
    """x with ph zero rows above and below and pw zero columns left and right (a fresh
    array; zeros + one slice assignment is faster than xp.pad)."""
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    xp = _xp(x)
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


# --- kernel 1: im2col -----------------------------------------------------------------


class _Im2col:
    """General grouped convolution as cols = windows of xp, y = w @ cols (see module doc)."""

    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w):
        xp = _xp(x)
        (sh, sw), (ph, pw), (dh, dw), g = self.stride, self.padding, self.dilation, self.groups
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        ho, wo = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
        # What forward must leave for backward (below, not part of the task):
        #   self.cols   (n, g, cg*kh*kw, ho*wo): the window values, row index
        #               (ci, i, j) = ci*kh*kw + i*kw + j within the group, column p*wo + q
        #               for output pixel (p, q) (the value x reads there, 0 in the padding)
        #   self.wm     (g, o // g, cg*kh*kw): w grouped, in the same row order
        #   self.shapes (x.shape, w.shape, padded x's shape, (ho, wo))
        # and it returns y (n, o, ho, wo) with y[n, gi*(o//g) + k] = wm[gi, k] @ cols[n, gi].
        # BEGIN SOLUTION im2col: windows of the padded x (as_strided) to cols, then y = w @ cols
        # HINT: as_strided(xpad, (n, g, cg, kh, kw, ho, wo), strides): a kernel step moves
        # HINT: dilation rows / columns of xpad, an output step moves stride rows / columns
        # HINT: backward reads self.cols (n, g, cg*kh*kw, ho*wo), self.wm and self.shapes
        xpad = _pad_hw(x, ph, pw)
        s_n, s_c, s_h, s_w = xpad.strides
        windows = as_strided(
            xpad,
            (n, g, cg, kh, kw, ho, wo),
            (s_n, cg * s_c, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
        )
        # The one copy of the method: kh*kw values per input value (stride 1).
        self.cols = xp.ascontiguousarray(windows).reshape(n, g, cg * kh * kw, ho * wo)
        self.wm = w.reshape(g, o // g, cg * kh * kw)
        self.shapes = x.shape, w.shape, xpad.shape, (ho, wo)
        return xp.matmul(self.wm, self.cols).reshape(n, o, ho, wo)
        # END SOLUTION

    def backward(self, gy, need_x, need_w):
        xp = _xp(gy)
        (n, c, h, wd), wshape, (_, _, hp, wp), (ho, wo) = self.shapes
        g, (sh, sw), (ph, pw), (dh, dw) = self.groups, self.stride, self.padding, self.dilation
        kh, kw = wshape[2], wshape[3]
        gy = gy.reshape(n, g, wshape[0] // g, ho * wo)
        gw = gx = None
        if need_w:
            # dw[g] = sum_n gy[n, g] @ cols[n, g]^T: N small products, then a sum, keeps
            # BLAS single-threaded (one big product would first copy cols transposed).
            gw = xp.matmul(gy, self.cols.swapaxes(-1, -2)).sum(axis=0).reshape(wshape)
        if need_x:
            gcols = xp.matmul(self.wm.swapaxes(-1, -2), gy).reshape(n, c, kh, kw, ho, wo)
            # col2im: every tap sends its gradient back to the pixels it read.
            gxpad = xp.zeros((n, c, hp, wp), dtype=gy.dtype)
            for i in range(kh):
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                for j in range(kw):
                    cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                    gxpad[:, :, rows, cols] += gcols[:, :, i, j]
            gx = gxpad[:, :, ph : ph + h, pw : pw + wd]
        return gx, gw


# --- kernel 2: 1x1 -----------------------------------------------------------------------


class _Pointwise:
    """1x1 convolution, no padding, one group: y[n] = w @ x[n, :, ::s, ::s]."""

    def __init__(self, stride):
        self.stride = stride

    def forward(self, x, w):
        xp = _xp(x)
        sh, sw = self.stride
        full_shape = x.shape
        if (sh, sw) != (1, 1):
            x = x[:, :, ::sh, ::sw]
        n, c, ho, wo = x.shape
        o = w.shape[0]
        self.x_shape = full_shape
        self.x2 = x.reshape(n, c, ho * wo)  # a copy when strided or not contiguous
        self.w2 = w.reshape(o, c)
        self.shapes = w.shape, (ho, wo)
        return xp.matmul(self.w2, self.x2).reshape(n, o, ho, wo)

    def backward(self, gy, need_x, need_w):
        xp = _xp(gy)
        wshape, (ho, wo) = self.shapes
        n, o = gy.shape[:2]
        gy = gy.reshape(n, o, ho * wo)
        gw = gx = None
        if need_w:
            gw = xp.matmul(gy, self.x2.swapaxes(1, 2)).sum(axis=0).reshape(wshape)
        if need_x:
            gx = xp.matmul(self.w2.T, gy).reshape(n, self.w2.shape[1], ho, wo)
            sh, sw = self.stride
            if (sh, sw) != (1, 1):
                full = xp.zeros(self.x_shape, dtype=gy.dtype)
                full[:, :, ::sh, ::sw] = gx
                gx = full
        return gx, gw


# --- the differentiable operation and the public function ------------------------------------


class Conv2d(Function):
    """y = conv2d(x, w) + b (the module docstring has the sum);
    gx, gw from the chosen kernel's backward, gb[o] = sum over n, h, w of gy[n, o, h, w]."""

    def forward(self, x, w, b=None, *, stride, padding, dilation, groups):
        c, o = x.shape[1], w.shape[0]
        if w.shape[2:] == (1, 1) and padding == (0, 0) and groups == 1:
            self.kernel = _Pointwise(stride)
        elif groups == c == o and w.shape[1] == 1 and backend.device_of(x) == "cpu":
            # Only on the CPU: on a GPU, where copies are cheap and every call is a kernel
            # launch, im2col's one batched product beats kh of them (H200, 64x16x14x14,
            # 5x5 forward: 0.28 ms against 1.6 ms; forward+backward 1.5 against 2.6).
            self.kernel = _Depthwise(stride, padding, dilation)
        else:
            self.kernel = _Im2col(stride, padding, dilation, groups)
        y = self.kernel.forward(x, w)
        self.has_bias = b is not None
        if self.has_bias:
            y += b.reshape(1, o, 1, 1)
        return y

    def backward(self, gy):
        need_x, need_w = self.needs_input_grad[:2]
        gx, gw = self.kernel.backward(gy, need_x, need_w)
        if not self.has_bias:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if self.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation, as torch.nn.functional.conv2d:

        y[n, o, h, w] = bias[o] + sum_{c, i, j} weight[o, c, i, j]
                                  * x_pad[n, g*C/G + c, h*s + i*d, w*s + j*d]

    for output channel o in group g = o // (O/G), with H_out = (H + 2p - d*(kh-1) - 1)//s + 1.

    x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) or None. stride (>= 1),
    padding (>= 0) and dilation (>= 1) are ints or (height, width) pairs; groups divides C
    and O (groups = C = O is a depthwise convolution). Returns (N, O, H_out, W_out) with
    the dtype of x."""
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        x, weight = (t if isinstance(t, Tensor) else Tensor(t) for t in (x, weight))
    if bias is not None and not isinstance(bias, Tensor):
        bias = Tensor(bias)
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(
            f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), got "
            f"shape {weight.shape}"
        )
    stride = pair(stride, "stride", "conv2d", 1)
    padding = pair(padding, "padding", "conv2d", 0)
    dilation = pair(dilation, "dilation", "conv2d", 1)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if c % groups or o % groups:
        raise ValueError(
            f"conv2d: in_channels ({c}) and out_channels ({o}) must both be divisible by "
            f"groups ({groups})"
        )
    if cg * groups != c:
        raise ValueError(
            f"conv2d: input has {c} channels (shape {x.shape}) but weight {weight.shape} with "
            f"groups={groups} expects {cg * groups} (weight.shape[1] * groups)"
        )
    if min(kh, kw) < 1:
        raise ValueError(f"conv2d: the kernel must be at least 1x1, got weight {weight.shape}")
    if bias is not None and bias.shape != (o,):
        raise ValueError(
            f"conv2d: bias must have shape ({o},) for weight {weight.shape}, got {bias.shape}"
        )
    for t, what in ((x, "input"), (weight, "weight"), (bias, "bias")):
        if t is not None and not backend.is_floating(t.data):
            raise TypeError(f"conv2d: {what} must be floating point, got dtype {t.dtype}")
        if t is not None and (t.dtype != x.dtype or t.device != x.device):
            raise TypeError(
                f"conv2d: {what} is {t.dtype} on {t.device} but the input is {x.dtype} on "
                f"{x.device}; convert one of them"
            )
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    if span_h > hp or span_w > wp:
        raise ValueError(
            f"conv2d: the kernel ({kh}x{kw}, dilation {dilation} spans {span_h}x{span_w}) is "
            f"larger than the padded input ({hp}x{wp} = {h}x{w} plus padding {padding})"
        )
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=groups)
