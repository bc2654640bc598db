"""Tests of hypernet.py and of the search with a hypernetwork (eq. 4-5).

The linear hypernetwork is exactly alpha = t b1 + b2 (t = lambda, or log10 lambda
rescaled to [0, 1]); the MLP one starts as DARTS's alpha; both save and load their
state; bad lambdas, inputs and ranges are refused; lambda is drawn log-uniformly and
reproducibly. The architecture loss L_val + lambda * complexity at alpha(lambda) is
gradient-checked in float64 with respect to the hypernetworks' parameters. A tiny
search with a hypernetwork records one result per evaluation lambda, moves the
complexity with lambda, and resumes bit for bit. The config refuses bad hypernet
settings."""

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax
from test_search import assert_same_state, interrupt_after_epoch

import minidarts
from minidarts.darts.architect import Architect
from minidarts.darts.complexity import Complexity
from minidarts.darts.hypernet import (
    LambdaInput,
    LinearHypernet,
    MLPHypernet,
    PiecewiseHypernet,
    make_hypernet,
    sample_lambda,
)
from minidarts.darts.network import Network
from minidarts.engine import backend
from minidarts.engine.autograd import Tensor, no_grad
from minidarts.jobs.checkpoint import load_checkpoint, save_checkpoint
from minidarts.jobs.config import make_config
from minidarts.jobs.data import Batches
from minidarts.jobs.evaluate import evaluate
from minidarts.jobs.search import Search
from minidarts.nn import functional as F

N_OPS = 8
KINDS = ("normal", "reduce")


def _quiet(message):
    pass


def _rng(seed=0):
    return backend.default_rng(seed)


def _t_log(lam, lo, hi):
    """The 'log' input written out: (log10 lambda - log10 lmin) / (log10 lmax - log10 lmin)."""
    return (np.log10(lam) - np.log10(lo)) / (np.log10(hi) - np.log10(lo))


# --- the linear hypernetwork (eq. 5) ------------------------------------------------


@pytest.mark.hypernet
@pytest.mark.parametrize("lam", [1e-5, 1e-3, 0.37, 1.0, 3.0])
def test_linear_hypernet_is_equation_5(lam):
    """alpha(lambda) = lambda * b1 + b2, bit for bit the float32 arithmetic of the formula."""
    h = LinearHypernet(2, N_OPS, _rng())
    for k in KINDS:  # b1 and b2 differ from each other, per kind, and are not zero
        assert not np.array_equal(h.b1[k].data, h.b2[k].data)
        assert np.abs(h.b1[k].data).min() > 0
    alphas = h(lam)
    assert set(alphas) == set(KINDS)
    for k in KINDS:
        expected = h.b1[k].data * np.float32(lam) + h.b2[k].data
        assert alphas[k].data.dtype == np.float32
        np.testing.assert_array_equal(alphas[k].data, expected)


@pytest.mark.hypernet
@pytest.mark.parametrize("lam", [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 1.0])
def test_linear_hypernet_log_input(lam):
    """Input 'log': alpha = t b1 + b2 with t = (log10 lambda - log10 lmin) / (log10 lmax -
    log10 lmin); t = 0 at lambda_min (alpha = b2) and 1 at lambda_max (b1 + b2), and
    lambdas outside the range extrapolate linearly in log10 lambda."""
    lo, hi = 1e-4, 1e-1
    h = LinearHypernet(3, N_OPS, _rng(1), lambda_input=LambdaInput("log", lo, hi))
    t = _t_log(lam, lo, hi)
    alphas = h(lam)
    for k in KINDS:
        expected = h.b1[k].data * np.float32(t) + h.b2[k].data
        np.testing.assert_allclose(alphas[k].data, expected, rtol=1e-6, atol=1e-9)
    if lam == lo:
        for k in KINDS:
            np.testing.assert_array_equal(alphas[k].data, h.b2[k].data)
    if lam == hi:
        for k in KINDS:
            np.testing.assert_allclose(alphas[k].data, h.b1[k].data + h.b2[k].data, rtol=1e-6)


def test_lambda_input_values():
    assert LambdaInput()(0.25) == 0.25
    log = LambdaInput("log", 1e-5, 1.0)
    assert log(1e-5) == 0.0 and log(1.0) == 1.0
    assert log(1e-3) == pytest.approx(0.4, rel=1e-12)
    assert log(10.0) == pytest.approx(1.2, rel=1e-12)  # beyond lambda_max: extrapolated


@pytest.mark.parametrize("steps", [2, 3, 4])
@pytest.mark.hypernet
def test_linear_hypernet_shapes(steps):
    edges = {2: 5, 3: 9, 4: 14}[steps]
    h = LinearHypernet(steps, N_OPS, _rng())
    params = list(h.parameters())
    assert len(params) == 4 and len({id(p) for p in params}) == 4
    for p in params:
        assert p.shape == (edges, N_OPS) and p.requires_grad and p.data.dtype == np.float32
        assert 0 < np.abs(p.data).max() < 1e-2  # DARTS's 1e-3 * randn
    for a in h(0.1).values():
        assert a.shape == (edges, N_OPS)
    # the output is a function of b1, b2: backward reaches all four
    total = sum((a * a).sum() for a in h(0.5).values())
    total.backward()
    assert all(p.grad is not None and np.abs(p.grad).max() > 0 for p in params)


# --- the MLP hypernetwork ------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(16,), (4, 8), ()])
@pytest.mark.parametrize("steps", [2, 4])
def test_mlp_hypernet_shapes_and_darts_start(hidden, steps):
    """Alphas of both kinds shaped (edges, ops); at the start the output layer's weight is
    0, so alpha is its bias, 1e-3 * randn, the same at every lambda: DARTS's start, where
    every operation has weight nearly 1/|O|."""
    edges = {2: 5, 4: 14}[steps]
    h = MLPHypernet(steps, N_OPS, _rng(), hidden=hidden)
    widths = [1, *hidden, 2 * edges * N_OPS]
    assert h.num_parameters() == sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    first = h(1e-5)
    for lam in (1e-3, 0.5, 1.0):
        for k in KINDS:
            np.testing.assert_array_equal(h(lam)[k].data, first[k].data)
    values = np.concatenate([first[k].data.ravel() for k in KINDS])
    for k in KINDS:
        a = first[k]
        assert a.shape == (edges, N_OPS) and a.data.dtype == np.float32
        np.testing.assert_allclose(softmax(a.data, axis=1), 1 / N_OPS, atol=1e-3)
    assert np.abs(values).max() < 5e-3 and 3e-4 < values.std() < 3e-3
    assert not np.array_equal(first["normal"].data, first["reduce"].data)


def test_mlp_hypernet_depends_on_lambda_once_trained():
    h = MLPHypernet(2, N_OPS, _rng(), hidden=(4,), lambda_input=LambdaInput("log"))
    out = h.mlp[2]
    out.weight.data[...] = np.random.default_rng(0).standard_normal(out.weight.shape)
    a, b = h(1e-4), h(1e-1)
    assert not np.allclose(a["normal"].data, b["normal"].data)
    loss = sum((x * x).sum() for x in h(0.01).values())
    loss.backward()
    assert all(p.grad is not None and np.abs(p.grad).max() > 0 for p in h.parameters())


def test_mlp_hypernet_same_rng_same_network():
    """All its initial weights come from the given rng (not the global generator), so the
    same rng gives the same hypernet whatever was drawn in between."""
    a = MLPHypernet(2, N_OPS, _rng(3), hidden=(6,))
    minidarts.manual_seed(123)  # moves the global generator
    b = MLPHypernet(2, N_OPS, _rng(3), hidden=(6,))
    c = MLPHypernet(2, N_OPS, _rng(4), hidden=(6,))
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name], err_msg=name)
    assert not np.array_equal(a.mlp[0].weight.data, c.mlp[0].weight.data)


# --- state --------------------------------------------------------------------------


def _make(kind, seed):
    if kind == "linear":
        return LinearHypernet(2, N_OPS, _rng(seed), lambda_input=LambdaInput("log"))
    if kind == "piecewise":
        h = PiecewiseHypernet(2, N_OPS, _rng(seed), pivots=4, lambda_min=1e-5, lambda_max=1.0)
        for j, a in enumerate(h.parameters()):  # trained-looking: every pivot different
            a.data[...] = _rng(seed + 10 + j).standard_normal(a.shape)
        return h
    h = MLPHypernet(2, N_OPS, _rng(seed), hidden=(5,), lambda_input=LambdaInput("log"))
    out = h.mlp[2]  # a trained-looking output layer, so the state is not all bias
    out.weight.data[...] = _rng(seed + 100).standard_normal(out.weight.shape)
    return h


@pytest.mark.parametrize(
    "kind", [pytest.param("linear", marks=pytest.mark.hypernet), "piecewise", "mlp"]
)
def test_state_dict_round_trip(kind, tmp_path):
    a, b = _make(kind, 0), _make(kind, 1)
    lams = (1e-5, 1e-3, 0.2, 1.0)
    assert not np.array_equal(a(0.2)["reduce"].data, b(0.2)["reduce"].data)
    state = a.state_dict()
    # through a checkpoint file, as the search saves it
    save_checkpoint(tmp_path / "h.npz", {"hypernet": state})
    b.load_state_dict(load_checkpoint(tmp_path / "h.npz")["hypernet"])
    for lam in lams:
        for k in KINDS:
            np.testing.assert_array_equal(a(lam)[k].data, b(lam)[k].data)
    # the state is a snapshot: later in-place updates (optimiser steps) leave it alone
    saved = {name: v.copy() for name, v in state.items()}
    for p in a.parameters():
        p.data += 1.0
    for name, v in state.items():
        np.testing.assert_array_equal(v, saved[name], err_msg=name)
    a.load_state_dict(state)
    for lam in lams:
        for k in KINDS:
            np.testing.assert_array_equal(a(lam)[k].data, b(lam)[k].data)
    for p in a.parameters():
        assert p.data.dtype == np.float32


def test_linear_load_state_dict_errors():
    h = LinearHypernet(2, N_OPS, _rng())
    state = h.state_dict()
    assert sorted(state) == ["b1.normal", "b1.reduce", "b2.normal", "b2.reduce"]
    missing = {k: v for k, v in state.items() if k != "b1.reduce"}
    with pytest.raises(ValueError, match=r"1 missing key: b1.reduce"):
        h.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"1 unexpected key: b3.normal"):
        h.load_state_dict({**state, "b3.normal": state["b1.normal"]})
    other = LinearHypernet(3, N_OPS, _rng()).state_dict()
    with pytest.raises(ValueError, match=r"b1.normal \(saved \(9, 8\), here \(5, 8\)\)"):
        h.load_state_dict(other)


def test_mlp_load_state_dict_errors():
    h = MLPHypernet(2, N_OPS, _rng(), hidden=(5,))
    other = MLPHypernet(2, N_OPS, _rng(), hidden=(6,)).state_dict()
    with pytest.raises(ValueError, match="shape"):
        h.load_state_dict(other)


# --- bad arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("exp",), "hypernet input must be 'lambda' or 'log', got 'exp'"),
        (("log", 1.0, 0.1), r"need 0 < lambda_min < lambda_max, got 1.0 and 0.1"),
        (("log", 0.1, 0.1), "need 0 < lambda_min < lambda_max"),
        (("lambda", 0.0, 1.0), "need 0 < lambda_min < lambda_max"),
        (("log", -1e-3, 1.0), "need 0 < lambda_min < lambda_max"),
    ],
)
def test_lambda_input_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        LambdaInput(*args)


@pytest.mark.parametrize("kind", [pytest.param("linear", marks=pytest.mark.hypernet), "mlp"])
@pytest.mark.parametrize(
    "lam, error, message",
    [
        (0.0, ValueError, "lambda must be positive and finite, got 0.0"),
        (-0.1, ValueError, "lambda must be positive and finite"),
        (math.nan, ValueError, "lambda must be positive and finite"),
        (math.inf, ValueError, "lambda must be positive and finite"),
        ("0.1", TypeError, "lambda must be a number, got '0.1'"),
        (None, TypeError, "lambda must be a number, got None"),
        (True, TypeError, "lambda must be a number"),
    ],
)
def test_bad_lambda(kind, lam, error, message):
    h = _make(kind, 0)
    with pytest.raises(error, match=f"hypernet: {message}"):
        h(lam)


# --- drawing lambda -----------------------------------------------------------------


@pytest.mark.parametrize("lo, hi", [(1e-5, 1.0), (1e-3, 10.0), (0.2, 0.3)])
def test_sample_lambda_is_log_uniform(lo, hi):
    """log10 lambda is uniform on [log10 lo, log10 hi]: every draw in range, the mean of
    log10 lambda at the midpoint, and a Kolmogorov-Smirnov distance to the uniform law
    well below what a lambda drawn uniformly (not log-uniformly) would give."""
    rng = _rng(7)
    lams = np.array([sample_lambda(rng, lo, hi) for _ in range(5000)])
    assert lams.min() >= lo and lams.max() <= hi
    logs = np.log10(lams)
    a, b = np.log10(lo), np.log10(hi)
    assert abs(logs.mean() - (a + b) / 2) < 0.02 * (b - a)
    ks = stats.kstest(logs, "uniform", args=(a, b - a))
    assert ks.statistic < 0.03, ks
    # lambda itself is far from uniform on [lo, hi] when the range spans decades
    if hi / lo > 100:
        assert stats.kstest(lams, "uniform", args=(lo, hi - lo)).statistic > 0.3


def test_sample_lambda_is_deterministic_by_seed():
    r1, r2, r3 = _rng(1), _rng(1), _rng(2)
    a = [sample_lambda(r1, 1e-5, 1.0) for _ in range(20)]
    b = [sample_lambda(r2, 1e-5, 1.0) for _ in range(20)]
    c = [sample_lambda(r3, 1e-5, 1.0) for _ in range(20)]
    assert a == b and a != c
    assert len(set(a)) == 20 and all(type(v) is float for v in a)


@pytest.mark.parametrize("lo, hi", [(1.0, 1e-3), (0.0, 1.0), (-1.0, 1.0), (0.5, 0.5)])
def test_sample_lambda_bad_range(lo, hi):
    with pytest.raises(ValueError, match="sample_lambda: need 0 < lambda_min < lambda_max"):
        sample_lambda(_rng(), lo, hi)


# --- make_hypernet from a config ----------------------------------------------------


def test_make_hypernet_from_config():
    model = Network(C=2, layers=1, steps=3, multiplier=2)
    assert make_hypernet(make_config("tiny"), model) is None
    cfg = make_config("tiny", {"hypernet": "linear", "hypernet_input": "log", "lambda_min": 1e-3})
    h = make_hypernet(cfg, model)
    assert isinstance(h, LinearHypernet) and h.b1["normal"].shape == (9, N_OPS)
    assert (h.input.mode, h.input.lambda_min, h.input.lambda_max) == ("log", 1e-3, 10.0)
    again = make_hypernet(cfg, model)
    for name, v in h.state_dict().items():
        np.testing.assert_array_equal(v, again.state_dict()[name])
    other_seed = make_hypernet(make_config("tiny", {"hypernet": "linear", "seed": 1}), model)
    assert not np.array_equal(h.b1["normal"].data, other_seed.b1["normal"].data)
    cfg = make_config("tiny", {"hypernet": "mlp", "hypernet_hidden": 7})
    m = make_hypernet(cfg, model)
    assert isinstance(m, MLPHypernet) and m.mlp[0].weight.shape == (7, 1)
    assert m(0.1)["reduce"].shape == (9, N_OPS) and m.input.mode == "lambda"


# --- config validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hypernet": "linear", "penalty": 0.1}, "penalty is the fixed-lambda baseline"),
        ({"hypernet": "mlp", "penalty": 1}, "give one or the other"),
        ({"hypernet": "quadratic"}, "hypernet must be 'linear', 'piecewise' or 'mlp'.*'quadratic'"),
        ({"hypernet": 3}, "hypernet must be a string, got 3"),
        ({"hypernet_input": "exp"}, "hypernet_input must be 'lambda' or 'log', got 'exp'"),
        ({"hypernet_hidden": 0}, "hypernet_hidden must be at least 1"),
        ({"lambda_min": 1.0, "lambda_max": 1.0}, "need 0 < lambda_min < lambda_max"),
        ({"lambda_min": 0.5, "lambda_max": 0.1}, "need 0 < lambda_min < lambda_max"),
        ({"lambda_min": 0.0}, "need 0 < lambda_min < lambda_max"),
        ({"lambda_min": -1e-3}, "need 0 < lambda_min < lambda_max"),
        ({"lambda_max": math.inf}, "lambda_max must be finite"),
        ({"lambda_min": "small"}, "lambda_min must be a number"),
        ({"penalty": -0.1}, "penalty must be >= 0"),
        ({"eval_lambdas": 0.1}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [1e39]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [0.1, 0.0]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [-1e-3]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": ["0.1"]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [True]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [math.inf]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": [math.nan]}, "eval_lambdas must be a list of positive"),
        ({"eval_lambdas": 0.1}, "eval_lambdas must be a list of positive"),
    ],
)
def test_config_rejects_bad_complexity_settings(overrides, message):
    with pytest.raises(ValueError, match=f"^options: .*{message}"):
        make_config("tiny", overrides, source="options")


def test_config_accepts_hypernet_settings():
    cfg = make_config(
        None,
        {"hypernet": "mlp", "hypernet_input": "log", "lambda_min": 1e-4, "eval_lambdas": (1, 0.5)},
    )
    assert cfg.eval_lambdas == [1.0, 0.5] and all(type(v) is float for v in cfg.eval_lambdas)
    assert cfg.lambda_max == 10.0 and cfg.penalty == 0.0
    assert make_config(None, {"penalty": 0.1}).hypernet is None


# --- float64 gradient checks of the architecture loss ---------------------------------

# A reduced search space keeps the checks fast (a few seconds each) while every kind of
# operation cost appears: none and pools (0 weights), skip (C^2 at stride 2), sep conv.
SMALL_SPACE = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def _float64_setup(seed=0):
    """A 3-cell network (normal + 2 reduction cells) in float64, training mode (batch
    statistics), with a fixed batch; as in tests/test_network.py."""
    model = Network(C=2, layers=3, steps=2, multiplier=2, primitives=SMALL_SPACE, seed=seed)
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    model.train()
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((4, 1, 8, 8)))
    y = np.array([0, 3, 7, 9])
    return model, x, y


@pytest.mark.hypernet
@pytest.mark.parametrize(
    "mode, lam", [("lambda", 1e-3), ("lambda", 0.7), ("log", 2e-2)], ids=["1e-3", "0.7", "log"]
)
def test_gradcheck_arch_loss_linear_hypernet(mode, lam):
    """d/d(b1, b2) of L_val(w, alpha(lambda)) + lambda * complexity(alpha(lambda)),
    alpha = t b1 + b2, every element of all four tensors, by central differences."""
    model, x, y = _float64_setup()
    hyper = LinearHypernet(2, len(SMALL_SPACE), _rng(), lambda_input=LambdaInput(mode))
    complexity = Complexity(model)
    architect = Architect(model, None, hypernet=hyper, complexity=complexity)
    rng = np.random.default_rng(1)
    # b1, b2 of order 1: a softmax far from uniform, and the b1 term not negligible
    start = [Tensor(rng.standard_normal(hyper.b1["normal"].shape)) for _ in range(4)]

    def arch_loss(b1_normal, b1_reduce, b2_normal, b2_reduce):
        # the checked tensors stand in for the Parameters (gradcheck's float64 copies)
        hyper.b1._parameters.update(normal=b1_normal, reduce=b1_reduce)
        hyper.b2._parameters.update(normal=b2_normal, reduce=b2_reduce)
        return architect.loss(x, y, lam)[0]

    report = minidarts.gradcheck(arch_loss, *start)
    assert report.n_checks == sum(t.numel() for t in start)
    print(f"arch loss gradcheck, linear hypernet, input {mode}, lambda {lam}: {report}")
    # the loss is the validation loss plus lambda times the complexity at alpha(lambda)
    alphas = hyper(lam)
    ce = F.cross_entropy(model(x, alphas), y).item()
    penalty = lam * complexity(alphas).item()
    assert penalty > 1e-4
    assert architect.loss(x, y, lam)[0].item() == pytest.approx(ce + penalty, rel=1e-12)


def test_gradcheck_arch_loss_mlp_hypernet():
    """The same loss with respect to every parameter of an MLP hypernetwork (a hidden
    layer of 3, input 'log'); the output layer's weight (120 entries) along 16 random
    directions, the rest element by element."""
    model, x, y = _float64_setup(seed=1)
    hyper = MLPHypernet(
        2, len(SMALL_SPACE), _rng(), hidden=(3,), lambda_input=LambdaInput("log", 1e-4, 1.0)
    )
    first, out = hyper.mlp[0], hyper.mlp[2]
    architect = Architect(model, None, hypernet=hyper, complexity=Complexity(model))
    lam = 0.05
    rng = np.random.default_rng(2)
    w1 = Tensor(rng.standard_normal(first.weight.shape))
    c1 = Tensor(rng.standard_normal(first.bias.shape))
    w2 = Tensor(rng.standard_normal(out.weight.shape))  # not 0: the hidden layer matters
    c2 = Tensor(rng.standard_normal(out.bias.shape))
    # the hidden pre-activations stay clear of the ReLU kink at 0
    t = hyper.input(lam)
    assert np.abs(w1.data[:, 0] * t + c1.data).min() > 1e-2

    def arch_loss(w_hidden, b_hidden, w_out, b_out):
        first._parameters["weight"], first._parameters["bias"] = w_hidden, b_hidden
        out._parameters["weight"], out._parameters["bias"] = w_out, b_out
        return architect.loss(x, y, lam)[0]

    report = minidarts.gradcheck(arch_loss, w1, c1, w2, c2, max_elements=60)
    assert report.n_checks == w1.numel() + c1.numel() + 16 + c2.numel()
    print(f"arch loss gradcheck, MLP hypernet, lambda {lam}: {report}")


# --- the piecewise hypernetwork (the authors' follow-up) -----------------------------


@pytest.mark.parametrize("K", [2, 3, 5])
def test_piecewise_hypernet_interpolates_its_pivots_in_log_lambda(K):
    lo, hi = 1e-4, 10.0
    h = PiecewiseHypernet(2, N_OPS, _rng(), pivots=K, lambda_min=lo, lambda_max=hi)
    # all pivots start at one draw of DARTS's alpha: alpha(lambda) starts constant
    for k in KINDS:
        for a in h.A[k][1:]:
            np.testing.assert_array_equal(a.data, h.A[k][0].data)
        assert np.abs(h.A[k][0].data).max() < 1e-2
    for j, a in enumerate(h.parameters()):
        a.data[...] = _rng(50 + j).standard_normal(a.shape).astype(np.float32)
    pivots_at = np.linspace(np.log10(lo), np.log10(hi), K)
    for lam in [1e-6, lo, 3e-4, 1e-2, 0.05, 1.0, hi, 100.0]:
        alphas = h(lam)
        # an independent reference: numpy's interp, element by element, in log10 lambda
        x = min(max(np.log10(lam), np.log10(lo)), np.log10(hi))
        for k in KINDS:
            stack = np.stack([a.data for a in h.A[k]]).astype(np.float64)
            expected = np.apply_along_axis(lambda c, x=x: np.interp(x, pivots_at, c), 0, stack)
            np.testing.assert_allclose(alphas[k].data, expected, rtol=1e-5, atol=1e-5)
    # at a pivot alpha is that pivot's matrix exactly
    for j, x in enumerate(pivots_at):
        np.testing.assert_allclose(h(10**x)["reduce"].data, h.A["reduce"][j].data, atol=1e-6)


def test_piecewise_hypernet_bad_pivots():
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="pivots must be an integer >= 2"):
            PiecewiseHypernet(2, N_OPS, _rng(), pivots=bad)
    with pytest.raises(ValueError, match="hypernet_pivots must be at least"):
        make_config(None, {"hypernet": "piecewise", "hypernet_pivots": 1})


@pytest.mark.parametrize("lam", [3e-3, 0.2])
def test_gradcheck_arch_loss_piecewise_hypernet(lam):
    """d/d(pivots) of L_val(w, alpha(lambda)) + lambda * complexity(alpha(lambda)) by
    central differences, every element of every pivot: the two around lambda get
    (1 - s) and s of the alpha gradient, the others exactly zero."""
    model, x, y = _float64_setup(seed=2)
    K = 3
    hyper = PiecewiseHypernet(
        2, len(SMALL_SPACE), _rng(), pivots=K, lambda_min=1e-4, lambda_max=1.0
    )
    architect = Architect(model, None, hypernet=hyper, complexity=Complexity(model))
    rng = np.random.default_rng(3)
    start = [Tensor(rng.standard_normal(a.shape)) for a in hyper.parameters()]

    # parameters() lists the normal pivots A0 .. A{K-1}, then the reduce ones
    def arch_loss(*pivots):
        for j in range(K):
            hyper._modules[f"A{j}"]._parameters.update(normal=pivots[j], reduce=pivots[K + j])
        return architect.loss(x, y, lam)[0]

    report = minidarts.gradcheck(arch_loss, *start)
    assert report.n_checks == sum(t.numel() for t in start)
    print(f"arch loss gradcheck, piecewise hypernet, lambda {lam}: {report}")
    j, s = hyper.segment(lam)
    assert 0 < s < 1
    for t in start:
        t.grad = None
    arch_loss(*start).backward()
    for idx, t in enumerate(start):
        if idx % K not in (j, j + 1):
            assert t.grad is None or not np.any(t.grad), f"pivot {idx % K} is not around lambda"


# --- the search with a hypernetwork ---------------------------------------------------

# A linear hypernet (eq. 5, input lambda) over lambda in [1e-3, 10] with a raised
# architecture learning rate: 8 steps are then enough to separate the architectures.
HYPER = dict(
    epochs=2,
    plots=False,
    hypernet="linear",
    alpha_lr=0.05,
    lambda_min=1e-3,
    lambda_max=10.0,
    eval_lambdas=[1e-3, 0.1, 10.0],
    eval_batches=1,
)


@pytest.fixture(scope="module")
def hyper_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hyper") / "run"
    search = Search(make_config("tiny", HYPER), folder=str(folder), log=_quiet)
    search.run()
    return search, folder


def test_hypernet_search_records_each_lambda(hyper_run):
    search, folder = hyper_run
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert list(r["lambdas"]) == ["0.001", "0.1", "10"]
        for rec in r["lambdas"].values():
            assert 0 <= rec["val_acc"] <= 1 and np.isfinite(rec["val_loss"])
            assert 0 <= rec["complexity"] <= 1
            assert isinstance(rec["genotype_params"], int) and rec["genotype_params"] >= 0
            assert set(rec["genotype"]) == {"normal", "normal_concat", "reduce", "reduce_concat"}
            assert len(rec["genotype"]["reduce"]) == 4
    # the records are what the final hypernet gives at each lambda
    last = records[-1]["lambdas"]
    for lam in (1e-3, 0.1, 10.0):
        alphas = search.alphas(lam)
        rec = last[f"{lam:g}"]
        assert rec["complexity"] == pytest.approx(search.complexity(alphas).item(), rel=1e-6)
        # a complexity-controlled search derives by the expected-cost rule, DARTS's beside it
        assert rec["genotype_rule"] == "expected-cost"
        for key, rule in (("genotype", "expected-cost"), ("darts_genotype", "darts")):
            genotype = search.complexity.genotype_of(alphas, rule)
            assert rec[key]["reduce"] == [[op, i] for op, i in genotype.reduce]
            assert rec[f"{key}_params"] == search.complexity.genotype_params(genotype)
    # the main record is the architecture at lambda_min
    assert records[-1]["complexity"] == last["0.001"]["complexity"]


def test_hypernet_search_trains_the_hypernet_not_alpha(hyper_run):
    search, _ = hyper_run
    fresh = Network(C=4, layers=1, steps=2, multiplier=2, seed=0)
    initial = make_hypernet(search.cfg, fresh)
    for k in KINDS:  # the network's own alpha is not the architecture of this search
        np.testing.assert_array_equal(fresh.alphas[k].data, search.model.alphas[k].data)
    # reduce: the only cell of the tiny network, trained; normal: used by nothing, untouched
    now, before = search.hypernet.state_dict(), initial.state_dict()
    for name in ("b1.reduce", "b2.reduce"):
        assert np.abs(now[name] - before[name]).max() > 0.05, name
    for name in ("b1.normal", "b2.normal"):
        np.testing.assert_array_equal(now[name], before[name], err_msg=name)


def test_hypernet_lowers_complexity_as_lambda_grows(hyper_run):
    """Eq. 4-5 at work: after the search, a large lambda gives a lighter architecture than a
    small one, from the same hypernetwork, without further training. (Measured over seeds
    0-4: complexity 0.23-0.28 at lambda = 1e-3 and 0.03-0.11 at lambda = 10.)"""
    search, _ = hyper_run
    low = search.complexity(search.alphas(1e-3)).item()
    high = search.complexity(search.alphas(10.0)).item()
    assert high < low - 0.05, (low, high)


@pytest.mark.parametrize("kind", ["linear", "piecewise", "mlp"])
def test_hypernet_search_resumes_bitwise(kind, hyper_run, tmp_path):
    """Stopped after epoch 1 and resumed, the search ends with exactly the hypernetwork,
    alpha, weights, optimiser states and lambda generator of an uninterrupted run."""
    if kind == "linear":
        cfg = make_config("tiny", HYPER)
        reference, _ = hyper_run
    else:
        overrides = dict(epochs=2, plots=False, hypernet=kind, hypernet_input="log")
        cfg = make_config("tiny", {**overrides, "eval_batches": 1, "eval_lambdas": [0.01]})
        reference = Search(cfg, folder=str(tmp_path / "reference"), log=_quiet)
        reference.run()
    folder = tmp_path / "run"
    search = Search(cfg, folder=str(folder), log=_quiet)
    interrupt_after_epoch(search, 1)
    with pytest.raises(KeyboardInterrupt):
        search.run()
    assert load_checkpoint(folder / "checkpoint.npz")["epoch"] == 1
    resumed = Search.resume(str(folder), log=_quiet)
    assert resumed.epoch == 1 and resumed.history[0]["lambdas"]
    resumed.run()
    assert resumed.epoch == 2
    assert_same_state(reference.state_dict(), resumed.state_dict())
    # spelled out: hypernet parameters, alphas, weights, the lambda generator
    ref_h, res_h = reference.hypernet.state_dict(), resumed.hypernet.state_dict()
    assert set(ref_h) == set(res_h) and ref_h
    for name, value in ref_h.items():
        assert value.dtype == res_h[name].dtype and np.array_equal(value, res_h[name]), name
    for k in KINDS:
        assert np.array_equal(reference.alphas(0.1)[k].data, resumed.alphas(0.1)[k].data)
        assert np.array_equal(reference.model.alphas[k].data, resumed.model.alphas[k].data)
    for name, value in reference.model.state_dict().items():
        assert np.array_equal(value, resumed.model.state_dict()[name]), name
    assert reference.lambda_rng.bit_generator.state == resumed.lambda_rng.bit_generator.state
    assert len(reference.a_optimizer.state_dict()["state"]) > 0


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_gpu_hypernet_search_resumes_bitwise_and_agrees_with_the_cpu(kind, tmp_path):
    """On the GPU (CuPy): the hypernetwork lives on the GPU, an interrupted and resumed
    run equals an uninterrupted one bit for bit, and both follow the CPU run up to
    float32 rounding."""
    if not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    overrides = dict(epochs=2, plots=False, hypernet=kind, hypernet_input="log", eval_batches=1)
    cpu = Search(make_config("tiny", overrides), folder=str(tmp_path / "cpu"), log=_quiet)
    cpu.run()
    cfg = make_config("tiny", {**overrides, "device": "gpu"})
    reference = Search(cfg, folder=str(tmp_path / "ref"), log=_quiet)
    reference.run()
    assert all(backend.device_of(p.data) == "gpu" for p in reference.hypernet.parameters())
    folder = tmp_path / "run"
    search = Search(cfg, folder=str(folder), log=_quiet)
    interrupt_after_epoch(search, 1)
    with pytest.raises(KeyboardInterrupt):
        search.run()
    resumed = Search.resume(str(folder), log=_quiet)
    resumed.run()
    assert_same_state(reference.state_dict(), resumed.state_dict())
    for gpu, host in zip(reference.history, cpu.history):
        for key in ("train_loss", "arch_loss", "val_loss"):
            assert gpu[key] == pytest.approx(host[key], rel=1e-3), key
    for lam in (1e-4, 1e-2):
        for k in KINDS:
            np.testing.assert_allclose(
                backend.to_numpy(reference.alphas(lam)[k].data),
                cpu.alphas(lam)[k].data,
                rtol=1e-3,
                atol=1e-5,
            )


def test_evaluation_at_a_lambda_recalibrates_batch_norm_and_restores_it(hyper_run):
    """A hypernet search evaluates alpha(lambda) with batch-norm statistics recomputed
    at it (search-train batches, file order) and leaves its own statistics as they
    were; the same evaluation by hand gives the same numbers."""
    search, _ = hyper_run
    norms = [m for m in search.model.modules() if getattr(m, "running_mean", None) is not None]
    assert norms
    before = [(m.running_mean.data.copy(), m.running_var.data.copy()) for m in norms]
    lam = 10.0
    loss, acc = search.evaluate(lam)
    for m, (mean, var) in zip(norms, before):
        np.testing.assert_array_equal(m.running_mean.data, mean)
        np.testing.assert_array_equal(m.running_var.data, var)
    assert search.evaluate(lam) == (loss, acc)  # deterministic: no random numbers drawn

    def evaluate_at(alphas):  # the validation split, the search's batch size and limit
        cfg = search.cfg
        return evaluate(
            search.model,
            search.val_batches.dataset,
            cfg.batch_size,
            "cpu",
            cfg.eval_batches,
            alphas=alphas,
        )

    # by hand: average the batch statistics of the first n train batches, then evaluate
    n = search.cfg.bn_recalibration_batches
    alphas = search.alphas(lam)
    saved = search.model.state_dict()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    search.model.train()
    loader = Batches(search.train_batches.dataset, search.cfg.batch_size, shuffle=False)
    with no_grad():
        for _, (x, _) in zip(range(n), loader):
            search.model(x, alphas)
    by_hand = evaluate_at(alphas)
    for m in norms:
        m.momentum = 0.1
    search.model.load_state_dict(saved)
    assert by_hand == pytest.approx((loss, acc), rel=1e-6)
    # and without recalibration the evaluation reads the running statistics
    search.cfg.bn_recalibration_batches = 0
    try:
        plain = search.evaluate(lam)
    finally:
        search.cfg.bn_recalibration_batches = n
    assert plain == evaluate_at(alphas)
