"""Pooling kernels against plain-loop references, and their gradients against
central differences (minidarts.engine.gradcheck, default tolerances)."""

import numpy as np
import pytest
import scipy.ndimage

import minidarts as md
import minidarts.nn.functional as F


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_pool(x, kernel, stride, padding, mode, count_include_pad=True):
    """Pooling by a loop over output pixels; windows are clipped to the real input
    (so padding never takes part in a max), as PyTorch defines it."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, ho, wo), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * sh - ph, j * sw - pw
            hs, he, ws, we = max(h0, 0), min(h0 + kh, h), max(w0, 0), min(w0 + kw, w)
            win = x[:, :, hs:he, ws:we].astype(np.float64)
            if mode == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                d = kh * kw if count_include_pad else (he - hs) * (we - ws)
                y[:, :, i, j] = win.sum(axis=(2, 3)) / d
    return y


def ref_max_pool_grad(x, gy, kernel, stride, padding):
    """dL/dx of max pooling: each window's gy goes to its first maximum (row-major)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    gx = np.zeros(x.shape)
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            h0, w0 = i * sh - ph, j * sw - pw
            hs, he, ws, we = max(h0, 0), min(h0 + kh, h), max(w0, 0), min(w0 + kw, w)
            for b in range(n):
                for ch in range(c):
                    win = x[b, ch, hs:he, ws:we]
                    a, e = np.unravel_index(np.argmax(win), win.shape)  # first maximum
                    gx[b, ch, hs + a, ws + e] += gy[b, ch, i, j]
    return gx


def distinct_input(shape, seed):
    """Well-separated distinct values (a shuffled ramp), so max pooling has no ties
    and central differences never cross a kink."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.1 - 0.05 * n).astype(np.float64)


# kernel, stride, padding (padding at most half the kernel, as PyTorch requires)
GRID = [(k, s, p) for k in (1, 2, 3, 5) for s in (1, 2) for p in (0, 1, 2) if p <= k // 2]
# (N, C, H, W): batch 1 and 3, odd and even heights and widths
SHAPES = [(1, 2, 5, 6), (3, 2, 6, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k,s,p", GRID)
def test_max_pool_forward_backward_and_gradcheck(k, s, p, shape):
    x = distinct_input(shape, seed=k * 10 + s + p)
    y = F.max_pool2d(md.tensor(x, dtype=np.float64), k, s, p)
    np.testing.assert_array_equal(y.numpy(), ref_pool(x, k, s, p, "max"))

    gy = np.random.default_rng(1).standard_normal(y.shape)
    xt = md.tensor(x, dtype=np.float64, requires_grad=True)
    F.max_pool2d(xt, k, s, p).backward(gy)
    np.testing.assert_allclose(xt.grad, ref_max_pool_grad(x, gy, k, s, p), rtol=1e-12, atol=0)

    report = md.gradcheck(lambda t: F.max_pool2d(t, k, s, p), md.tensor(x, requires_grad=True))
    assert report.n_checks == x.size


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k,s,p", GRID)
def test_avg_pool_forward_and_gradcheck(k, s, p, shape, count_include_pad):
    x = np.random.default_rng(k + s + p).standard_normal(shape)
    y = F.avg_pool2d(md.tensor(x, dtype=np.float64), k, s, p, count_include_pad)
    ref = ref_pool(x, k, s, p, "avg", count_include_pad)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-14)

    def fn(t):
        return F.avg_pool2d(t, k, s, p, count_include_pad=count_include_pad)

    md.gradcheck(fn, md.tensor(x, requires_grad=True))


def test_count_include_pad_changes_only_the_border():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    with_pad = F.avg_pool2d(md.tensor(x), 3, 1, 1, count_include_pad=True).numpy()[0, 0]
    real_only = F.avg_pool2d(md.tensor(x), 3, 1, 1, count_include_pad=False).numpy()[0, 0]
    np.testing.assert_allclose(real_only, np.ones((4, 4)))  # an average of ones is one
    assert with_pad[0, 0] == pytest.approx(4 / 9) and with_pad[0, 1] == pytest.approx(6 / 9)
    assert with_pad[1, 1] == pytest.approx(1.0)


def test_max_pool_padding_never_wins():
    # All inputs negative: zero padding would win the border windows; -inf padding never does.
    x = -1.0 - np.random.default_rng(0).random((2, 3, 5, 5)).astype(np.float32)
    y = F.max_pool2d(md.tensor(x), 3, 2, 1).numpy()
    assert (y < -1.0 + 1e-6).all()
    np.testing.assert_array_equal(y, ref_pool(x, 3, 2, 1, "max").astype(np.float32))


def test_max_pool_ties_go_to_the_first_maximum():
    # Constant blocks create ties inside windows, and overlapping windows (stride 1)
    # share winners; PyTorch gives each window's gradient to its first maximum.
    rng = np.random.default_rng(3)
    x = np.kron(rng.integers(0, 3, (2, 2, 3, 3)), np.ones((2, 2))).astype(np.float32)
    for k, s, p in [(3, 1, 1), (2, 2, 0), (3, 2, 1)]:
        xt = md.tensor(x, requires_grad=True)
        y = F.max_pool2d(xt, k, s, p)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(gy)
        np.testing.assert_allclose(xt.grad, ref_max_pool_grad(x, gy, k, s, p), rtol=1e-5, atol=1e-6)


def test_against_scipy_filters():
    # An independent reference for stride 1: scipy's sliding max and mean, cropped to
    # the windows that fit entirely inside the image.
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 9))
    size = (1, 1, 3, 3)
    mx = scipy.ndimage.maximum_filter(x, size=size)[:, :, 1:-1, 1:-1]
    mean = scipy.ndimage.uniform_filter(x, size=size)[:, :, 1:-1, 1:-1]
    np.testing.assert_array_equal(F.max_pool2d(md.tensor(x), 3, 1).numpy(), mx)
    np.testing.assert_allclose(F.avg_pool2d(md.tensor(x), 3, 1).numpy(), mean, rtol=1e-12)


def test_rectangular_kernels_and_default_stride():
    x = distinct_input((2, 2, 7, 8), seed=9)
    y = F.max_pool2d(md.tensor(x), (2, 3), (1, 2), (1, 1))
    np.testing.assert_array_equal(y.numpy(), ref_pool(x, (2, 3), (1, 2), (1, 1), "max"))
    y = F.avg_pool2d(md.tensor(x), (3, 2), None, (1, 0), count_include_pad=False)
    ref = ref_pool(x, (3, 2), (3, 2), (1, 0), "avg", count_include_pad=False)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)
    assert F.max_pool2d(md.tensor(x), 2).shape == (2, 2, 3, 4)  # stride = kernel
    md.gradcheck(lambda t: F.max_pool2d(t, (2, 3), (1, 2), (1, 1)), md.tensor(x))
    md.gradcheck(lambda t: F.avg_pool2d(t, (3, 2), None, (1, 0), False), md.tensor(x))


def test_adaptive_avg_pool():
    x = np.random.default_rng(2).standard_normal((3, 4, 6, 4))
    y = F.adaptive_avg_pool2d(md.tensor(x), 1)
    assert y.shape == (3, 4, 1, 1)
    np.testing.assert_allclose(y.numpy()[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)
    md.gradcheck(lambda t: F.adaptive_avg_pool2d(t, 1), md.tensor(x))
    # Evenly divisible sizes: the mean of each (H / out) x (W / out) block.
    y = F.adaptive_avg_pool2d(md.tensor(x), (3, 2)).numpy()
    np.testing.assert_allclose(y, x.reshape(3, 4, 3, 2, 2, 2).mean(axis=(3, 5)), rtol=1e-12)
    md.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 2)), md.tensor(x))
    with pytest.raises(NotImplementedError, match="divide"):
        F.adaptive_avg_pool2d(md.tensor(x), 4)


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: F.max_pool2d(t, 3, 2, 1),
        lambda t: F.avg_pool2d(t, 3, 1, 1, count_include_pad=False),
        lambda t: F.adaptive_avg_pool2d(t, 1),
    ],
)
def test_float32_in_float32_out(fn):
    data = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    x = md.tensor(data, dtype=np.float32, requires_grad=True)
    assert x.dtype == np.float32
    y = fn(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_clear_errors():
    x = md.tensor(np.zeros((2, 3, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="max_pool2d: expected a 4-D"):
        F.max_pool2d(md.tensor(np.zeros((3, 5, 5), dtype=np.float32)), 2)
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 3, 1, 2)
    with pytest.raises(ValueError, match="too small"):
        F.avg_pool2d(x, 7)
    with pytest.raises(TypeError, match="kernel_size"):
        F.avg_pool2d(x, 2.5)
    with pytest.raises(ValueError, match="stride"):
        F.max_pool2d(x, 2, 0)
    with pytest.raises(TypeError, match="floating"):
        F.max_pool2d(md.tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), 2)
