"""minidarts.nn.optim against the update rules written out with NumPy, the cosine
schedule against its formula, gradient clipping, and exact resume."""

import math

import numpy as np
import pytest

import minidarts as md
import minidarts.nn.functional as F
from minidarts import nn
from minidarts.nn import optim

STEPS = 6


def _params_and_grads(seed=0, dtype=np.float64):
    """Two parameters and, for each step, a fixed gradient for each."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (5,)]
    params = [nn.Parameter(md.tensor(rng.standard_normal(s), dtype=dtype)) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(STEPS)]
    return params, grads


def _run(opt, params, grads):
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()
        history.append([p.numpy().copy() for p in params])
    return history


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.9),
        dict(momentum=0.9, dampening=0.3),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.8, weight_decay=0.01),
        dict(weight_decay=0.1),
        dict(momentum=0.9, nesterov=True, weight_decay=3e-4),
    ],
)
def test_sgd_matches_the_update_rule(kw):
    params, grads = _params_and_grads()
    lr = 0.05
    history = _run(optim.SGD(params, lr=lr, **kw), params, grads)

    momentum, dampening = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
    wd, nesterov = kw.get("weight_decay", 0.0), kw.get("nesterov", False)
    p = [q.numpy() for q in _params_and_grads()[0]]  # the same starting values
    buf = [None, None]
    for t in range(STEPS):
        for i in range(2):
            d = grads[t][i] + wd * p[i]
            if momentum:
                buf[i] = d.copy() if t == 0 else momentum * buf[i] + (1 - dampening) * d
                d = d + momentum * buf[i] if nesterov else buf[i]
            p[i] = p[i] - lr * d
            np.testing.assert_allclose(history[t][i], p[i], rtol=1e-13, atol=1e-15)


def test_adam_matches_the_update_rule():
    params, grads = _params_and_grads(seed=1)
    lr, (b1, b2), eps, wd = 0.01, (0.8, 0.99), 1e-8, 0.05
    history = _run(
        optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), params, grads
    )

    p = [q.numpy() for q in _params_and_grads(seed=1)[0]]
    m = [np.zeros_like(q) for q in p]
    v = [np.zeros_like(q) for q in p]
    for t in range(1, STEPS + 1):
        for i in range(2):
            g = grads[t - 1][i] + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(history[t - 1][i], p[i], rtol=1e-12, atol=1e-15)


def test_adamw_matches_pytorchs_decoupled_rule():
    """torch.optim.AdamW: p <- p (1 - lr wd) first, then the Adam step on the raw gradient."""
    params, grads = _params_and_grads(seed=2)
    lr, (b1, b2), eps, wd = 0.01, (0.8, 0.99), 1e-8, 0.3
    opt = optim.AdamW(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    history = _run(opt, params, grads)

    p = [q.numpy() for q in _params_and_grads(seed=2)[0]]
    m = [np.zeros_like(q) for q in p]
    v = [np.zeros_like(q) for q in p]
    for t in range(1, STEPS + 1):
        for i in range(2):
            g = grads[t - 1][i]
            p[i] = p[i] * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(history[t - 1][i], p[i], rtol=1e-12, atol=1e-15)
    assert optim.AdamW(params).param_groups[0]["weight_decay"] == 1e-2  # PyTorch's default


def test_adamw_is_adam_without_decay_and_differs_with_it():
    def final(make):
        params, grads = _params_and_grads(seed=3)
        return _run(make(params), params, grads)[-1]

    same = final(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.0))
    for a, b in zip(same, final(lambda ps: optim.Adam(ps, lr=0.01))):
        np.testing.assert_array_equal(a, b)
    decoupled = final(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.5))
    coupled = final(lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.5))
    assert not np.allclose(decoupled[0], coupled[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, 0.1, momentum=0.9, weight_decay=1e-3),
        optim.Adam,
        optim.AdamW,
    ],
)
def test_float32_stays_float32_and_updates_in_place(make):
    params, grads = _params_and_grads(dtype=np.float32)
    arrays = [p.data for p in params]
    opt = make(params)
    _run(opt, params, grads)
    assert all(p.dtype == np.float32 and p.data is a for p, a in zip(params, arrays))
    for st in opt.state.values():
        assert all(v.dtype == np.float32 for v in st.values() if hasattr(v, "dtype"))


def test_params_without_grad_are_skipped_and_zero_grad():
    params, _ = _params_and_grads()
    before = params[1].numpy().copy()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = np.ones(params[0].shape)
    opt.step()
    np.testing.assert_array_equal(params[1].numpy(), before)
    assert id(params[1]) not in opt.state
    opt.zero_grad()
    assert params[0].grad is None


def test_param_groups_and_lr_changes():
    params, grads = _params_and_grads()
    start = [p.numpy().copy() for p in params]
    opt = optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]]}], lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    for p, g in zip(params, grads[0]):
        p.grad = g
    opt.param_groups[1]["lr"] = 0.5  # what a scheduler does
    opt.step()
    np.testing.assert_allclose(params[0].numpy(), start[0] - 0.1 * grads[0][0], rtol=1e-14)
    np.testing.assert_allclose(params[1].numpy(), start[1] - 0.5 * grads[0][1], rtol=1e-14)


def test_cosine_schedule():
    params, _ = _params_and_grads()
    opt = optim.SGD(params, lr=0.025)
    sched = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    seen = [sched.get_last_lr()[0]]
    for _ in range(10):
        sched.step()
        seen.append(sched.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == seen[-1]
    expected = [0.001 + (0.025 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    np.testing.assert_allclose(seen, expected, rtol=1e-15)
    assert seen[0] == 0.025 and seen[-1] == pytest.approx(0.001)

    # Restoring the schedule mid-way continues it exactly (and sets the optimiser's lr).
    opt2 = optim.SGD(params, lr=0.025)
    sched2 = optim.CosineAnnealingLR(opt2, T_max=10, eta_min=0.001)
    partial = optim.CosineAnnealingLR(optim.SGD(params, lr=0.025), T_max=10, eta_min=0.001)
    for _ in range(4):
        partial.step()
    sched2.load_state_dict(partial.state_dict())
    assert opt2.param_groups[0]["lr"] == expected[4]
    sched2.step()
    assert sched2.get_last_lr() == [expected[5]]
    with pytest.raises(ValueError, match="unexpected keys"):
        sched2.load_state_dict({"bogus": 1})


def test_clip_grad_norm():
    params, grads = _params_and_grads(dtype=np.float32)
    for p, g in zip(params, grads[0]):
        p.grad = g.copy()
    total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads[0]))
    # Under the limit: returned, nothing changes.
    assert optim.clip_grad_norm_(params, max_norm=1e3) == pytest.approx(total, rel=1e-6)
    np.testing.assert_array_equal(params[0].grad, grads[0][0])
    # Over the limit: every gradient scaled by max_norm / (total + 1e-6).
    returned = optim.clip_grad_norm_(params, max_norm=0.5)
    assert returned == pytest.approx(total, rel=1e-6)
    for p, g in zip(params, grads[0]):
        np.testing.assert_allclose(p.grad, g * (0.5 / (total + 1e-6)), rtol=1e-5)
        assert p.grad.dtype == np.float32
    new_total = np.sqrt(sum((p.grad.astype(np.float64) ** 2).sum() for p in params))
    assert new_total == pytest.approx(0.5, rel=1e-5)
    # The infinity norm is the largest absolute entry.
    params[1].grad = None
    assert optim.clip_grad_norm_(params, 1e3, norm_type=float("inf")) == pytest.approx(
        np.abs(params[0].grad).max()
    )


def test_errors():
    params, _ = _params_and_grads()
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam(params, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD(params + params[:1], lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.zeros(3)], lr=0.1)
    for bad in (-1.0, float("nan"), np.float32(-2)):  # a negative bound would flip the signs
        with pytest.raises(ValueError, match="clip_grad_norm_: max_norm must be >= 0"):
            optim.clip_grad_norm_(params, bad)
    for bad in ("5", None, [1.0]):
        with pytest.raises(TypeError, match="clip_grad_norm_: max_norm must be a number"):
            optim.clip_grad_norm_(params, bad)
    optim.clip_grad_norm_(params, np.array(5.0))  # a 0-d array is a number
    state = optim.SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="group 0 has 2 parameters"):
        optim.SGD(params[:1], lr=0.1).load_state_dict(state)


# --- exact resume --------------------------------------------------------------------------


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)
        self.alpha = md.tensor(np.zeros(4, np.float32), requires_grad=True)  # not a Parameter

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x))) * F.softmax(self.alpha, 0).reshape(1, 4, 1, 1)
        return self.fc(F.max_pool2d(h, 2).mean(dim=(2, 3)))


def _batch(step):
    rng = np.random.default_rng(100 + step)
    x = md.tensor(rng.standard_normal((6, 1, 6, 6)), dtype=np.float32)
    return x, md.tensor(rng.integers(0, 3, 6))


def _setup(seed):
    md.manual_seed(seed)
    model = Small()
    w_opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4, nesterov=True)
    sched = optim.CosineAnnealingLR(w_opt, T_max=8, eta_min=0.001)
    a_opt = optim.Adam([model.alpha], lr=0.03, betas=(0.5, 0.999), weight_decay=1e-3)
    return model, w_opt, sched, a_opt


def _train(model, w_opt, sched, a_opt, steps):
    for step in steps:
        x, y = _batch(step)
        w_opt.zero_grad(), a_opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optim.clip_grad_norm_(model.parameters(), 0.5)
        w_opt.step()
        a_opt.step()
        sched.step()


def _save(model, w_opt, sched, a_opt, path):
    """Everything as plain arrays and numbers, through np.savez (no pickle) for the
    model; the optimiser states are nested dicts of arrays and numbers."""
    np.savez(path, **model.state_dict())
    return dict(
        w=w_opt.state_dict(),
        a=a_opt.state_dict(),
        sched=sched.state_dict(),
        alpha=model.alpha.numpy().copy(),
    )


def test_save_restore_mid_training_is_bit_identical(tmp_path):
    # Run A never stops (saving reads but never changes the run).
    run_a = _setup(seed=0)
    _train(*run_a, steps=range(4))
    saved = _save(*run_a, tmp_path / "model.npz")
    _train(*run_a, steps=range(4, 8))

    # Run B starts from other weights, loads the checkpoint, does the remaining steps.
    model, w_opt, sched, a_opt = _setup(seed=123)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        model.load_state_dict({k: npz[k] for k in npz.files})
    model.alpha.data[...] = saved["alpha"]
    w_opt.load_state_dict(saved["w"])
    a_opt.load_state_dict(saved["a"])
    sched.load_state_dict(saved["sched"])
    _train(model, w_opt, sched, a_opt, steps=range(4, 8))

    sd_a, sd_b = run_a[0].state_dict(), model.state_dict()
    assert list(sd_a) == list(sd_b)
    for k in sd_a:
        np.testing.assert_array_equal(sd_a[k], sd_b[k], err_msg=k)
    np.testing.assert_array_equal(run_a[0].alpha.numpy(), model.alpha.numpy())
    assert run_a[2].get_last_lr() == sched.get_last_lr()
    # The state really mattered: without the optimiser state the result differs.
    model_c, w_c, sched_c, a_c = _setup(seed=123)
    model_c.load_state_dict(dict(np.load(tmp_path / "model.npz")))
    model_c.alpha.data[...] = saved["alpha"]
    sched_c.load_state_dict(saved["sched"])
    _train(model_c, w_c, sched_c, a_c, steps=range(4, 8))
    assert not np.array_equal(model_c.state_dict()["fc.weight"], sd_a["fc.weight"])
