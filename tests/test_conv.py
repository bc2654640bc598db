"""conv2d against an independent reference (scipy.signal.correlate2d per (n, out, in)
pair), its gradients against central differences (minidarts.engine.gradcheck, default
tolerances, float64), and its errors.

One table of cases drives the forward and the gradient tests. It covers every value
of each argument (kernel 1/3/5/7, stride 1/2, padding 0/1/2/4, dilation 1/2, groups
1/2/C, odd and even sizes, batch 1 and 3, non-square kernel/stride/padding/dilation)
and every convolution of the DARTS search network, without the full product.
"""

import numpy as np
import pytest
import scipy.signal

import minidarts as md
import minidarts.nn.functional as F
from minidarts.engine.autograd import Function
from minidarts.nn import conv as conv_module
from minidarts.nn.conv import conv2d

# name: (N, C, O, H, W, kernel, stride, padding, dilation, groups, bias)
CASES = {
    # the DARTS search network (MNIST): stem, preprocessing / pointwise, FactorizedReduce
    "stem_3x3": (3, 1, 4, 8, 8, 3, 1, 1, 1, 1, True),
    "pw_1x1": (3, 4, 3, 6, 7, 1, 1, 0, 1, 1, False),
    "factorized_reduce_even": (1, 4, 2, 8, 8, 1, 2, 0, 1, 1, False),
    "factorized_reduce_odd": (3, 4, 2, 7, 7, 1, 2, 0, 1, 1, False),
    # ... and its depthwise convolutions, at stride 1 and 2
    "dw_3x3": (3, 4, 4, 7, 7, 3, 1, 1, 1, 4, False),
    "dw_3x3_s2": (1, 4, 4, 8, 8, 3, 2, 1, 1, 4, False),
    "dw_5x5": (3, 4, 4, 7, 6, 5, 1, 2, 1, 4, False),
    "dw_5x5_s2": (1, 4, 4, 9, 9, 5, 2, 2, 1, 4, False),
    "dil_3x3": (3, 4, 4, 7, 7, 3, 1, 2, 2, 4, False),
    "dil_3x3_s2": (1, 4, 4, 8, 9, 3, 2, 2, 2, 4, False),
    "dil_5x5": (1, 4, 4, 9, 9, 5, 1, 4, 2, 4, False),
    "dil_5x5_s2": (1, 4, 4, 10, 10, 5, 2, 4, 2, 4, False),
    # the rest of the grid
    "k7_valid": (1, 2, 3, 9, 8, 7, 1, 0, 1, 1, True),
    "k7_dw": (1, 3, 3, 8, 9, 7, 1, 3, 1, 3, True),
    "k5_s2_p4": (3, 2, 2, 6, 7, 5, 2, 4, 1, 1, True),
    "k3_s2_dil2_general": (1, 3, 4, 9, 10, 3, 2, 1, 2, 1, True),
    "groups2_nonsquare": (3, 4, 6, 7, 8, (3, 2), (2, 1), (1, 0), (1, 2), 2, True),
    "dw_nonsquare": (1, 3, 3, 9, 8, (3, 5), (2, 1), (1, 2), (2, 1), 3, True),
    "dw_multiplier": (1, 2, 4, 6, 7, 3, 1, 1, 1, 2, True),
    "dw_1x1": (3, 4, 4, 5, 6, 1, 1, 0, 1, 4, True),
    "pw_padded": (1, 3, 2, 5, 6, 1, 1, 1, 1, 1, True),
    "pw_nonsquare_stride": (1, 3, 2, 7, 8, 1, (2, 1), 0, 1, 1, True),
    "pad_beyond_kernel": (1, 2, 2, 5, 5, 3, 2, 4, 1, 2, True),
}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def uses_im2col(case):
    """Whether conv2d computes `case` with the im2col kernel, the classroom task (the
    other cases go to the pointwise or depthwise kernels on the CPU): the cases whose
    tests carry the im2col marker, checked by test_im2col_marker_follows_the_kernel."""
    _, c, o, _, _, k, _, padding, _, groups, _ = case
    pointwise = _pair(k) == (1, 1) and _pair(padding) == (0, 0) and groups == 1
    depthwise = groups == c == o
    return not pointwise and not depthwise


def case_params(names):
    """pytest params of the named cases, with the im2col marker where it applies."""
    return [
        pytest.param(name, id=name, marks=[pytest.mark.im2col] if uses_im2col(CASES[name]) else [])
        for name in names
    ]


def make_inputs(case, seed=0, dtype=np.float64):
    n, c, o, h, w, k, stride, padding, dilation, groups, bias = case
    kh, kw = _pair(k)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def reference_conv2d(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation by scipy, one (image, output channel, input channel) at a time:
    dilate the kernel by inserting zeros, correlate over the zero-padded image, then
    keep every s-th output."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wd = np.zeros((o, cg, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    wd[:, :, ::dh, ::dw] = w
    og = o // groups
    out = []
    for img in range(n):
        chans = []
        for oc in range(o):
            first = (oc // og) * cg  # first input channel of this output's group
            acc = sum(
                scipy.signal.correlate2d(xp[img, first + ic], wd[oc, ic], mode="valid")
                for ic in range(cg)
            )
            chans.append(acc[::sh, ::sw] + (0.0 if b is None else b[oc]))
        out.append(chans)
    return np.array(out)


@pytest.mark.parametrize("name", case_params(sorted(CASES)))
def test_forward_matches_reference(name, device):
    x, w, b, opts = make_inputs(CASES[name])
    args = [md.tensor(a, device=device) for a in (x, w)]
    bias = None if b is None else md.tensor(b, device=device)
    y = conv2d(*args, bias, **opts)
    expected = reference_conv2d(x, w, b, **opts)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", case_params(sorted(CASES)))
def test_gradients(name):
    x, w, b, opts = make_inputs(CASES[name], seed=1)
    tensors = [md.tensor(a, requires_grad=True) for a in (x, w) + (() if b is None else (b,))]

    def conv(*t):
        return conv2d(t[0], t[1], t[2] if len(t) > 2 else None, **opts)

    report = md.gradcheck(conv, *tensors)
    assert report.max_rel_error <= 1e-6


def _random_depthwise_cases(count, seed=7):
    """Depthwise geometries drawn at random (strides 1-3, padding 0-4 on tiny images):
    the row stack shares padding rows between images and drops slots past the output,
    whose bookkeeping the table's cases alone would not corner."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, c = (int(v) for v in rng.integers(1, 3, size=2))
        h, w, kh, kw = (int(v) for v in rng.integers(1, 8, size=4))
        kh, kw = min(kh, 5), min(kw, 5)
        ranges = ((1, 4), (0, 5), (1, 3))  # stride, padding, dilation
        s, p, d = (tuple(int(v) for v in rng.integers(lo, hi, size=2)) for lo, hi in ranges)
        if (kh - 1) * d[0] + 1 <= h + 2 * p[0] and (kw - 1) * d[1] + 1 <= w + 2 * p[1]:
            cases.append((n, c, c, h, w, (kh, kw), s, p, d, c, False))
    return cases


@pytest.mark.parametrize("case", _random_depthwise_cases(40))
def test_depthwise_random_geometries(case):
    x, w, b, opts = make_inputs(case, seed=3)
    y = conv2d(md.tensor(x), md.tensor(w), **opts)
    np.testing.assert_allclose(y.numpy(), reference_conv2d(x, w, b, **opts), atol=1e-12)
    tensors = [md.tensor(a, requires_grad=True) for a in (x, w)]
    report = md.gradcheck(lambda xt, wt: conv2d(xt, wt, **opts), *tensors)
    assert report.max_rel_error <= 1e-6


@pytest.mark.parametrize("case", _random_depthwise_cases(12, seed=11))
def test_depthwise_relu_mask_is_relu_then_conv_to_the_bit(case):
    """_Depthwise.forward(x, w, relu_mask=x > 0) (the ReLU fused into its copies, as the
    fast path's conv stages use it) gives relu then conv exactly: the output and both
    gradients, the input's taken through the ReLU."""
    x, w, _, opts = make_inputs(case, seed=5)
    geometry = (opts["stride"], opts["padding"], opts["dilation"])  # pairs already
    xt, wt = md.tensor(x, requires_grad=True), md.tensor(w, requires_grad=True)
    y = conv2d(F.relu(xt), wt, **opts)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(gy)

    fused = conv_module._Depthwise(*geometry)
    y_fused = fused.forward(x, w, relu_mask=x > 0)
    gx, gw = fused.backward(gy, True, True)
    assert np.array_equal(y_fused, y.numpy())
    assert np.array_equal(gx, xt.grad) and np.array_equal(gw, wt.grad)
    assert (gx[x <= 0] == 0).all()  # the mask reached the gradient


@pytest.mark.parametrize("case", _random_depthwise_cases(12, seed=13))
def test_depthwise_with_several_filters_per_channel(case):
    """_Depthwise with a weight (C, E, kh, kw) (the search's E edges reading one state,
    darts/fast_ops.py): output channel e*C + c is channel c convolved with filter e, by
    the scipy reference; the input's gradient sums the E filters' (against central
    differences, through the fused ReLU), and each filter gets its own."""
    x, _, _, opts = make_inputs(case, seed=6)
    e, (kh, kw) = 3, case[5]
    c = x.shape[1]
    w = np.random.default_rng(8).standard_normal((c, e, kh, kw))
    geometry = (opts["stride"], opts["padding"], opts["dilation"])
    kernel = conv_module._Depthwise(*geometry)
    y = kernel.forward(x, w, relu_mask=x > 0)
    relu_x = np.maximum(x, 0)
    for f in range(e):
        opts_dw = dict(opts, groups=c)
        expected = reference_conv2d(relu_x, w[:, f : f + 1], None, **opts_dw)
        np.testing.assert_allclose(y[:, f * c : (f + 1) * c], expected, atol=1e-12)

    class Multi(Function):
        def forward(self, x, w):
            self.k = conv_module._Depthwise(*geometry)
            return self.k.forward(x, w, relu_mask=x > 0)

        def backward(self, gy):
            return self.k.backward(gy, True, True)

    xt, wt = md.tensor(x + 0.05 * np.sign(x), requires_grad=True), md.tensor(w, requires_grad=True)
    assert md.gradcheck(lambda a, b: Multi.apply(a, b) ** 2, xt, wt).max_rel_error <= 1e-6


@pytest.mark.im2col
def test_float32_in_float32_out():
    for case in ("stem_3x3", "pw_1x1", "dw_5x5_s2", "groups2_nonsquare"):
        x, w, b, opts = make_inputs(CASES[case], dtype=np.float32)
        b = np.ones(w.shape[0], np.float32)
        xt, wt, bt = (md.tensor(a, requires_grad=True) for a in (x, w, b))
        y = conv2d(xt, wt, bt, **opts)
        assert y.dtype == np.float32
        y.sum().backward()
        assert xt.grad.dtype == wt.grad.dtype == bt.grad.dtype == np.float32
        expected = reference_conv2d(x, w, b, **opts)
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.im2col
def test_weight_gradient_without_input_gradient():
    """The stem's input needs no gradient: backward skips it and dw is unchanged."""
    x, w, b, opts = make_inputs(CASES["stem_3x3"])
    gy = np.random.default_rng(2).standard_normal(reference_conv2d(x, w, b, **opts).shape)
    grads = []
    for x_grad in (True, False):
        xt, wt = md.tensor(x, requires_grad=x_grad), md.tensor(w, requires_grad=True)
        conv2d(xt, wt, **opts).backward(gy)
        assert (xt.grad is not None) == x_grad
        grads.append(wt.grad)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_strided_view_input():
    """FactorizedReduce convolves x[:, :, 1:, 1:], a view with odd strides."""
    x, w, b, opts = make_inputs(CASES["factorized_reduce_even"])
    y = conv2d(md.tensor(x)[:, :, 1:, 1:], md.tensor(w), **opts)
    np.testing.assert_allclose(y.numpy(), reference_conv2d(x[:, :, 1:, 1:], w, b, **opts))


@pytest.mark.parametrize(
    "name", case_params(["stem_3x3", "pw_1x1", "factorized_reduce_odd", "dw_5x5_s2"])
)
def test_empty_batch(name):
    """An empty batch gives an empty output and zero weight gradients, as in PyTorch."""
    _, *rest = CASES[name]
    x, w, b, opts = make_inputs((0, *rest))
    xt, wt = md.tensor(x, requires_grad=True), md.tensor(w, requires_grad=True)
    y = conv2d(xt, wt, **opts)
    x1, _, _, _ = make_inputs(CASES[name])
    assert y.shape == (0,) + reference_conv2d(x1, w, None, **opts).shape[1:]
    y.sum().backward()
    assert xt.grad.shape == x.shape and not wt.grad.any()


@pytest.mark.parametrize("name", sorted(CASES))
def test_im2col_marker_follows_the_kernel(name, monkeypatch):
    """A case carries the im2col marker exactly when conv2d (on the CPU) runs it through
    the im2col kernel, so `pytest -m im2col` grades that kernel and nothing else."""
    calls = []
    forward = conv_module._Im2col.forward
    monkeypatch.setattr(
        conv_module._Im2col, "forward", lambda self, x, w: calls.append(1) or forward(self, x, w)
    )
    x, w, b, opts = make_inputs(CASES[name])
    conv2d(md.tensor(x), md.tensor(w), None if b is None else md.tensor(b), **opts)
    assert bool(calls) == uses_im2col(CASES[name])


def test_exported_from_functional():
    assert F.conv2d is conv2d


def _bad(match, x=(2, 4, 8, 8), w=(6, 4, 3, 3), b=None, dtype=np.float32, **opts):
    xt = md.tensor(np.zeros(x, dtype))
    wt = md.tensor(np.zeros(w, np.float32))
    bt = None if b is None else md.tensor(np.zeros(b, np.float32))
    with pytest.raises((ValueError, TypeError), match=match):
        conv2d(xt, wt, bt, **opts)


@pytest.mark.parametrize(
    "match, kwargs",
    [
        (r"input must be 4-D \(N, C, H, W\), got shape \(4, 8, 8\)", dict(x=(4, 8, 8))),
        (r"weight must be 4-D", dict(w=(6, 4, 3))),
        (r"input has 4 channels .* expects 3", dict(w=(6, 3, 3, 3))),
        (r"input has 4 channels .* groups=2 expects 8", dict(w=(6, 4, 3, 3), groups=2)),
        (r"in_channels \(4\) .* divisible by groups \(3\)", dict(w=(6, 1, 3, 3), groups=3)),
        (r"out_channels \(6\) .* divisible by groups \(4\)", dict(w=(6, 1, 3, 3), groups=4)),
        (r"groups must be a positive int, got 0", dict(groups=0)),
        (
            r"kernel \(9x9, dilation \(1, 1\) spans 9x9\) is larger than the padded input \(8x8",
            dict(w=(6, 4, 9, 9)),
        ),
        (r"spans 9x5\) is larger than the padded input \(8x8", dict(w=(6, 4, 5, 3), dilation=2)),
        (r"stride must be >= 1, got 0", dict(stride=0)),
        (r"stride must be >= 1, got \(1, -1\)", dict(stride=(1, -1))),
        (r"padding must be >= 0, got -1", dict(padding=-1)),
        (r"dilation must be >= 1, got 0", dict(dilation=0)),
        (r"stride must be an int or a pair of ints, got 1.5", dict(stride=1.5)),
        (r"padding must be an int or a pair of ints, got \(1, 1, 1\)", dict(padding=(1, 1, 1))),
        (r"padding must be an int or a pair of ints, got True", dict(padding=True)),
        (r"bias must have shape \(6,\)", dict(b=(4,))),
        (r"input must be floating point", dict(dtype=np.int64)),
        (r"weight is float32 .* input is float64", dict(dtype=np.float64)),
    ],
)
def test_errors(match, kwargs):
    _bad(match, **kwargs)
