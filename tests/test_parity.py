"""PyTorch parity: each item a PyTorch user reaches for, against the semantics its
docstring states (PyTorch's documented formulas, written out here with NumPy; PyTorch
itself is never imported). The float64 gradient checks of the new differentiable ops
(the losses' reductions, dropout) are rows of the table in test_ops.py; the AdamW
update rule is in test_optim.py."""

import numpy as np
import pytest
import scipy.special

import minidarts as md
import minidarts.nn.functional as F
from minidarts import nn, optim
from minidarts.darts.network import Network
from minidarts.engine import random
from minidarts.engine.gradcheck import numerical_grad

# --- Tensor.size() and numel() ------------------------------------------------------------


def test_size_is_a_method_as_in_pytorch():
    x = md.tensor(np.zeros((2, 3, 4)))
    assert x.size() == (2, 3, 4) and isinstance(x.size(), tuple)
    assert x.size(1) == 3 and x.size(-1) == 4 and x.size(-3) == 2
    assert x.numel() == 24
    for bad in (3, -4, 1.0, True):
        with pytest.raises(IndexError, match="dim out of range"):
            x.size(bad)
    scalar = md.tensor(5.0)
    assert scalar.size() == () and scalar.numel() == 1
    with pytest.raises(IndexError):
        scalar.size(0)


# --- the losses ---------------------------------------------------------------------------

LOGITS = np.random.default_rng(0).standard_normal((5, 4))
TARGET = np.array([3, 0, 1, 3, 2])


def test_cross_entropy_reductions_follow_pytorchs_formula():
    per_sample = scipy.special.logsumexp(LOGITS, axis=1) - LOGITS[np.arange(5), TARGET]
    z = md.tensor(LOGITS)
    for reduction, expected in [
        ("mean", per_sample.mean()),
        ("sum", per_sample.sum()),
        ("none", per_sample),
    ]:
        got = F.cross_entropy(z, md.tensor(TARGET), reduction=reduction)
        assert got.shape == np.shape(expected)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
        module = nn.CrossEntropyLoss(reduction=reduction)
        np.testing.assert_allclose(module(z, TARGET).numpy(), expected, rtol=1e-12)
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(reduction='mean')"


def test_cross_entropy_none_backward_weights_each_sample():
    z = md.tensor(LOGITS, requires_grad=True)
    gy = np.arange(1.0, 6.0)  # a different weight on each sample's loss
    F.cross_entropy(z, TARGET, reduction="none").backward(gy)

    def weighted(logits):  # sum_n gy[n] * loss_n, by SciPy
        return -(gy * scipy.special.log_softmax(logits, axis=1)[np.arange(5), TARGET]).sum()

    expected = numerical_grad(weighted, LOGITS.astype(np.float64).copy())
    np.testing.assert_allclose(z.grad, expected, rtol=1e-7, atol=1e-9)


def test_nll_loss_picks_minus_the_target_entry():
    logp = scipy.special.log_softmax(LOGITS, axis=1)
    per_sample = -logp[np.arange(5), TARGET]
    for reduction, expected in [
        ("mean", per_sample.mean()),
        ("sum", per_sample.sum()),
        ("none", per_sample),
    ]:
        got = F.nll_loss(md.tensor(logp), TARGET, reduction=reduction)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
        got = nn.NLLLoss(reduction)(md.tensor(logp), TARGET)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # cross_entropy is nll_loss of log_softmax, as PyTorch defines it
    ce = F.cross_entropy(md.tensor(LOGITS), TARGET).item()
    assert ce == pytest.approx(F.nll_loss(F.log_softmax(md.tensor(LOGITS), 1), TARGET).item())


def test_mse_loss_and_its_gradient():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for reduction, expected in [
        ("mean", ((x - y) ** 2).mean()),
        ("sum", ((x - y) ** 2).sum()),
        ("none", (x - y) ** 2),
    ]:
        got = F.mse_loss(md.tensor(x), md.tensor(y), reduction=reduction)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(
            nn.MSELoss(reduction)(md.tensor(x), md.tensor(y)).numpy(), expected, rtol=1e-12
        )
    xt = md.tensor(x, requires_grad=True)
    F.mse_loss(xt, md.tensor(y)).backward()
    np.testing.assert_allclose(xt.grad, 2 * (x - y) / x.size, rtol=1e-12)
    with pytest.raises(ValueError, match=r"mse_loss: input \(3, 4\) and target \(4,\)"):
        F.mse_loss(md.tensor(x), md.tensor(y[0]))


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss, F.mse_loss])
def test_an_unknown_reduction_is_refused(fn):
    target = TARGET if fn is not F.mse_loss else md.tensor(LOGITS)
    with pytest.raises(ValueError, match="reduction must be one of mean, sum, none, got 'avg'"):
        fn(md.tensor(LOGITS), target, reduction="avg")
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be one of"):
        nn.CrossEntropyLoss(reduction="elementwise")


def test_nll_loss_checks_its_targets():
    with pytest.raises(ValueError, match=r"nll_loss: target values must be in \[0, 3\]"):
        F.nll_loss(md.tensor(LOGITS), np.array([0, 1, 2, 3, 4]))
    with pytest.raises(TypeError, match="nll_loss: target must hold integer class indices"):
        F.nll_loss(md.tensor(LOGITS), np.zeros(5))
    empty = md.tensor(np.zeros((0, 4), np.float32))
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(ValueError, match=r"cross_entropy: the batch is empty \(input of shape"):
            F.cross_entropy(empty, np.zeros(0, np.int64), reduction=reduction)


# --- dropout --------------------------------------------------------------------------------


def test_dropout_keeps_with_probability_one_minus_p_and_rescales():
    x = md.tensor(np.random.default_rng(2).uniform(1, 2, (200, 50)))
    p = 0.3
    y = F.dropout(x, p, rng=np.random.default_rng(5)).numpy()
    keep = np.random.default_rng(5).random(x.shape) < 1 - p  # the documented draw
    np.testing.assert_allclose(y, np.where(keep, x.numpy() / (1 - p), 0.0), rtol=1e-15)
    assert abs((y == 0).mean() - p) < 0.02  # 10,000 draws: about 0.005 of spread
    # the gradient is gy * keep / (1 - p)
    xg = md.tensor(x.numpy(), requires_grad=True)
    F.dropout(xg, p, rng=np.random.default_rng(5)).sum().backward()
    np.testing.assert_allclose(xg.grad, keep / (1 - p), rtol=1e-15)


def test_dropout_module_is_seeded_and_the_identity_in_eval_mode():
    x = md.tensor(np.ones((4, 6), np.float32))
    layer = nn.Dropout(0.5)
    md.manual_seed(3)
    first = layer(x).numpy()
    md.manual_seed(3)
    np.testing.assert_array_equal(layer(x).numpy(), first)  # same seed, same mask
    assert set(np.unique(first)) <= {0.0, 2.0} and first.dtype == np.float32
    assert layer.eval()(x) is x  # eval: the input itself, as PyTorch
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), np.zeros((4, 6)))
    own = nn.Dropout(0.5, rng=np.random.default_rng(9))
    state = random.get_state()
    own(x)
    assert random.get_state() == state  # its own generator: the global one untouched
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="p must be a probability"):
            nn.Dropout(bad)
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2)"


# --- requires_grad_ -----------------------------------------------------------------------


def test_module_requires_grad_freezes_and_unfreezes_every_parameter():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = md.tensor(np.random.default_rng(0).standard_normal((5, 3)))
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net[0].requires_grad_()  # only the first layer learns
    F.cross_entropy(net(x), TARGET % 2).backward()
    assert net[0].weight.grad is not None and net[0].bias.grad is not None
    assert net[2].weight.grad is None and net[2].bias.grad is None


def test_tensor_requires_grad_only_on_floating_leaves():
    x = md.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (x * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="only floating-point tensors"):
        md.tensor([1, 2]).requires_grad_()


# --- the PyTorch homes of clip_grad_norm_ and CosineAnnealingLR ---------------------------


def test_pytorch_homes_are_the_same_objects():
    from minidarts.nn.optim.lr_scheduler import CosineAnnealingLR

    assert nn.utils.clip_grad_norm_ is optim.clip_grad_norm_
    assert optim.lr_scheduler.CosineAnnealingLR is optim.CosineAnnealingLR is CosineAnnealingLR
    assert md.optim.lr_scheduler.LRScheduler is optim.LRScheduler


# --- state_dict: alpha included, short errors ------------------------------------------------


def _tiny(seed):
    return Network(C=2, layers=1, steps=2, multiplier=2, seed=seed)


def test_network_state_dict_holds_alpha_and_restores_it():
    a, b = _tiny(0), _tiny(1)
    state = a.state_dict()
    assert list(state)[-2:] == ["alphas.normal", "alphas.reduce"]
    assert not any(k.startswith("alphas") for k, _ in a.named_parameters())  # not a weight
    missing, unexpected = b.load_state_dict(state)
    assert missing == [] and unexpected == []
    for kind in ("normal", "reduce"):
        np.testing.assert_array_equal(b.alphas[kind].numpy(), a.alphas[kind].numpy())
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 1, 8, 8)), dtype=np.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_a_weights_only_state_keeps_alpha_and_a_half_alpha_is_refused():
    a, b = _tiny(0), _tiny(1)
    weights_only = {k: v for k, v in a.state_dict().items() if not k.startswith("alphas.")}
    before = b.alphas["reduce"].numpy().copy()
    b.load_state_dict(weights_only)
    np.testing.assert_array_equal(b.alphas["reduce"].numpy(), before)
    np.testing.assert_array_equal(b.stem[0].weight.numpy(), a.stem[0].weight.numpy())
    half = dict(a.state_dict())
    del half["alphas.normal"]
    with pytest.raises(ValueError, match="1 missing key: alphas.normal"):
        b.load_state_dict(half)


def test_a_strict_failure_names_a_few_keys_and_counts_the_rest():
    net = _tiny(0)
    other = nn.Sequential(nn.Linear(2, 3))
    with pytest.raises(ValueError) as err:
        net.load_state_dict(other.state_dict())
    msg = str(err.value)
    n_own = len(net.state_dict()) - 2  # a state without alpha: only the weights are missing
    first = list(net.state_dict())[:3]
    assert f"{n_own} missing keys: {', '.join(first)} and {n_own - 3} more" in msg
    assert "2 unexpected keys: 0.weight, 0.bias" in msg
    assert len(msg) < 400, msg
