"""Batch normalisation against the formulas written out with NumPy, running
statistics against a hand computation, gradients against central differences."""

import numpy as np
import pytest

import minidarts as md
import minidarts.nn.functional as F


def ref_batch_norm(x, mean, var, weight, bias, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def axes_of(x):
    return (0,) + tuple(range(2, x.ndim))


SHAPES = [(4, 3, 5, 6), (7, 3)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_normalises_with_batch_statistics(shape, affine):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    w = rng.standard_normal(3).astype(np.float32) if affine else None
    b = rng.standard_normal(3).astype(np.float32) if affine else None
    y = F.batch_norm(
        md.tensor(x),
        None,
        None,
        None if w is None else md.tensor(w),
        None if b is None else md.tensor(b),
        training=True,
    )
    assert y.dtype == np.float32
    x64 = x.astype(np.float64)
    ref = ref_batch_norm(x64, x64.mean(axes_of(x)), x64.var(axes_of(x)), w, b)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-5)
    if not affine:  # normalised: zero mean and unit (biased) variance per channel
        np.testing.assert_allclose(y.numpy().mean(axes_of(x)), 0, atol=1e-5)
        np.testing.assert_allclose(y.numpy().var(axes_of(x)), 1, atol=1e-3)


def test_running_statistics_after_several_steps():
    rng = np.random.default_rng(1)
    momentum, eps = 0.3, 1e-5
    rm, rv = md.tensor(np.zeros(4, np.float32)), md.tensor(np.ones(4, np.float32))
    hand_mean, hand_var = np.zeros(4), np.ones(4)
    for step in range(5):
        x = rng.standard_normal((6, 4, 3, 5)) * (step + 1) + step
        F.batch_norm(md.tensor(x, dtype=np.float32), rm, rv, training=True, momentum=momentum)
        # PyTorch's rule: the running variance uses the unbiased (n - 1) batch variance.
        hand_mean = (1 - momentum) * hand_mean + momentum * x.mean(axis=(0, 2, 3))
        hand_var = (1 - momentum) * hand_var + momentum * x.var(axis=(0, 2, 3), ddof=1)
        np.testing.assert_allclose(rm.numpy(), hand_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv.numpy(), hand_var, rtol=1e-5)
        assert rm.dtype == np.float32 and rv.dtype == np.float32

    # Evaluation normalises with the running statistics and leaves them alone.
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    x = rng.standard_normal((3, 4, 2, 2))
    before = rm.numpy().copy(), rv.numpy().copy()
    y = F.batch_norm(md.tensor(x), rm, rv, md.tensor(w), md.tensor(b), training=False, eps=eps)
    ref = ref_batch_norm(x, rm.numpy().astype(np.float64), rv.numpy().astype(np.float64), w, b)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10)
    np.testing.assert_array_equal(rm.numpy(), before[0])
    np.testing.assert_array_equal(rv.numpy(), before[1])


def test_running_statistics_may_be_plain_arrays():
    x = np.random.default_rng(2).standard_normal((5, 2, 3, 3)).astype(np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    F.batch_norm(md.tensor(x), rm, rv, training=True, momentum=1.0)
    np.testing.assert_allclose(rm, x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


def _inputs(shape, affine, seed=0):
    rng = np.random.default_rng(seed)
    x = md.tensor(rng.standard_normal(shape) * 2 + 1, requires_grad=True)
    params = [None, None]
    if affine in ("both", "weight"):
        params[0] = md.tensor(rng.standard_normal(shape[1]) + 1, requires_grad=True)
    if affine in ("both", "bias"):
        params[1] = md.tensor(rng.standard_normal(shape[1]), requires_grad=True)
    return x, params


@pytest.mark.parametrize("affine", ["both", "none", "weight", "bias"])
@pytest.mark.parametrize("shape", [(3, 2, 4, 3), (6, 3)])
def test_gradcheck_training(shape, affine):
    x, (w, b) = _inputs(shape, affine)
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    tensors = [t for t in (x, w, b) if t is not None]

    def fn(x, *params):
        it = iter(params)
        w_ = next(it) if w is not None else None
        b_ = next(it) if b is not None else None
        return F.batch_norm(x, rm, rv, w_, b_, training=True, momentum=0.1)

    report = md.gradcheck(fn, *tensors)
    assert report.n_checks == sum(t.numel() for t in tensors)


@pytest.mark.parametrize("affine", ["both", "none"])
@pytest.mark.parametrize("shape", [(3, 2, 4, 3), (6, 3)])
def test_gradcheck_eval(shape, affine):
    x, (w, b) = _inputs(shape, affine, seed=1)
    rng = np.random.default_rng(7)
    rm, rv = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    tensors = [t for t in (x, w, b) if t is not None]

    def fn(x, *params):
        return F.batch_norm(x, rm, rv, *params, training=False)

    md.gradcheck(fn, *tensors)


def test_float32_gradients_stay_float32():
    x, (w, b) = _inputs((4, 3, 2, 2), "both")
    x32, w32, b32 = (md.tensor(t.numpy(), dtype=np.float32, requires_grad=True) for t in (x, w, b))
    for training in (True, False):
        y = F.batch_norm(x32, np.zeros(3), np.ones(3), w32, b32, training=training)
        assert y.dtype == np.float32
        (y * y).sum().backward()
        assert x32.grad.dtype == w32.grad.dtype == b32.grad.dtype == np.float32


def test_clear_errors():
    x = md.tensor(np.zeros((4, 3, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="needed when training=False"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, np.zeros(4), np.ones(3), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(md.tensor(np.zeros((1, 3), dtype=np.float32)), None, None, training=True)
    with pytest.raises(ValueError, match=r"\(N, C, \.\.\.\)"):
        F.batch_norm(md.tensor(np.zeros(3, dtype=np.float32)), None, None, training=True)


def test_half_precision_sums_do_not_overflow():
    """float16 tops out at 65504: a channel's sum of squares over 2 x 128 x 128 values
    of size ~3 would overflow if summed in float16. It is summed in float32."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2, 2, 128, 128)) * 3 + 1).astype(np.float16)
    xt = md.tensor(x, requires_grad=True)
    y = F.batch_norm(xt, None, None, training=True)
    assert y.dtype == np.float16 and np.isfinite(y.numpy()).all()
    x64 = x.astype(np.float64)
    ref = ref_batch_norm(x64, x64.mean(axes_of(x)), x64.var(axes_of(x)), None, None)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-2)
    y.backward(np.ones_like(x))  # the gradient of a sum of normalised values is ~0
    assert np.isfinite(xt.grad).all() and np.abs(xt.grad).max() < 1e-2


def test_any_number_of_trailing_dims():
    """An (N, C, 1, ..., 1, W) input of 14 dims normalises as its (N, C, W) view."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 5))
    deep = x.reshape((3, 2) + (1,) * 11 + (5,))
    y, y_deep = (F.batch_norm(md.tensor(a), None, None, training=True).numpy() for a in (x, deep))
    np.testing.assert_allclose(y_deep.reshape(x.shape), y, rtol=1e-12)
    ref = ref_batch_norm(x, x.mean(axis=(0, 2)), x.var(axis=(0, 2)), None, None)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
