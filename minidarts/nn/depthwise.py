"""The depthwise convolution kernel (nn/conv.py's kernel 3), forward and backward.

Depthwise convolutions (groups == in == out channels, DARTS' sep/dil convs). im2col
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
i*d, step s), so y = sum_i rows_i @ T[i] is kh channel-batched BLAS products: W/kw
times the useful work, but BLAS is faster than that on short rows.

Measured (2 CPU cores, batch 64, 16 channels, 14x14, 5x5, forward, ms): per-tap shift
and add 4.6, windows + einsum 9.0 (2.8 optimized), one 2-D Toeplitz matrix per channel
1.0, im2col 7.4, banded rows 0.7. On a GPU im2col is fastest:
nn/conv.py's Conv2d takes it there.
"""

from ..engine import backend
from .arguments import as_strided, out_size


def _xp(a):
    return backend.get_array_module(a)


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
        buf = self.xp.empty((c, n * hq + tail, wd), dtype=x.dtype)
        images = buf[:, : n * hq].reshape(c, n, hq, wd)
        # zeros in the padding rows only: zeroing all of buf cost a pass over it
        images[:, :, :ph] = images[:, :, ph + h :] = buf[:, n * hq :] = 0
        rows = images[:, :, ph : ph + h]
        x = x.transpose(1, 0, 2, 3)
        if self.mask is None:
            rows[...] = x
        else:  # ReLU's x * mask, written straight into the stack
            self.xp.multiply(x, self.mask.transpose(1, 0, 2, 3), out=rows)
        return buf

    def _rows(self, buf, i, slots):
        """rows_i (C, slots, W): the stack rows that kernel row i reads, a view."""
        sh, dh = self.stride[0], self.dilation[0]
        return buf[:, i * dh : i * dh + sh * slots : sh]

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
        # every tap's weight at each place it sits in T (kh, C, E, band entries), then T
        self.w_band = w.transpose(2, 0, 1, 3)[..., self.band.tap]
        t = xp.zeros((kh, c, wd * e * wo), dtype=w.dtype)
        t[..., self.band.flat_e(e)] = self.w_band.reshape(kh, c, -1)
        t = t.reshape(kh, c, wd, e * wo)
        # y = sum_i rows_i @ T[i], one C-batched product per kernel row, added as it comes
        # (6-15% faster than one (kh, C)-batched product and a sum of kh times its size).
        # One product of the kh rows side by side (copied) was 14-24% faster, but it sums
        # in another order, and the default hypernet search's family did not survive the
        # change in the last bits (README, "What is left"): kept as it was.
        y = xp.matmul(self._rows(buf, 0, slots), t[0])  # (C, slots, E*Wo)
        for i in range(1, kh):
            y += xp.matmul(self._rows(buf, i, slots), t[i])
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
        gys = xp.empty((c, n, hq // sh, e, wo), dtype=gy.dtype)
        gys[:, :, :ho] = gy.reshape(n, e, c, ho, wo).transpose(2, 0, 3, 1, 4)
        gys[:, :, ho:] = 0
        gys = gys.reshape(c, slots, e * wo)
        gx = gw = None
        if need_w:
            # dT[i, c] = rows_i[c]^T @ gy for all i in one call (one view of the stack: a
            # thread waits for the GIL once, not kh times). A tap's gradient is the sum of
            # dT where T holds that tap: dT gathered on the band, summed per tap.
            buf = self._stack(self.x, kh, hq)
            s0, s1, s2 = buf.strides
            rows_t = as_strided(buf, (kh, c, wd, slots), (dh * s1, s0, s2, sh * s1))
            gt = xp.matmul(rows_t, gys).reshape(kh, c, -1)  # (kh, C, W*E*Wo)
            on_band = gt[..., self.band.flat_e(e)].reshape(kh, c * e, -1)  # (kh, C*E, band)
            gw = xp.matmul(on_band, self.band.per_tap(gy.dtype)).reshape(kh, c, e, -1)
            gw = xp.ascontiguousarray(gw.transpose(1, 2, 0, 3))  # (C, E, kh, kw)
        if need_x:
            # T^T built contiguous (OpenBLAS is 1.7x slower with the transposed view); the
            # E filters' T^T stacked, so that the product sums their gradients
            t_t = xp.zeros((kh, c, e, wo * wd), dtype=gy.dtype)
            t_t[..., self.band.flat_t] = self.w_band
            t_t = t_t.reshape(kh, c, e * wo, wd)
            # Kernel row i sends gys @ T[i]^T (C, slots, W) back to stack rows q = r*s + i*d.
            # Split the stack rows by phase m = q mod s, as phases[m, c, q // s]: each kernel
            # row's block is then contiguous (adds 8x faster than a strided one at stride 2).
            # A phase's first block is written, not added to zeros (the rest of it zeroed).
            phases = xp.empty((sh, c, slots + (kh - 1) * dh // sh, wd), dtype=gy.dtype)
            written = [False] * sh
            for i in range(kh):
                start, m = divmod(i * dh, sh)
                block = phases[m, :, start : start + slots]
                if written[m]:
                    block += xp.matmul(gys, t_t[i])
                else:
                    phases[m, :, :start] = phases[m, :, start + slots :] = 0
                    xp.matmul(gys, t_t[i], out=block)
                    written[m] = True
            for m in range(sh):
                if not written[m]:
                    phases[m] = 0
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
