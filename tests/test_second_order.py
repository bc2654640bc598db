"""Tests of second-order DARTS (architect.py): the unrolled architecture gradient
against an exact reference, its freedom from side effects, and `--order 2` end to end.

The exact reference differentiates the whole unrolled expression

    f(alpha) = L_val(w - xi * (m * b + grad_w L_train(w, alpha) + wd * w), alpha)
               (+ lambda * complexity(alpha) where there is a penalty)

by central differences (h = 1e-5, float64) with respect to every alpha entry, where
grad_w L_train is an ordinary backward pass. It is written here from scratch (weights
replaced, not updated in place) and shares no code with the Architect.

Tolerance. The Architect's Hessian-vector product is itself a central difference in
w, with a step of 0.01 in norm (eps = 0.01 / ||v||): its truncation error is of order
eps^2 ||v||^2 = 1e-4 relative to the scale of the third derivative, and is multiplied
by xi = 0.025 in the gradient. The reference's own error (h^2 truncation, rounding
over 2h in float64) is about 1e-10. So the comparison allows

    max_i |g_i - ref_i| <= TOL * max_i |ref_i|,   TOL = 1e-4

(measured: a few 1e-6), and checks that what remains is that truncation error and
not a bug: it shrinks by a factor of about 4 when eps is halved. The first-order
gradient and the authors' slip (HVP multiplied by eps instead of divided by 2 eps)
miss the reference by about 1e-2 and fail the same comparison.

Kinks. A step of 0.01 in weight space crosses the kinks of ReLU and max pooling in a
network this small (a few thousand activations, batch 4), where the alpha-gradient
jumps; there the finite difference is a secant, not the derivative at w (measured:
~3% off the exact unrolled gradient of the tiny ReLU network, ~1e-9 with eps 1e-5).
That is a property of DARTS's approximation, not of this code. So the tolerance test
runs on a smooth copy of the tiny network (ReLU replaced by x * sigmoid(x), no max
pooling) at DARTS's eps, and the real ReLU network is checked at eps 1e-5 with
gradcheck's default tolerances.
"""

import numpy as np
import pytest
from test_search import assert_same_state, interrupt_after_epoch

from minidarts import nn
from minidarts.__main__ import main
from minidarts.darts import architect as architect_module
from minidarts.darts.architect import Architect
from minidarts.darts.complexity import Complexity
from minidarts.darts.hypernet import LambdaInput, LinearHypernet
from minidarts.darts.network import Network
from minidarts.darts.operations import PRIMITIVES
from minidarts.engine.autograd import Tensor
from minidarts.engine.gradcheck import numerical_grad
from minidarts.jobs.config import make_config
from minidarts.nn import functional as F
from minidarts.nn import optim

TOL = 1e-4
KINDS = ("normal", "reduce")
SMOOTH_PRIMITIVES = tuple(p for p in PRIMITIVES if p != "max_pool_3x3")


@pytest.fixture
def smooth(monkeypatch):
    """ReLU replaced by the smooth x * sigmoid(x) in every module of the network."""
    monkeypatch.setattr(nn.ReLU, "forward", lambda self, x: x * F.sigmoid(x))


def authors_slip(g_plus, g_minus, eps):
    """The authors' `(p - n) / 2. * eps`: multiplied by eps, where 2 eps divides."""
    return (g_plus - g_minus) / 2.0 * eps


def float64_problem(primitives=PRIMITIVES, momentum_buffer=True, lr=0.025, seed=0):
    """A tiny float64 search problem: the network (C=2, one reduction cell, 2 nodes,
    alphas far from uniform), its SGD optimiser (momentum buffers set, or none as
    before the first step) and a train and a val batch of 4 images 8x8."""
    model = Network(C=2, layers=1, steps=2, multiplier=2, primitives=primitives, seed=seed)
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    rng = np.random.default_rng(seed)
    for a in model.arch_parameters():
        a.data = rng.standard_normal(a.shape)
    model.train()
    w_opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=3e-4)
    if momentum_buffer:
        for p in model.parameters():
            w_opt.state[id(p)] = {"momentum_buffer": 0.1 * rng.standard_normal(p.shape)}
    batches = [(Tensor(rng.standard_normal((4, 1, 8, 8))), rng.permutation(10)[:4]) for _ in "tv"]
    return model, w_opt, batches


def unrolled_objective(model, w_opt, values, batches, penalty=None):
    """f(alpha) above, at alpha = `values`; the model is left as it was."""
    (x, y), (x_val, y_val) = batches
    params = list(model.parameters())
    weights = [p.data for p in params]
    buffers = [b.data.copy() for b in model.buffers()]
    alphas = {k: Tensor(v) for k, v in values.items()}
    for p in params:
        p.grad = None
    F.cross_entropy(model(x, alphas), y).backward()
    group = w_opt.param_groups[0]
    xi, m, wd = group["lr"], group["momentum"], group["weight_decay"]
    for p, w in zip(params, weights):
        buf = w_opt.state.get(id(p), {}).get("momentum_buffer")
        p.data = w - xi * ((0.0 if buf is None else m * buf) + p.grad + wd * w)
        p.grad = None
    value = F.cross_entropy(model(x_val, alphas), y_val).item()
    if penalty is not None:
        value += penalty(alphas).item()
    for p, w in zip(params, weights):
        p.data = w
    for b, saved in zip(model.buffers(), buffers):
        b.data[...] = saved
    return value


def reference_gradient(model, values, objective, h=1e-5):
    """d objective / d alpha by central differences (minidarts's numerical_grad, itself
    tested against a wrong gradient), every entry of both cell types."""
    values = {k: v.copy() for k, v in values.items()}
    return {kind: numerical_grad(lambda _: objective(values), values[kind], h) for kind in KINDS}


def _flat(grads):
    return np.concatenate(
        [np.zeros(0) if grads.get(k) is None else np.ravel(grads[k]) for k in KINDS]
    )


def relative_error(grads, reference):
    """max_i |g_i - ref_i| / max_i |ref_i| over both cell types (None: zeros)."""
    ref = _flat(reference)
    got = _flat({k: np.zeros_like(reference[k]) if grads[k] is None else grads[k] for k in KINDS})
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def check(grads, reference, what):
    err = relative_error(grads, reference)
    assert err <= TOL, f"{what}: max relative error {err:.3g} > {TOL:g}"
    return err


def first_order_gradient(model, x_val, y_val):
    alphas = {k: Tensor(a.data.copy(), requires_grad=True) for k, a in model.alphas.items()}
    F.cross_entropy(model(x_val, alphas), y_val).backward()
    return {k: a.grad for k, a in alphas.items()}


@pytest.mark.parametrize("momentum_buffer", [False, True], ids=["first-step", "momentum"])
def test_unrolled_gradient_matches_the_exact_reference(smooth, monkeypatch, momentum_buffer):
    model, w_opt, batches = float64_problem(SMOOTH_PRIMITIVES, momentum_buffer)
    (x, y), (x_val, y_val) = batches
    architect = Architect(model, optim.Adam(model.arch_parameters()), order=2, w_optimizer=w_opt)
    values = {k: a.data for k, a in model.alphas.items()}
    reference = reference_gradient(
        model, values, lambda v: unrolled_objective(model, w_opt, v, batches)
    )
    grads, loss, _ = architect.unrolled_gradient(x, y, x_val, y_val)
    assert grads["normal"] is None  # the one cell is a reduction cell
    assert np.abs(reference["normal"]).max() == 0.0
    err = check(grads, reference, "second order")
    assert loss == pytest.approx(unrolled_objective(model, w_opt, values, batches), rel=1e-12)
    # what is left is the O(eps^2) truncation of the finite-difference HVP: twice the
    # step, four times the error (a wrong formula would not scale so)
    monkeypatch.setattr(architect_module, "HVP_SCALE", 0.02)
    err_2eps = relative_error(architect.unrolled_gradient(x, y, x_val, y_val)[0], reference)
    monkeypatch.setattr(architect_module, "HVP_SCALE", 0.01)
    assert 3 < err_2eps / err < 5, (err, err_2eps)
    # first order (DARTS's w' never moved: the pitfall of NNI's old trainer) fails the
    # same comparison, and so does the authors' slip
    first = first_order_gradient(model, x_val, y_val)
    with pytest.raises(AssertionError, match="first order"):
        check(first, reference, "first order")
    monkeypatch.setattr(architect_module, "_central_difference", authors_slip)
    wrong = architect.unrolled_gradient(x, y, x_val, y_val)[0]
    with pytest.raises(AssertionError, match="HVP"):
        check(wrong, reference, "HVP * eps")
    print(
        f"max relative error: second order {err:.2g} (eps doubled: {err_2eps:.2g}); "
        f"first order {relative_error(first, reference):.2g}; "
        f"HVP * eps {relative_error(wrong, reference):.2g}"
    )


def test_relu_network_matches_the_reference_when_eps_crosses_no_kink(monkeypatch):
    """The real network (ReLU, max pooling, all 8 operations): with eps = 1e-5 / ||v||
    the finite difference is the derivative, and the gradient agrees with the reference
    entry by entry to gradcheck's default tolerances (|d| <= 1e-8 + 1e-6 |ref|)."""
    model, w_opt, batches = float64_problem()
    (x, y), (x_val, y_val) = batches
    architect = Architect(model, optim.Adam(model.arch_parameters()), order=2, w_optimizer=w_opt)
    values = {k: a.data for k, a in model.alphas.items()}
    reference = reference_gradient(
        model, values, lambda v: unrolled_objective(model, w_opt, v, batches)
    )
    darts_eps = relative_error(architect.unrolled_gradient(x, y, x_val, y_val)[0], reference)
    monkeypatch.setattr(architect_module, "HVP_SCALE", 1e-5)
    grads = architect.unrolled_gradient(x, y, x_val, y_val)[0]
    np.testing.assert_allclose(grads["reduce"], reference["reduce"], rtol=1e-6, atol=1e-8)
    first = relative_error(first_order_gradient(model, x_val, y_val), reference)
    print(
        f"ReLU network: max relative error {relative_error(grads, reference):.2g} at eps "
        f"1e-5/||v||, {darts_eps:.2g} at DARTS's 0.01/||v|| (kinks); first order {first:.2g}"
    )


def test_hypernet_chain_and_penalty_match_the_reference(smooth):
    """Linear hypernet (log-lambda input, t ~ 0.74) with the complexity penalty, momentum
    buffers set: the alpha-gradient (penalty added directly) matches the reference of
    f + lambda * complexity, and reaches b1 as t * g and b2 as g."""
    model, w_opt, batches = float64_problem(SMOOTH_PRIMITIVES)
    (x, y), (x_val, y_val) = batches
    rng = np.random.default_rng(4)
    hyper = LinearHypernet(2, len(SMOOTH_PRIMITIVES), rng, LambdaInput("log", 1e-5, 1.0))
    for b in hyper.parameters():
        b.data = rng.standard_normal(b.shape)
    complexity = Complexity(model)
    lam = 0.05
    t = hyper.input(lam)
    architect = Architect(
        model,
        optim.Adam(hyper.parameters()),
        hypernet=hyper,
        complexity=complexity,
        order=2,
        w_optimizer=w_opt,
    )
    values = {k: hyper.b1[k].data * t + hyper.b2[k].data for k in KINDS}
    reference = reference_gradient(
        model,
        values,
        lambda v: unrolled_objective(model, w_opt, v, batches, lambda a: complexity(a) * lam),
    )
    grads = architect.unrolled_gradient(x, y, x_val, y_val, lam)[0]
    err = check(grads, reference, "hypernet, second order")
    architect.optimizer.zero_grad()
    architect.backward_into_architecture(grads, lam)
    # exact chain rule of alpha = t b1 + b2; the normal alpha is never used (no gradient)
    np.testing.assert_allclose(hyper.b1["reduce"].grad, t * grads["reduce"], rtol=1e-15)
    np.testing.assert_array_equal(hyper.b2["reduce"].grad, grads["reduce"])
    assert hyper.b1["normal"].grad is None and hyper.b2["normal"].grad is None
    print(f"hypernet + penalty: max relative error {err:.2g}")


def _state(model, w_opt):
    # weights and BN buffers, copies (alpha, also in state_dict, is checked on its own)
    arrays = {k: v for k, v in model.state_dict().items() if not k.startswith("alphas.")}
    arrays.update({f"grad.{i}": p.grad.copy() for i, p in enumerate(model.parameters())})
    for i, s in w_opt.state_dict()["state"].items():
        arrays[f"momentum.{i}"] = s["momentum_buffer"]
    return arrays


def test_second_order_has_no_side_effect_but_the_alpha_update():
    """Weights, BN running statistics (and the batch counter), the weights' .grad and the
    momentum buffers are bitwise unchanged by the second-order gradient and step; only
    alpha moves (and the step is not first order in disguise)."""
    model = Network(C=4, layers=1, steps=2, multiplier=2, seed=1)
    model.train()
    w_opt = optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    rng = np.random.default_rng(0)
    x, y = Tensor(rng.standard_normal((8, 1, 12, 12)).astype(np.float32)), np.arange(8)
    x_val = Tensor(rng.standard_normal((8, 1, 12, 12)).astype(np.float32))
    F.cross_entropy(model(x, None), y).backward()  # a real weight step: momentum buffers
    w_opt.step()
    for p in model.parameters():  # gradients left behind by someone else stay as they are
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    a_opt = optim.Adam(model.arch_parameters(), lr=1e-2)
    architect = Architect(model, a_opt, order=2, w_optimizer=w_opt)
    first = first_order_gradient(model, x_val, y)  # (its forward moves BN statistics)
    before = _state(model, w_opt)
    assert any(k.endswith("num_batches_tracked") for k in before)
    alphas_before = {k: a.data.copy() for k, a in model.alphas.items()}
    grads, _, _ = architect.unrolled_gradient(x, y, x_val, y)
    again, _, _ = architect.unrolled_gradient(x, y, x_val, y)
    np.testing.assert_array_equal(grads["reduce"], again["reduce"])
    after = _state(model, w_opt)
    assert set(before) == set(after)
    for k in before:
        assert before[k].dtype == after[k].dtype and np.array_equal(before[k], after[k]), k
    assert not np.allclose(grads["reduce"], first["reduce"], rtol=1e-3, atol=0)
    architect.step(x_val, y, 0.0, x, y)
    after_step = _state(model, w_opt)
    for k in before:
        assert np.array_equal(before[k], after_step[k]), k
    assert not np.array_equal(model.alphas["reduce"].data, alphas_before["reduce"])
    assert model.alphas["reduce"].grad is not None
    np.testing.assert_array_equal(model.alphas["reduce"].grad, grads["reduce"])
    assert model.alphas["normal"].grad is None  # unused: not even weight decay moves it
    np.testing.assert_array_equal(model.alphas["normal"].data, alphas_before["normal"])


def test_bad_second_order_settings_are_refused():
    model = Network(C=2, layers=1, steps=2, multiplier=2)
    a_opt = optim.Adam(model.arch_parameters())
    with pytest.raises(ValueError, match="order 2 needs w_optimizer"):
        Architect(model, a_opt, order=2)
    with pytest.raises(ValueError, match="order must be 1 or 2, got 3"):
        Architect(model, a_opt, order=3)
    nesterov = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov and dampening are not supported"):
        Architect(model, a_opt, order=2, w_optimizer=nesterov)
    two_rates = optim.SGD(
        [
            {"params": list(model.stem.parameters()), "lr": 0.1},
            {"params": list(model.cells.parameters()) + list(model.classifier.parameters())},
        ],
        lr=0.2,
    )
    architect = Architect(model, a_opt, order=2, w_optimizer=two_rates)
    x, y = Tensor(np.zeros((2, 1, 8, 8), np.float32)), np.array([0, 1])
    with pytest.raises(ValueError, match="one learning rate for all weights"):
        architect.unrolled_gradient(x, y, x, y)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="needs the training batch"):
        Architect(model, a_opt, order=2, w_optimizer=sgd).step(x, y)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        make_config("tiny", {"order": 0})


def _run(tmp_path, name, *flags):
    argv = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", name]
    assert main([*argv, *flags]) == 0
    from minidarts.jobs.checkpoint import load_checkpoint

    return load_checkpoint(tmp_path / name / "checkpoint.npz")


def test_cli_second_order_search_end_to_end(tmp_path, capsys):
    """`--order 2` through the command line, plain and with a hypernetwork: the runs
    finish, record order 2, and end with other alphas than the first-order run."""
    first = _run(tmp_path, "o1")
    second = _run(tmp_path, "o2", "--order", "2")
    hyper = _run(tmp_path, "o2h", "--order", "2", "--hypernet", "linear")
    capsys.readouterr()
    assert first["config"]["order"] == 1 and second["config"]["order"] == 2
    assert hyper["config"]["order"] == 2 and hyper["config"]["hypernet"] == "linear"
    for state in (second, hyper):
        assert state["epoch"] == 1
        assert all(np.isfinite(v) for v in state["history"][0].values() if isinstance(v, float))
    assert not np.array_equal(first["alphas"]["reduce"], second["alphas"]["reduce"])
    # the default per-epoch records besides lambda_min: none (the sweep walks the range)
    assert hyper["history"][0]["lambdas"] == {} and hyper["config"]["eval_lambdas"] == []


def test_second_order_search_resumes_bitwise(tmp_path):
    """Order 2 adds no state of its own: a run stopped after epoch 1 and resumed ends
    bit-identical to one that never stopped (weights, alpha, optimisers, batches)."""
    from minidarts.jobs.search import Search

    cfg = make_config("tiny", {"epochs": 2, "plots": False, "order": 2})
    full = Search(cfg, folder=str(tmp_path / "full"), log=lambda *_: None)
    full.run()
    stopped = Search(cfg, folder=str(tmp_path / "stopped"), log=lambda *_: None)
    interrupt_after_epoch(stopped, 1)
    with pytest.raises(KeyboardInterrupt):
        stopped.run()
    resumed = Search.resume(str(tmp_path / "stopped"), log=lambda *_: None)
    resumed.run()
    assert_same_state(full.state_dict(), resumed.state_dict())
