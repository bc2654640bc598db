"""Tests of darts/fast_ops.py: one candidate operation of the E edges that read a state,
as one call (group_op). Each kind of group must give what the edges' own modules give
(the output, the input's and every weight's gradient, every BN buffer), in training and
in evaluation, to rounding in float64; its Functions' gradients must match central
differences; and a group whose modules are not DARTS's as built must call them, to the
bit. That the whole fast cell equals the readable one is tested in test_fast_cell.py."""

import numpy as np
import pytest

import minidarts as md
from minidarts import nn
from minidarts.darts import fast_ops, operations
from minidarts.engine import random
from minidarts.engine.ops import cat
from minidarts.nn import batchnorm

EDGES = 3


def _edges(name, stride, affine=False, dtype=np.float64, C=4):
    """The operation `name` of EDGES edges (different weights), as MixedOp builds it."""
    mods = []
    for e in range(EDGES):
        with random.seeded(10 * e + len(name) + stride):
            op = operations.build_operation(name, C, stride, affine)
        if "pool" in name:
            op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
        for t in list(op.parameters()) + list(op.buffers()):
            if np.issubdtype(t.data.dtype, np.floating):
                t.data = t.data.astype(dtype)
        mods.append(op)
    return mods


def _call(mods, x, gy, grouped):
    """Output (N, E*C, ...), the gradients of x and of every weight, and every buffer."""
    xt = md.tensor(x, requires_grad=True)
    if grouped:
        y, shared = fast_ops.group_op(mods, xt, x > 0)
        if shared:  # the same output for every edge
            y = cat([y] * len(mods), dim=1)
    else:
        y = cat([m(xt) for m in mods], dim=1)
    if gy is not None:
        y.backward(gy)
    params = [p for m in mods for p in m.parameters()]
    grads = [xt.grad] + [p.grad for p in params]
    for p in params:
        p.grad = None
    return y.data, grads, [v.copy() for m in mods for v in m.state_dict().values()]


def _compare(name, stride, shape, affine=False, dtype=np.float64, rtol=1e-11):
    """Train, eval, train (batch statistics, the running ones, then those moved twice):
    the group and the edges' own modules, each from the same initial state."""
    runs = {}
    for grouped in (False, True):
        mods = _edges(name, stride, affine, dtype)
        rng = np.random.default_rng(stride)
        out = []
        for mode in ("train", "eval", "train"):
            for m in mods:
                m.train(mode == "train")
            x = rng.standard_normal(shape).astype(dtype)
            side = (-(-shape[2] // stride), -(-shape[3] // stride))
            gy = rng.standard_normal((shape[0], EDGES * shape[1]) + side).astype(dtype)
            out.append(_call(mods, x, gy, grouped))
        runs[grouped] = out
    for (y1, g1, s1), (y2, g2, s2) in zip(runs[False], runs[True]):
        np.testing.assert_allclose(y2, y1, rtol=rtol, atol=rtol)
        assert len(g1) == len(g2)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max())
        for a, b in zip(s1, s2):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_groups_equal_the_edges_modules(name, stride):
    _compare(name, stride, (3, 4, 9, 9))


@pytest.mark.parametrize("name", ["max_pool_3x3", "avg_pool_3x3", "skip_connect"])
@pytest.mark.parametrize("stride, side", [(1, 8), (2, 8), (2, 7)])
def test_pool_and_skip_groups_equal_the_edges_modules(name, stride, side):
    """Pools run once for all edges (each edge's BN counts the batch and moves its
    statistics); skip_connect is the state itself, or FactorizedReduce at stride 2
    (an odd side pads its shifted half)."""
    _compare(name, stride, (3, 4, side, side))


def test_float32_groups_are_close():
    _compare("sep_conv_5x5", 2, (4, 4, 10, 10), dtype=np.float32, rtol=2e-5)


def test_the_groups_run_as_one_call_each():
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 4, 8, 8)), requires_grad=True)
    kinds = {
        "sep_conv_3x3": fast_ops.EdgeStage,
        "dil_conv_5x5": fast_ops.EdgeStage,
        "skip_connect": fast_ops.EdgesFactorizedReduce,
        "max_pool_3x3": batchnorm.BatchNormTrain,
    }
    for name, fn in kinds.items():
        y, shared = fast_ops.group_op(_edges(name, 2), x, x.data > 0)
        assert type(y._ctx) is fn and shared == ("pool" in name)
        assert y.shape == ((2, 4, 4, 4) if shared else (2, 4 * EDGES, 4, 4))
    y, shared = fast_ops.group_op(_edges("skip_connect", 1), x, x.data > 0)
    assert y is x and shared


def test_groups_not_as_darts_builds_them_call_their_modules_to_the_bit():
    """An affine BN, a patched layer, BN settings that differ, pools whose running
    statistics differ in evaluation: each edge runs its own modules."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8))
    cases = [_edges("sep_conv_3x3", 1, affine=True), _edges("dil_conv_3x3", 2)]
    dw = cases[1][1].op[1]
    dw.forward = lambda t: type(dw).forward(dw, t) * 2.0
    differ = _edges("dil_conv_5x5", 1)
    differ[2].op[3].eps = 1e-3
    pools = _edges("avg_pool_3x3", 1)
    for m in pools:
        m.eval()
    pools[0][1].running_var.data[...] = 2.0
    reduce = _edges("skip_connect", 2)
    relu = reduce[1].relu
    relu.forward = lambda t: type(relu).forward(relu, t) + 1.0
    for mods in cases + [differ, pools, reduce]:
        state = [[v.copy() for v in m.state_dict().values()] for m in mods]
        y, shared = fast_ops.group_op(mods, md.tensor(x), x > 0)
        assert not shared and type(y._ctx) is not fast_ops.EdgeStage
        for m, s in zip(mods, state):  # back to the state before, for the modules' own run
            for v, old in zip(m.state_dict().values(), s):
                v[...] = old
        expected = cat([m(md.tensor(x)) for m in mods], dim=1)
        assert np.array_equal(y.data, expected.data)


def _stage_inputs(shared, e=2, c=3, c_out=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, c if shared else e * c, 7, 7))
    dws = [rng.standard_normal((c, 1, k, k)) for _ in range(e)]
    pws = [rng.standard_normal((c_out, c, 1, 1)) for _ in range(e)]
    return [md.tensor(a, requires_grad=True) for a in [x] + dws + pws]


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_edge_stage_gradients_against_central_differences(shared, training):
    """EdgeStage, float64: the input through the fused ReLU (summed over the E filters
    of a shared input), each edge's depthwise and 1x1 weights; dilation 2, stride 2."""
    tensors = _stage_inputs(shared)
    channels = 2 * 4
    rm, rv = np.zeros(channels), np.ones(channels)
    if training:
        fn, options = (
            batchnorm.BatchNormTrain,
            dict(running_mean=None, running_var=None, momentum=0.1),
        )
    else:
        fn, options = batchnorm.BatchNormEval, dict(running_mean=rm + 0.3, running_var=rv * 2)
    options.update(has_weight=False, has_bias=False, eps=1e-5)

    def stage(x, *w):
        return fast_ops.EdgeStage.apply(
            x, *w, shared=shared, stride=(2, 2), padding=(2, 2), dilation=(2, 2), bn=(fn, options)
        )

    assert md.gradcheck(lambda *t: stage(*t) ** 2, *tensors).max_rel_error <= 1e-6


def test_edges_factorized_reduce_gradients_against_central_differences():
    rng = np.random.default_rng(4)
    x = md.tensor(rng.standard_normal((2, 3, 7, 7)), requires_grad=True)
    ws = [md.tensor(rng.standard_normal((2, 3, 1, 1)), requires_grad=True) for _ in range(4)]
    options = dict(running_mean=None, running_var=None, momentum=0.1, has_weight=False)
    options.update(has_bias=False, eps=1e-5)

    def reduce(x, *w):
        bn = (batchnorm.BatchNormTrain, options)
        return fast_ops.EdgesFactorizedReduce.apply(x, *w, bn=bn) ** 2

    assert md.gradcheck(reduce, x, *ws).max_rel_error <= 1e-6


def test_the_comparison_above_can_fail():
    """A group that gave each edge its neighbour's 1x1 weights (a plausible slip in the
    batched product) differs beyond the tolerance."""
    mods = _edges("dil_conv_3x3", 1)
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6))
    good = _call(mods, x, None, False)[0]
    weights = [m.op[2].weight.data.copy() for m in mods]
    for m, w in zip(mods, weights[1:] + weights[:1]):
        m.op[2].weight.data = w
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(_call(mods, x, None, True)[0], good, rtol=1e-11)


@pytest.mark.parametrize("name", ["sep_conv_5x5", "dil_conv_3x3"])
def test_depthwise_in_chunks_of_images_equals_the_modules(name, monkeypatch):
    """A large batch runs the depthwise kernel a chunk of images at a time (its arrays
    stay in the cache): here one image a call, then two."""
    for elements in (1, 2 * 4 * EDGES * 5 * 5):
        monkeypatch.setattr(fast_ops, "CHUNK_ELEMENTS", elements)
        _compare(name, 2, (3, 4, 9, 9))


def test_the_checks_are_answered_once_until_a_module_changes(monkeypatch):
    """fast_checks answers whether a group may run as one call once, and asks again
    after any change made through the Module API (an instance's forward, a setting, a
    layer replaced), a class's forward replaced, or a weight's dtype changed behind the
    Module's back: each then runs the edges' own modules."""
    from minidarts.darts import fast_checks

    checked = []
    real = fast_checks._check_stages
    monkeypatch.setattr(fast_checks, "_check_stages", lambda *a: checked.append(1) or real(*a))
    rng = np.random.default_rng(5)
    x = md.tensor(rng.standard_normal((2, 4, 8, 8)))

    def grouped(mods):
        y, _ = fast_ops.group_op(mods, x, x.data > 0)
        return type(y._ctx) is fast_ops.EdgeStage if y._ctx is not None else None

    mods = _edges("dil_conv_3x3", 1)
    for m in mods:
        for p in m.parameters():
            p.requires_grad = True
    assert grouped(mods) and grouped(mods) and len(checked) == 1  # answered once
    dw = mods[1].op[1]
    dw.forward = lambda t: type(dw).forward(dw, t) * 2.0  # an instance's forward
    assert grouped(mods) is False and len(checked) == 2
    del dw.forward
    assert grouped(mods) and len(checked) == 3
    mods[2].op[3].eps = 1e-3  # a setting that differs between edges
    assert grouped(mods) is False
    mods[2].op[3].eps = mods[0].op[3].eps
    assert grouped(mods)
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, t: t * 1.0)  # a class's forward
    assert grouped(mods) is False
    monkeypatch.undo()
    monkeypatch.setattr(fast_checks, "_check_stages", lambda *a: checked.append(1) or real(*a))
    assert grouped(mods)
    pw = mods[0].op[2].weight
    pw.data = pw.data.astype(np.float32)  # behind the Module's back: no change counted
    with pytest.raises((TypeError, ValueError)):  # the modules' own clear error
        fast_ops.group_op(mods, x, x.data > 0)
