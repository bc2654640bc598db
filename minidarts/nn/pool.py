"""Pooling kernels: max_pool2d, avg_pool2d and adaptive_avg_pool2d, as in
torch.nn.functional, on (N, C, H, W) inputs.

With kernel k, stride s and padding p, output pixel (i, j) looks at the window
of input rows s*i - p ... s*i - p + k - 1 (and the same for columns), and

    H_out = floor((H + 2p - k) / s) + 1        (the same for W).

Max and sum are *separable*: the maximum (or sum) over a k x k window is the
maximum over k rows of the maxima over k columns. So each kernel is two 1-D
passes, first along W and then along H, each a loop over its k taps with
strided slices of whole arrays (2k array operations instead of k*k, and never a
Python loop over the batch, channels or pixels).

Notation: y is the forward output, gy = dL/dy, gx = dL/dx.
"""

from ..engine import backend
from ..engine.autograd import Function
from .arguments import pair


def _xp(a):
    return backend.get_array_module(a)


def _check_input(x, opname):
    if x.ndim != 4:
        raise ValueError(f"{opname}: expected a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    if not backend.is_floating(x.data):
        raise TypeError(f"{opname}: expected a floating-point input, got dtype {x.dtype}")


def _geometry(x, kernel_size, stride, padding, opname):
    """Validated (k, s, p, out) pairs, with PyTorch's rules: stride defaults to the
    kernel, padding is at most half the kernel (so every window holds at least one
    real pixel) and the output is not empty."""
    _check_input(x, opname)
    k = pair(kernel_size, "kernel_size", opname)
    s = k if stride is None or stride == () or stride == [] else pair(stride, "stride", opname)
    p = pair(padding, "padding", opname)
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(
            f"{opname}: kernel_size and stride must be >= 1 and padding >= 0, got "
            f"kernel_size={k}, stride={s}, padding={p}"
        )
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{opname}: padding {p} must be at most half the kernel size {k} (as in PyTorch)"
        )
    size = x.shape[2:]
    out = tuple((n + 2 * pi - ki) // si + 1 for n, pi, ki, si in zip(size, p, k, s))
    if min(out) < 1:
        raise ValueError(
            f"{opname}: the input is too small: spatial size {tuple(size)} with padding {p} "
            f"is smaller than the kernel {k}"
        )
    return k, s, p, out


def _pad_hw(x, p, value):
    """x with p[0] rows and p[1] columns of `value` on each side (no copy when p = 0)."""
    if p == (0, 0):
        return x
    xp = _xp(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * p[0], w + 2 * p[1]), value, dtype=x.dtype)
    out[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    return out


def _crop_hw(g, p):
    """The interior of a padded gradient: the part that belongs to real pixels (a
    view; copying it would cost a pass over memory for nothing)."""
    if p == (0, 0):
        return g
    h, w = g.shape[2] - 2 * p[0], g.shape[3] - 2 * p[1]
    return g[:, :, p[0] : p[0] + h, p[1] : p[1] + w]


def _tap(a, axis, t, stride, n_out):
    """The view a[..., t :: stride] (n_out elements) along `axis`: for every window,
    the element at offset t inside it."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(t, t + stride * (n_out - 1) + 1, stride)
    return a[tuple(index)]


def _max_1d(a, axis, k, s, n_out):
    """y[o] = max over t < k of a[s*o + t] along `axis`."""
    y = _tap(a, axis, 0, s, n_out).copy()
    for t in range(1, k):
        _xp(a).maximum(y, _tap(a, axis, t, s, n_out), out=y)
    return y


def _max_1d_backward(a, y, gy, axis, k, s):
    """ga[s*o + t] += gy[o] for the FIRST tap t where a[s*o + t] == y[o].

    Only the first maximum of a window gets its gradient (PyTorch's choice on
    ties); `taken` marks windows already served. Multiplying by a boolean mask is
    much faster in NumPy than masked assignment, and reusing two work arrays
    (`hit`, `routed`) instead of allocating per tap avoids fresh-page costs."""
    xp = _xp(a)
    n_out = y.shape[axis]
    ga = xp.zeros(a.shape, dtype=gy.dtype)
    taken = xp.zeros(y.shape, dtype=bool)
    hit = xp.empty(y.shape, dtype=bool)
    routed = xp.empty(gy.shape, dtype=gy.dtype)
    for t in range(k):
        xp.equal(_tap(a, axis, t, s, n_out), y, out=hit)
        xp.greater(hit, taken, out=hit)  # for booleans, hit > taken is hit and not taken
        taken |= hit
        xp.multiply(gy, hit, out=routed)
        _tap(ga, axis, t, s, n_out)[...] += routed
    return ga


def _sum_1d(a, axis, k, s, n_out):
    """y[o] = sum over t < k of a[s*o + t] along `axis`."""
    y = _tap(a, axis, 0, s, n_out).copy()
    for t in range(1, k):
        y += _tap(a, axis, t, s, n_out)
    return y


def _sum_1d_backward(gy, shape, axis, k, s):
    """ga[s*o + t] += gy[o] for every tap t: each input gets the gradients of all
    the windows it is part of."""
    ga = _xp(gy).zeros(shape, dtype=gy.dtype)
    n_out = gy.shape[axis]
    for t in range(k):
        _tap(ga, axis, t, s, n_out)[...] += gy
    return ga


class MaxPool2d(Function):
    """y[n,c,i,j] = max over the window (i, j) of x, padded with -inf so padding never
    wins;  gx = gy routed to the first maximum of each window (summed where windows
    overlap)."""

    def forward(self, x, k, s, p, out):
        self.p = p
        self.xpad = _pad_hw(x, p, float("-inf"))
        self.rows = _max_1d(self.xpad, 3, k[1], s[1], out[1])  # max over each row segment
        self.y = _max_1d(self.rows, 2, k[0], s[0], out[0])
        self.k, self.s = k, s
        return self.y

    def backward(self, gy):
        k, s = self.k, self.s
        g_rows = _max_1d_backward(self.rows, self.y, gy, 2, k[0], s[0])
        g_pad = _max_1d_backward(self.xpad, self.rows, g_rows, 3, k[1], s[1])
        return (_crop_hw(g_pad, self.p),)


class AvgPool2d(Function):
    """y[n,c,i,j] = (sum of x over the window (i, j)) / d[i, j], with zero padding;
    d = k_h * k_w (count_include_pad) or the number of real pixels in the window;
    gx = each window's gy / d spread evenly over its pixels."""

    def forward(self, x, k, s, p, out, count_include_pad):
        xp = _xp(x)
        self.k, self.s, self.p = k, s, p
        xpad = _pad_hw(x, p, 0.0)
        self.padded_shape = xpad.shape
        rows = _sum_1d(xpad, 3, k[1], s[1], out[1])
        total = _sum_1d(rows, 2, k[0], s[0], out[0])
        if count_include_pad:
            self.divisor = float(k[0] * k[1])
        else:
            # Real pixels per window = (real rows) * (real columns): pool a 1-D mask of ones.
            counts = []
            for n, ki, si, pi, oi in zip(x.shape[2:], k, s, p, out):
                mask = xp.zeros(n + 2 * pi, dtype=x.dtype)
                mask[pi : pi + n] = 1
                counts.append(_sum_1d(mask, 0, ki, si, oi))
            self.divisor = counts[0][:, None] * counts[1][None, :]
        total /= self.divisor  # in place: one large temporary fewer
        return total

    def backward(self, gy):
        k, s = self.k, self.s
        g = gy / self.divisor
        rows_shape = self.padded_shape[:2] + (self.padded_shape[2], gy.shape[3])
        g_rows = _sum_1d_backward(g, rows_shape, 2, k[0], s[0])
        g_pad = _sum_1d_backward(g_rows, self.padded_shape, 3, k[1], s[1])
        return (_crop_hw(g_pad, self.p),)


class GlobalAvgPool2d(Function):
    """y[n,c] = mean over (h, w) of x[n,c,h,w], kept as (N, C, 1, 1);
    gx = gy / (H W) broadcast over the pixels."""

    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, gy):
        n = self.shape[2] * self.shape[3]
        return (_xp(gy).broadcast_to(gy / n, self.shape).copy(),)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """2-D max pooling, as torch.nn.functional.max_pool2d (no dilation, floor mode):

        y[n,c,i,j] = max_{a<k_h, b<k_w} x_pad[n, c, s_h i + a, s_w j + b],

    with x_pad = x padded by -inf. stride defaults to kernel_size. The gradient
    goes to the first maximum (in row-major order) of each window."""
    k, s, p, out = _geometry(x, kernel_size, stride, padding, "max_pool2d")
    return MaxPool2d.apply(x, k=k, s=s, p=p, out=out)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """2-D average pooling, as torch.nn.functional.avg_pool2d (floor mode):

        y[n,c,i,j] = (1 / d_ij) sum_{a<k_h, b<k_w} x_pad[n, c, s_h i + a, s_w j + b],

    x_pad = x padded by zeros; d_ij = k_h k_w if count_include_pad, else the number
    of real (non-padding) pixels in the window (DARTS uses count_include_pad=False)."""
    k, s, p, out = _geometry(x, kernel_size, stride, padding, "avg_pool2d")
    return AvgPool2d.apply(x, k=k, s=s, p=p, out=out, count_include_pad=bool(count_include_pad))


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size, as torch.nn.functional.adaptive_avg_pool2d.

    output_size 1 is the global average pool  y[n,c,0,0] = mean_{h,w} x[n,c,h,w].
    Other sizes must divide H and W evenly: then it is avg_pool2d with kernel =
    stride = (H / out_h, W / out_w)."""
    _check_input(x, "adaptive_avg_pool2d")
    out = pair(output_size, "output_size", "adaptive_avg_pool2d")
    h, w = x.shape[2:]
    if out == (1, 1):
        return GlobalAvgPool2d.apply(x)
    if min(out) < 1 or h % out[0] or w % out[1]:
        raise NotImplementedError(
            f"adaptive_avg_pool2d: output_size {out} must divide the input size {(h, w)} "
            f"evenly (windows of unequal size are not implemented)"
        )
    kernel = (h // out[0], w // out[1])
    return avg_pool2d(x, kernel, kernel)
