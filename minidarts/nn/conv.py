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

3. Depthwise convolutions (groups == in == out channels, DARTS' sep/dil convs). im2col
   would copy kh*kw times the input to do a product of size 1 per channel, and per-tap
   multiply-adds run NumPy loops over 14-element rows; both are several times slower than
   turning each kernel row into a banded (Toeplitz) matrix. Kernel row i of channel c maps
   an input row (W values) to its contribution to an output row (Wo values):

       T[i, c] (W x Wo), kw = 3, stride 1, padding 1:    out_row += in_row @ T[i, c]

                 wo=0  1  2  3  4
           u=0  [ w1 w0  .  .  . ]     column wo holds tap j at input column
           u=1  [ w2 w1 w0  .  . ]     u = wo*s + j*d - p, where w0 w1 w2 are
           u=2  [  . w2 w1 w0  . ]     w[c, 0, i, 0..2]; taps that fall on the
           u=3  [  .  . w2 w1 w0 ]     padding are left out (they would meet
           u=4  [  .  .  . w2 w1 ]     zeros anyway)

   With the channels first and every image's rows stacked (zero padding rows between them),
   (C, N*Hq, W), the input rows that kernel row i reads are again a strided view (start
   i*d, step s), so y = sum_i rows_i @ T[i]: with an output row's kh input rows copied side
   by side, one channel-batched BLAS product with T's kh blocks stacked. W/kw times the
   useful work, but BLAS is faster than that on short rows.

   Measured (2 CPU cores, batch 64, 16 channels, 14x14, 5x5, forward, ms): per-tap shift
   and add 4.6, windows + einsum 9.0 (2.8 optimized), one 2-D Toeplitz matrix per channel
   1.0, im2col 7.4, banded rows 0.7. On a GPU im2col is fastest: kernel 1 takes them there.
"""

from ..engine import backend
from ..engine.autograd import Function, Tensor
from .arguments import pair


def _xp(a):
    return backend.get_array_module(a)


def _as_strided(a, shape, strides):
    return _xp(a).lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def out_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: (size + 2p - d*(k - 1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


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
        xpad = _pad_hw(x, ph, pw)
        s_n, s_c, s_h, s_w = xpad.strides
        windows = _as_strided(
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


# --- kernel 3: depthwise via banded matrices -------------------------------------------------


class _Band:
    """Where the taps of a kernel row sit in T (W x Wo): each tap j on a real (not padding)
    input column u = wo*s + j*d - p, its u, wo, j (`tap`) and flat index wo*W + u in T^T
    (`flat_t`). Built once per geometry (_band): ~40 us, a quarter of a small convolution."""

    def __init__(self, xp, w_in, wo, kw, s, p, d):
        out_col = xp.repeat(xp.arange(wo), kw)
        tap = xp.tile(xp.arange(kw), wo)
        in_col = out_col * s + tap * d - p
        keep = (in_col >= 0) & (in_col < w_in)
        self.tap, in_col, out_col = tap[keep], in_col[keep], out_col[keep]
        self.flat_t, self.in_col, self.out_col = out_col * w_in + in_col, in_col, out_col
        self.xp, self.kw, self.wo, self._per_tap, self._flat_e = xp, kw, wo, {}, {}

    def flat_e(self, e):
        """The entries' flat indices in T laid out (W, E, Wo) (no transposing copy)."""
        if e not in self._flat_e:  # (E, entries): filter k's T begins k*Wo into a row of E*Wo
            k = self.xp.arange(e)[:, None] * self.wo
            self._flat_e[e] = (self.in_col * (e * self.wo) + k + self.out_col).reshape(-1)
        return self._flat_e[e]

    def per_tap(self, dtype):
        """The (band entries x kw) 0/1 matrix that sums the entries of each tap."""
        m = self._per_tap.get(dtype)
        if m is None:
            xp = self.xp
            m = self._per_tap[dtype] = (self.tap[:, None] == xp.arange(self.kw)).astype(dtype)
        return m


_BANDS = {}  # (device, W, Wo, kw, stride, padding, dilation) -> _Band


def _band(xp, device, *geometry):
    band = _BANDS.get((device, *geometry))
    if band is None:
        band = _BANDS[(device, *geometry)] = _Band(xp, *geometry)
    return band


class _Depthwise:
    """Depthwise convolution (weight (C, 1, kh, kw)) as batched products with the banded
    matrices T[i, c] of the module docstring, over the channel-first row stack. Weight
    (C, E, kh, kw): E filters per channel, output channel e*C + c (the E search edges
    reading one state, darts/fast_ops.py), T[i, c] the E matrices side by side.

        buf (C, N*Hq + tail, W): rows n*Hq + p .. n*Hq + p + H - 1 hold x[n, c], zeros else

    Between two images, one's bottom padding is the next's top: Hq = H + p (not H + 2p),
    rounded up to a multiple of s, at least Ho*s: 6-18% fewer rows to multiply.

    Output slot r = n*Hq/s + h reads buf rows r*s + i*d = n*Hq + h*s + i*d, exactly the
    rows of image n and its padding; slots h >= Ho are computed and dropped (forward) or
    fed zeros (backward)."""

    def __init__(self, stride, padding, dilation):
        self.stride, self.padding, self.dilation, self.mask = stride, padding, dilation, None

    def _stack(self, x, kh, hq):
        """The zero-padded row stack buf of x (class docstring); of x * relu_mask."""
        (sh, _), (ph, _), (dh, _) = self.stride, self.padding, self.dilation
        n, c, h, wd = x.shape
        tail = max(0, (kh - 1) * dh - sh + 1)  # the last slots read this far past the end
        buf = self.xp.zeros((c, n * hq + tail, wd), dtype=x.dtype)
        rows = buf[:, : n * hq].reshape(c, n, hq, wd)[:, :, ph : ph + h]
        x = x.transpose(1, 0, 2, 3)
        if self.mask is None:
            rows[...] = x
        else:  # ReLU's x * mask, written straight into the stack
            self.xp.multiply(x, self.mask.transpose(1, 0, 2, 3), out=rows)
        return buf

    def forward(self, x, w, relu_mask=None, out=None):
        """conv(x, w); conv(relu(x), w) given relu_mask = x > 0, the ReLU fused into the
        stack copy and the gradient's gather (the same x * mask and gx * mask); into
        `out` where given."""
        xp = self.xp = _xp(x)
        self.mask = relu_mask
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        (n, c, h, wd), (e, kh, kw) = x.shape, w.shape[1:]
        ho, wo = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
        hq = -(-max(h + ph, ho * sh) // sh) * sh
        slots = n * hq // sh
        buf = self._stack(x, kh, hq)
        # Backward rebuilds the stack from x (kept anyway) for the weight gradient: keeping
        self.x = x  # the stack cost a step 961 against 802 MB at batch 64, at the same speed
        self.band = _band(xp, backend.device_of(x), wd, wo, kw, sw, pw, dw)
        # every tap's weight at each place it sits in T (C, kh, E, band entries), then T
        self.w_band = w.transpose(0, 2, 1, 3)[..., self.band.tap]
        t = xp.zeros((c, kh, wd * e * wo), dtype=w.dtype)
        t[..., self.band.flat_e(e)] = self.w_band.reshape(c, kh, -1)
        # slot r's kh rows side by side (a copy: NumPy skips BLAS for overlapping rows) times
        # T's kh blocks: 14-24% faster than kh products added up (batch 1-256), fewer calls
        (s0, s1, s2), shape = buf.strides, (c, slots, kh, wd)
        rows = xp.ascontiguousarray(_as_strided(buf, shape, (s0, sh * s1, dh * s1, s2)))
        y = xp.matmul(rows.reshape(c, slots, kh * wd), t.reshape(c, kh * wd, e * wo))
        self.shapes = x.shape, w.shape, (hq, slots, ho, wo)
        y = y.reshape(c, n, hq // sh, e, wo)[:, :, :ho].transpose(1, 3, 0, 2, 4)
        if out is None:
            return xp.ascontiguousarray(y).reshape(n, e * c, ho, wo)
        out.reshape(y.shape)[...] = y
        return out

    def backward(self, gy, need_x, need_w):
        xp = self.xp
        (n, c, h, wd), wshape, (hq, slots, ho, wo) = self.shapes
        (sh, _), (ph, _), (dh, _) = self.stride, self.padding, self.dilation
        e, kh = wshape[1], wshape[2]  # gy in the slot layout, 0 in the dropped slots:
        gys = xp.zeros((c, n, hq // sh, e, wo), dtype=gy.dtype)
        gys[:, :, :ho] = gy.reshape(n, e, c, ho, wo).transpose(2, 0, 3, 1, 4)
        gys = gys.reshape(c, slots, e * wo)
        gx = gw = None
        if need_w:
            # dT[i, c] = rows_i[c]^T @ gy for all i in one call (one view of the stack: a
            # thread waits for the GIL once, not kh times). A tap's gradient is the sum of
            # dT where T holds that tap: dT gathered on the band, summed per tap.
            buf = self._stack(self.x, kh, hq)
            s0, s1, s2 = buf.strides
            rows_t = _as_strided(buf, (kh, c, wd, slots), (dh * s1, s0, s2, sh * s1))
            gt = xp.matmul(rows_t, gys).reshape(kh, c, -1)  # (kh, C, W*E*Wo)
            on_band = gt[..., self.band.flat_e(e)].reshape(kh, c * e, -1)  # (kh, C*E, band)
            gw = xp.matmul(on_band, self.band.per_tap(gy.dtype)).reshape(kh, c, e, -1)
            gw = xp.ascontiguousarray(gw.transpose(1, 2, 0, 3))  # (C, E, kh, kw)
        if need_x:
            # T^T built contiguous (OpenBLAS is 1.7x slower with the transposed view); the
            # E filters' T^T stacked, so that the product sums their gradients
            t_t = xp.zeros((kh, c, e, wo * wd), dtype=gy.dtype)
            t_t[..., self.band.flat_t] = self.w_band.transpose(1, 0, 2, 3)
            t_t = t_t.reshape(kh, c, e * wo, wd)
            # Kernel row i sends gys @ T[i]^T (C, slots, W) back to stack rows q = r*s + i*d.
            # Split the stack rows by phase m = q mod s, as phases[m, c, q // s]: each kernel
            # row's block is then contiguous (adds 8x faster than a strided one at stride 2).
            phases = xp.zeros((sh, c, slots + (kh - 1) * dh // sh, wd), dtype=gy.dtype)
            for i in range(kh):
                start, m = divmod(i * dh, sh)
                phases[m, :, start : start + slots] += xp.matmul(gys, t_t[i])
            # Row h of image n is stack row n*Hq + p + h: phase (p + h) mod s. One strided
            # copy per phase (s of them) gathers the rows of every image.
            gx = xp.empty((n, c, h, wd), dtype=gy.dtype)
            for m in range(sh):
                h0 = (m - ph) % sh
                if h0 >= h:
                    continue
                count, t0 = len(range(h0, h, sh)), (ph + h0) // sh
                src = phases[m, :, :slots].reshape(c, n, hq // sh, wd)[:, :, t0 : t0 + count]
                src, rows = src.transpose(1, 0, 2, 3), gx[:, :, h0::sh]
                if self.mask is None:
                    rows[...] = src
                else:  # the fused ReLU's backward: gx * mask
                    xp.multiply(src, self.mask[:, :, h0::sh], out=rows)
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
