"""Tests of darts/fast_ops.py: DARTS's ReLU - depthwise - 1x1 - BN stages as one
Function on the fast path. The stage must give what the four modules give, to the bit
(forward, every gradient, the BN statistics), in training and in evaluation, and its
gradients must match central differences in float64. That the whole fast path equals
the readable one is tested in test_fast_cell.py."""

import numpy as np
import pytest

import minidarts as md
from minidarts.darts import fast_ops, operations
from minidarts.engine import random
from minidarts.nn import batchnorm
from minidarts.nn import functional as F

# (operation, stride): DARTS's conv operations, on a normal and a reduction edge
CONV_OPS = [
    (name, s)
    for name in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    for s in (1, 2)
]


def _op(name, stride, affine, dtype):
    with random.seeded(len(name) + stride):
        op = operations.build_operation(name, 4, stride, affine)
    for p in op.parameters():
        p.data = p.data.astype(dtype)
    return op


def _run(op, x, gy, fused):
    """Output, the input's and every parameter's gradient, and the state after it."""
    xt = md.tensor(x, requires_grad=True)
    y = fast_ops.run(op, xt) if fused else op(xt)
    y.backward(gy)
    grads = [xt.grad] + [p.grad for p in op.parameters()]
    for p in op.parameters():
        p.grad = None
    return y, grads, [v.copy() for v in op.state_dict().values()]


@pytest.mark.parametrize("name, stride", CONV_OPS)
@pytest.mark.parametrize(
    "affine, dtype", [(False, np.float32), (True, np.float32), (False, np.float64)]
)
def test_fused_stages_equal_the_modules_to_the_bit(name, stride, affine, dtype):
    """Three calls, in training, evaluation and training again (batch statistics, the
    running ones, then the running ones moved twice): fused and not, every output,
    gradient and BN buffer is the same array."""
    rng = np.random.default_rng(stride)
    calls = []
    for mode in ("train", "eval", "train"):
        x = rng.standard_normal((3, 4, 9, 9)).astype(dtype)
        size = -(-9 // stride)
        calls.append((mode, x, rng.standard_normal((3, 4, size, size)).astype(dtype)))
    runs = {}
    for fused in (False, True):
        op = _op(name, stride, affine, dtype)
        runs[fused] = []
        for mode, x, gy in calls:
            op.train(mode == "train")
            runs[fused].append(_run(op, x, gy, fused))
    for (mode, _, _), plain, fused in zip(calls, runs[False], runs[True]):
        assert type(fused[0]._ctx) is fast_ops.ReluConvBN  # it did run fused
        assert np.array_equal(plain[0].data, fused[0].data), mode
        for a, b in zip(plain[1] + plain[2], fused[1] + fused[2]):
            assert a is not None and np.array_equal(a, b), mode


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 2)])
def test_relu_conv_bn_gradients_against_central_differences(affine, stride, dilation):
    """ReluConvBN's gradients (the input through the fused ReLU, both convolutions'
    weights, BN's weight and bias when affine), float64, batch statistics. The input
    is kept away from ReLU's kink at 0, where the two one-sided slopes differ."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 6, 6))
    x += 0.1 * np.sign(x)
    weights = [rng.standard_normal((4, 1, 3, 3)), rng.standard_normal((5, 4, 1, 1))]
    if affine:
        weights += [1 + 0.1 * rng.standard_normal(5), rng.standard_normal(5)]
    affine_args = [md.tensor(w) for w in weights[2:]] if affine else [None, None]
    fn, _, options = batchnorm.prepare(
        np.empty((2, 5, 3, 3)), None, None, *affine_args, True, 0.1, 1e-5
    )

    def stage(x, *ws):
        geometry = dict(
            stride=(stride, stride), padding=(dilation, dilation), dilation=(dilation, dilation)
        )
        return fast_ops.ReluConvBN.apply(x, *ws, **geometry, bn=(fn, options))

    tensors = [md.tensor(a, requires_grad=True) for a in [x] + weights]
    assert md.gradcheck(stage, *tensors).max_rel_error <= 1e-6


def test_other_operations_run_as_they_are():
    """Pools, skip_connect and an operation of the user's: fast_ops.run calls them."""
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32))
    for name, stride in (("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("skip_connect", 2)):
        op = _op(name, stride, False, np.float32)
        assert np.array_equal(fast_ops.run(op, x).data, op(x).data)
    identity = _op("skip_connect", 1, False, np.float32)
    assert fast_ops.run(identity, x) is x
    changed = _op("dil_conv_3x3", 1, False, np.float32)
    changed.op = md.nn.Sequential(md.nn.Identity(), *list(changed.op)[1:])  # no ReLU: not fused
    y = fast_ops.run(changed, x)
    assert type(y._ctx) is not fast_ops.ReluConvBN
    assert np.array_equal(y.data, changed(x).data)


def test_a_patched_layer_is_not_fused(monkeypatch):
    """A layer whose forward is no longer the library's (the second-order tests swap
    ReLU for x * sigmoid(x)) leaves its stage to the modules, so the fast path still
    computes what the network's modules say."""
    x = md.tensor(np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32))
    op = _op("sep_conv_3x3", 1, False, np.float32)
    monkeypatch.setattr(md.nn.ReLU, "forward", lambda self, t: t * F.sigmoid(t))
    y = fast_ops.run(op, x)
    assert type(y._ctx) is not fast_ops.ReluConvBN
    assert np.array_equal(y.data, op(x).data)
    monkeypatch.undo()
    op.op[0].op[1].forward = lambda t: t  # one instance patched: that stage alone
    y = fast_ops.run(op, x)
    assert type(y._ctx) is fast_ops.ReluConvBN  # the second stage still fused
    assert type(y._ctx.inputs[0]._ctx) is not fast_ops.ReluConvBN


def test_only_the_batch_norm_weights_need_a_gradient():
    """Input and convolutions frozen, an affine BN's weight and bias trained: the
    stage gives those two gradients, as the modules do, and nothing else."""
    x = md.tensor(np.random.default_rng(2).standard_normal((2, 4, 6, 6)))
    grads = []
    for fused in (False, True):
        op = _op("dil_conv_3x3", 1, True, np.float64)
        for conv in op.op[1:3]:
            conv.weight.requires_grad = False
        y = fast_ops.run(op, x) if fused else op(x)
        assert fused == (type(y._ctx) is fast_ops.ReluConvBN)
        y.backward(np.ones(y.shape))
        grads.append([op.op[3].weight.grad, op.op[3].bias.grad, op.op[1].weight.grad])
    assert grads[1][2] is None and grads[0][2] is None
    assert np.array_equal(grads[0][0], grads[1][0]) and np.array_equal(grads[0][1], grads[1][1])


def test_frozen_parts_keep_nothing_for_the_backward():
    """Weights frozen (the architecture step), the input trained: the stage drops the
    arrays only a weight gradient reads, and the input's gradient is the modules'.
    Under no_grad it records nothing and computes the same output."""
    x = np.random.default_rng(3).standard_normal((2, 4, 6, 6)).astype(np.float32)
    results = []
    for fused in (False, True):
        op = _op("dil_conv_5x5", 1, False, np.float32)
        for p in op.parameters():
            p.requires_grad = False
        xt = md.tensor(x, requires_grad=True)
        y = fast_ops.run(op, xt) if fused else op(xt)
        if fused:
            stage = y._ctx
            assert stage.depthwise.x is None and stage.pointwise.x2 is None
            assert stage.depthwise.mask is not None  # the input's gradient needs it
        y.backward(np.ones(y.shape, np.float32))
        with md.no_grad():
            quiet = fast_ops.run(op, md.tensor(x, requires_grad=True))
        assert quiet._ctx is None
        results.append((y.data, xt.grad, quiet.data))
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_calls_the_kernels_would_not_take_go_to_the_modules():
    """Mixed dtypes and a wrong channel count: the modules run and raise their own
    clear errors (conv2d's), before any BN counts the batch."""
    op = _op("dil_conv_3x3", 1, False, np.float32)
    bn = op.op[3]
    with pytest.raises(TypeError, match="conv2d"):
        fast_ops.run(op, md.tensor(np.ones((2, 4, 6, 6))))  # float64 input, float32 weights
    with pytest.raises(ValueError, match="conv2d"):
        fast_ops.run(op, md.tensor(np.ones((2, 3, 6, 6), np.float32)))
    assert int(bn.num_batches_tracked.data) == 0


def test_stages_reading_the_same_input_share_one_relu_mask():
    """On a mixed op's edge, the four operations that start with relu(x) keep one mask
    x > 0 between them (SharedMask), while a SepConv's second stage, which reads
    another tensor, makes its own; the outputs and gradients stay the modules'."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    names = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    ops = [_op(name, 1, False, np.float32) for name in names]
    xt = md.tensor(x, requires_grad=True)
    shared = fast_ops.SharedMask(xt)
    outs = [fast_ops.run(op, xt, shared) for op in ops]
    # the first stage of each operation: the output's own Function for a DilConv, the
    # Function that made the second stage's input for a SepConv
    firsts = [out._ctx.inputs[0]._ctx if "sep" in n else out._ctx for n, out in zip(names, outs)]
    masks = [f.depthwise.mask for f in firsts]
    assert all(m is masks[0] for m in masks) and np.array_equal(masks[0], x > 0)
    for out in outs[:2]:  # the second stages' masks: of their own input
        assert out._ctx.depthwise.mask is not masks[0]
    # another tensor gets no mask from it
    assert shared.of(md.tensor(x)) is None
    for name, op, out in zip(names, ops, outs):
        out.backward(gy)
        fused = [xt.grad] + [p.grad for p in op.parameters()]
        xt.grad = None
        for p in op.parameters():
            p.grad = None
        plain = _run(_op(name, 1, False, np.float32), x, gy, fused=False)
        assert np.array_equal(plain[0].data, out.data), name
        for a, b in zip(plain[1], fused):
            assert np.array_equal(a, b), name
