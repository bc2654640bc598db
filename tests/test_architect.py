"""Tests of architect.py: one first-order architecture step of the bilevel problem (eq. 3).

The step must (1) compute grad_alpha L_val(w, alpha) on the validation batch, (2) take
exactly one Adam step on alpha with it, and (3) leave the weights w untouched, without
even computing their gradients (they are frozen during the step)."""

import numpy as np
import pytest

from minidarts.darts.architect import Architect, frozen
from minidarts.darts.complexity import Complexity
from minidarts.darts.hypernet import LinearHypernet
from minidarts.darts.network import Network
from minidarts.darts.operations import PRIMITIVES
from minidarts.engine.autograd import Tensor
from minidarts.nn import functional as F
from minidarts.nn import optim
from minidarts.nn.metrics import accuracy

TINY = dict(C=4, steps=2, multiplier=2, layers=1)


def _batch(seed, n=8, size=12):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((n, 1, size, size)).astype(np.float32))
    return x, rng.integers(0, 10, n)


def _setup(weight_decay=1e-3):
    model = Network(seed=3, **TINY)
    # larger alpha than DARTS's 1e-3 init, so the step's effect is well above rounding
    rng = np.random.default_rng(4)
    for a in model.arch_parameters():
        a.data[...] = rng.standard_normal(a.shape).astype(np.float32)
    opt = optim.Adam(
        model.arch_parameters(), lr=0.01, betas=(0.5, 0.999), weight_decay=weight_decay
    )
    return model, opt


@pytest.mark.bilevel_step
def test_step_is_one_adam_step_on_the_validation_gradient():
    model, opt = _setup()
    x, y = _batch(0)
    # the gradient the step should use, computed separately on a copy of the state
    state = {k: v.copy() for k, v in model.state_dict().items()}
    before = [a.data.copy() for a in model.arch_parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    # the one-cell network has no normal cell: its alpha gets no gradient (None)
    grads = [None if a.grad is None else a.grad.copy() for a in model.arch_parameters()]
    assert grads[1] is not None
    model.zero_grad()
    for a in model.arch_parameters():
        a.grad = None
    model.load_state_dict(state)  # undo the BN running-stat update of that forward

    val_loss, val_acc = Architect(model, opt).step(x, y)
    assert val_loss == pytest.approx(loss.item(), rel=1e-6)
    assert 0.0 <= val_acc <= 1.0
    lr, (beta1, beta2), eps, wd = 0.01, (0.5, 0.999), 1e-8, 1e-3
    for a, a0, g in zip(model.arch_parameters(), before, grads):
        if g is None:  # Adam skips a parameter without gradient, weight decay included
            assert np.array_equal(a.data, a0)
            continue
        g = g + wd * a0  # Adam's L2 weight decay enters the gradient
        m_hat = (1 - beta1) * g / (1 - beta1)  # first step: bias correction undoes (1 - beta)
        v_hat = (1 - beta2) * g * g / (1 - beta2)
        expected = a0 - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(a.data, expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(a.data, a0)


@pytest.mark.bilevel_step
def test_step_leaves_the_weights_alone_and_computes_no_weight_gradient():
    model, opt = _setup()
    weights = {name: p.data.copy() for name, p in model.named_parameters()}
    Architect(model, opt).step(*_batch(1))
    for name, p in model.named_parameters():
        assert np.array_equal(p.data, weights[name]), name
        assert p.grad is None, f"{name} got a gradient in the architecture step"
        assert p.requires_grad, f"{name} stayed frozen after the step"


@pytest.mark.bilevel_step
def test_step_lowers_the_validation_loss_on_its_batch():
    """A small step along -grad lowers the loss on the same batch (BN in eval mode so
    the comparison sees the same function)."""
    model, opt = _setup(weight_decay=0.0)
    for group in opt.param_groups:
        group["lr"] = 1e-3
    x, y = _batch(2)
    model.eval()
    before = F.cross_entropy(model(x), y).item()
    Architect(model, opt).step(x, y)
    after = F.cross_entropy(model(x), y).item()
    assert after < before


def test_frozen_restores_flags_even_on_error():
    t = [Tensor(np.ones(2, np.float32), requires_grad=True), Tensor(np.ones(2, np.float32))]
    with pytest.raises(RuntimeError), frozen(t):
        assert not t[0].requires_grad
        raise RuntimeError("boom")
    assert t[0].requires_grad and not t[1].requires_grad


def _hypernet_setup():
    """A network, a linear hypernetwork over its alphas (b1, b2 of order 1, so the
    softmax is far from uniform), Adam on (b1, b2) and an Architect with the penalty."""
    model = Network(seed=3, **TINY)
    hyper = LinearHypernet(TINY["steps"], len(PRIMITIVES), np.random.default_rng(5), scale=1.0)
    opt = optim.Adam(hyper.parameters(), lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)
    return model, hyper, opt, Architect(model, opt, hypernet=hyper, complexity=Complexity(model))


@pytest.mark.bilevel_step
def test_two_steps_at_two_lambdas_with_stale_gradients_hypernet_and_penalty():
    """Two steps in a row, at lambda 0.05 then 2, with gradients already in .grad before
    each (as the weight step of a search leaves them), through a hypernetwork and with
    the complexity penalty: each step equals the one written out here (clear the
    gradients, L_val + lambda * complexity at alpha(lambda) with the weights frozen,
    backward, one Adam step). A step that keeps old gradients, ignores lambda, the
    hypernetwork or the penalty, or lets the weights get gradients, fails here."""
    model, hyper, _, architect = _hypernet_setup()
    ref_model, ref_hyper, ref_opt, ref_architect = _hypernet_setup()
    weights = {name: p.data.copy() for name, p in model.named_parameters()}
    start = [p.data.copy() for p in hyper.parameters()]
    for lam, seed in ((0.05, 7), (2.0, 8)):
        x, y = _batch(seed)
        for p in [*hyper.parameters(), *ref_hyper.parameters()]:
            p.grad = np.full(p.shape, 0.5, dtype=p.data.dtype)  # stale
        loss, acc = architect.step(x, y, lam)

        ref_opt.zero_grad()
        with frozen(ref_model.parameters()):
            ref_loss, logits = ref_architect.loss(x, y, lam)
            ref_loss.backward()
        ref_opt.step()

        penalty = lam * ref_architect.complexity(ref_hyper(lam)).item()
        assert penalty > 1e-3  # the penalty is part of the loss the step returns
        assert loss == pytest.approx(ref_loss.item(), rel=1e-6)
        assert acc == pytest.approx(accuracy(logits, y))
        for p, q in zip(hyper.parameters(), ref_hyper.parameters()):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-7)
    # the one-cell network has only a reduction cell: b1 and b2 of 'reduce' moved, and
    # those of 'normal' (no gradient, stale ones cleared) did not
    for p, p0, kind in zip(hyper.parameters(), start, ("normal", "reduce") * 2):
        assert np.allclose(p.data, p0) == (kind == "normal"), kind
    for name, p in model.named_parameters():
        assert np.array_equal(p.data, weights[name]), name
        assert p.grad is None, f"{name} got a gradient in the architecture step"
