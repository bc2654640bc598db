"""Tests of operations.py and mixed_op.py: the 8 DARTS candidate operations.

Shapes at stride 1 and 2 for odd and even sizes, parameter counts against the formula
of op_param_count, 'none' is zero, and the conv operations against a NumPy reference
of DARTS's definitions (ReLU - depthwise (dilated) conv - 1x1 conv - BN)."""

import numpy as np
import pytest
from scipy.special import softmax

import minidarts
from minidarts import nn
from minidarts.darts.mixed_op import MixedOp
from minidarts.darts.operations import OPS, PRIMITIVES, FactorizedReduce, op_param_count
from minidarts.engine.autograd import Tensor

SIZES = [(8, 8), (7, 7), (6, 9), (5, 4)]


def _input(shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_shape_and_dtype(name, stride):
    minidarts.manual_seed(0)
    C = 4
    for affine in (False, True):
        op = OPS[name](C, stride, affine)
        for H, W in SIZES:
            x = _input((2, C, H, W))
            y = op(x)
            # every op keeps C channels and, at stride 2, gives ceil(H/2) x ceil(W/2)
            assert y.shape == (2, C, -(-H // stride), -(-W // stride)), (name, stride, H, W)
            assert y.data.dtype == np.float32, name


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("C", [4, 6])
def test_op_param_count_matches_the_built_module(name, stride, affine, C):
    op = OPS[name](C, stride, affine)
    built = sum(p.numel() for p in op.parameters())
    assert op_param_count(name, C, stride, affine) == built
    assert nn.count_parameters(op) == built


def test_op_param_count_formula_values():
    # DARTS's counts for C = 16 without BN parameters: sep_conv_3x3 = 2 (9*16 + 256)
    assert op_param_count("sep_conv_3x3", 16, 1) == 800
    assert op_param_count("sep_conv_5x5", 16, 2) == 2 * (25 * 16 + 256)
    assert op_param_count("dil_conv_3x3", 16, 1) == 9 * 16 + 256
    assert op_param_count("dil_conv_5x5", 16, 1, affine=True) == 25 * 16 + 256 + 32
    assert op_param_count("skip_connect", 16, 1) == 0
    assert op_param_count("skip_connect", 16, 2) == 256
    for name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        assert op_param_count(name, 16, 2, affine=True) == 0
    with pytest.raises(KeyError, match="conv_7x7"):
        op_param_count("conv_7x7", 16, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_gives_zeros(stride):
    x = _input((2, 3, 7, 6))
    y = OPS["none"](3, stride, False)(x)
    assert y.shape == (2, 3, -(-7 // stride), 6 // stride)
    assert np.array_equal(y.data, np.zeros(y.shape, np.float32))


def test_skip_connect_stride_1_is_identity():
    x = _input((2, 3, 5, 5))
    assert np.array_equal(OPS["skip_connect"](3, 1, False)(x).data, x.data)


def test_factorized_reduce_needs_even_channels():
    with pytest.raises(ValueError, match="FactorizedReduce.*even.*5"):
        FactorizedReduce(4, 5)


def test_pools_on_a_constant_image():
    # average pooling does not count the padding, so a constant stays constant at the border
    x = Tensor(np.full((1, 2, 5, 5), 3.0, np.float32))
    for stride in (1, 2):
        for name in ("max_pool_3x3", "avg_pool_3x3"):
            y = OPS[name](2, stride, False)(x)
            assert np.allclose(y.data, 3.0), (name, stride)


# --- a NumPy reference of the conv operations ---------------------------------------------


def _depthwise(x, w, stride, pad, dil):
    """Cross-correlation of each channel with its own k x k kernel w (C, 1, k, k)."""
    N, C, H, W = x.shape
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho = (H + 2 * pad - dil * (k - 1) - 1) // stride + 1
    Wo = (W + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out = np.zeros((N, C, Ho, Wo))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i * dil : i * dil + stride * Ho : stride]
            patch = patch[:, :, :, j * dil : j * dil + stride * Wo : stride]
            out += patch * w[None, :, 0, i, j, None, None]
    return out


def _bn(x, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def _dil_block(x, dw, pw, stride, pad, dil):
    y = _depthwise(np.maximum(x, 0), dw, stride, pad, dil)
    return _bn(np.einsum("oc,nchw->nohw", pw[:, :, 0, 0], y))


def _weights(op):
    return [p.data.astype(np.float64) for p in op.parameters()]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "name, k, pad, dil",
    [("dil_conv_3x3", 3, 2, 2), ("dil_conv_5x5", 5, 4, 2)],
)
def test_dil_conv_matches_reference(name, k, pad, dil, stride):
    minidarts.manual_seed(1)
    op = OPS[name](4, stride, False)
    x = _input((3, 4, 9, 8), seed=2)
    dw, pw = _weights(op)
    assert dw.shape == (4, 1, k, k) and pw.shape == (4, 4, 1, 1)
    expected = _dil_block(x.data.astype(np.float64), dw, pw, stride, pad, dil)
    np.testing.assert_allclose(op(x).data, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name, k", [("sep_conv_3x3", 3), ("sep_conv_5x5", 5)])
def test_sep_conv_matches_reference(name, k, stride):
    minidarts.manual_seed(2)
    op = OPS[name](4, stride, False)
    x = _input((3, 4, 9, 8), seed=3)
    dw1, pw1, dw2, pw2 = _weights(op)
    pad = k // 2
    # two blocks, the stride on the first only
    y = _dil_block(x.data.astype(np.float64), dw1, pw1, stride, pad, 1)
    expected = _dil_block(y, dw2, pw2, 1, pad, 1)
    np.testing.assert_allclose(op(x).data, expected, rtol=1e-4, atol=1e-4)


def test_factorized_reduce_matches_reference():
    minidarts.manual_seed(3)
    op = FactorizedReduce(4, 6, affine=False)
    x = _input((2, 4, 8, 8), seed=4)
    w1, w2 = _weights(op)
    r = np.maximum(x.data.astype(np.float64), 0)
    y1 = np.einsum("oc,nchw->nohw", w1[:, :, 0, 0], r[:, :, ::2, ::2])
    y2 = np.einsum("oc,nchw->nohw", w2[:, :, 0, 0], r[:, :, 1::2, 1::2])
    expected = _bn(np.concatenate([y1, y2], axis=1))
    np.testing.assert_allclose(op(x).data, expected, rtol=1e-4, atol=1e-4)


# --- the mixed operation (eq. 2) ------------------------------------------------------------


@pytest.mark.mixed_op
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_its_ops(stride):
    minidarts.manual_seed(4)
    mixed = MixedOp(4, stride)
    x = _input((2, 4, 6, 7), seed=5)
    w = softmax(np.random.default_rng(6).standard_normal(len(PRIMITIVES))).astype(np.float32)
    y = mixed(x, Tensor(w))
    expected = sum(w[k] * op(x).data for k, op in enumerate(mixed._ops))
    np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-6)
    assert y.shape == (2, 4, -(-6 // stride), -(-7 // stride))
    # the pools carry a BN (no parameters during the search)
    assert sum(p.numel() for p in mixed.parameters()) == sum(
        op_param_count(name, 4, stride) for name in PRIMITIVES
    )


@pytest.mark.mixed_op
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_gradcheck_with_respect_to_weights_and_input(stride):
    """d mixed(x, weights) / d(weights, x) by central differences (float64, every
    element): the architecture learns only through `weights`, so a weight read as a
    number (cutting alpha's gradient) fails here rather than in a later task."""
    minidarts.manual_seed(8)
    mixed = MixedOp(2, stride)
    for t in list(mixed.parameters()) + list(mixed.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    rng = np.random.default_rng(9)
    x = Tensor(rng.standard_normal((2, 2, 5, 5)), requires_grad=True)
    w = Tensor(softmax(rng.standard_normal(len(PRIMITIVES))), requires_grad=True)
    report = minidarts.gradcheck(lambda x, w: mixed(x, w), x, w)
    assert report.n_checks == x.data.size + w.data.size
