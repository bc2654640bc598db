"""Lesson 09: the hypernetwork alpha(lambda), eq. (4)-(5), and a bounded complexity penalty.

The paper's goal: one search that yields a whole family of architectures, from rich to
cheap, selected afterwards by a knob lambda with no further training. A hypernetwork G
maps lambda (and its own parameters u) to the architecture, eq. (4):

    G : Lambda x U -> A,      alpha = G(lambda; u),

and the paper's G is linear, eq. (5):

    alpha(lambda) = lambda * b1 + b2,        u = (b1, b2), each shaped like alpha.

The search then trains u on the validation loss plus lambda times the complexity, with a
fresh lambda drawn at every step (log10 lambda uniform in [-5, 0], as the authors did):

    min_u  E_lambda [ L_val(w, alpha(lambda)) + lambda * complexity(alpha(lambda)) ].

The complexity must be a function of the ARCHITECTURE and bounded. minidarts uses the
expected number of weights under the relaxed choice p_{e,o} = softmax(alpha_e)_o,
normalised by the richest architecture of the space (every edge its heaviest operation):

    complexity(alpha) = sum_e sum_o p_{e,o} cost_{e,o}  /  sum_e max_o cost_{e,o}   in [0, 1],

    d complexity / d alpha_{e,k} = p_{e,k} (cost_{e,k} - sum_o p_{e,o} cost_{e,o}) / norm:

an operation costlier than its edge's average loses weight, a cheaper one gains. The
authors' code instead multiplied each operation's cost by the RAW alpha. Raw alphas are
defined only up to a constant per edge (softmax(alpha + c) = softmax(alpha)), so that
penalty is not a property of the architecture at all, and gradient descent drives it to
minus infinity (their logged loss reached -5e5).

Run from the repository root:  python lessons/09_hypernetwork.py   (figures: lessons/figures/09)
"""

import sys
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # minidarts is not pip-installed: import it from the repo

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw to files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import minidarts as md  # noqa: E402
from minidarts import optim  # noqa: E402
from minidarts.darts.complexity import Complexity  # noqa: E402
from minidarts.darts.hypernet import LambdaInput, LinearHypernet, sample_lambda  # noqa: E402
from minidarts.darts.network import Network, relax  # noqa: E402
from minidarts.darts.operations import PRIMITIVES  # noqa: E402
from minidarts.jobs.plots import OP_COLORS  # noqa: E402
from minidarts.jobs.sweep import log_spaced, spearman  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "09"
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU
rng = np.random.default_rng(9)
N_OPS, STEPS = len(PRIMITIVES), 4
LAMBDA_MIN, LAMBDA_MAX = 1e-5, 1.0


def section(title):
    print(f"\n=== {title} ===")


def softmax_rows(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def f64(a, grad=True):
    return md.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad, dtype=np.float64)


# %% 1. The linear hypernetwork, eq. (5)
section("1. The linear hypernetwork, eq. (5): alpha(lambda) = lambda * b1 + b2")
hyper = LinearHypernet(STEPS, N_OPS, md.backend.default_rng(9))
b1, b2 = hyper.b1["reduce"].numpy(), hyper.b2["reduce"].numpy()
print(f"b1, b2 per cell type: {b1.shape} each, drawn as 1e-3 * randn (DARTS's alpha)")
for lam in (1e-4, 0.1, 1.0):
    alpha = hyper(lam)
    for kind in ("normal", "reduce"):
        by_hand = lam * hyper.b1[kind].numpy() + hyper.b2[kind].numpy()
        np.testing.assert_allclose(alpha[kind].numpy(), by_hand, rtol=1e-6, atol=1e-9)
    print(f"lambda = {lam:6g}: alpha = lambda * b1 + b2 (both cell types), checked")
log_input = LambdaInput("log", LAMBDA_MIN, LAMBDA_MAX)
ts = {lam: log_input(lam) for lam in (1e-5, 1e-3, 1.0)}
print(f"the 'log' input instead feeds t = (log10 lambda + 5) / 5: {ts}")
assert ts == {1e-5: 0.0, 1e-3: 0.4, 1.0: 1.0}

# The chain rule through eq. (5): dF/db1 = lambda * dF/dalpha, dF/db2 = dF/dalpha.
lam = 0.3
R = rng.standard_normal(b1.shape).astype(np.float32)  # F(alpha) = sum(R * alpha_reduce)
for p in hyper.parameters():
    p.grad = None
(hyper(lam)["reduce"] * md.tensor(R)).sum().backward()
np.testing.assert_allclose(hyper.b1["reduce"].grad, lam * R, rtol=1e-6)
np.testing.assert_allclose(hyper.b2["reduce"].grad, R, rtol=1e-6)
print(f"for F = sum(R * alpha(lambda)): dF/db1 = lambda R, dF/db2 = R (lambda = {lam})")
print("so with lambda itself as input, b1 learns only from the draws where lambda is large")

# %% 2. The complexity: expected weights under softmax(alpha), normalised
section("2. The complexity: expected weights under softmax(alpha), normalised")
net = Network(C=8, layers=1, steps=STEPS, multiplier=4)  # the paper's network
complexity = Complexity(net)
cost = np.array(complexity.cost_table["reduce"])  # (14, 8): weights of op o on edge e
print(f"the paper's network: one reduction cell, C = {net.cells[0].C}. cost (weights) per edge:")
print(f"{'':>13}  " + " ".join(f"{p[:8]:>8}" for p in PRIMITIVES))
for e, label in ((0, "input edge"), (4, "inner edge")):  # stride 2 and stride 1
    print(f"{label:>13}: " + " ".join(f"{int(c):8d}" for c in cost[e]))
norm = cost.max(axis=1).sum()
print(f"norm = sum over the 14 edges of the heaviest op = {norm:.0f} = {complexity.norm:.0f}")
assert norm == complexity.norm
assert (cost[:, 0] == 0).all() and cost[0, PRIMITIVES.index("skip_connect")] == 16 * 16

cases = {
    "alpha = 0 (uniform)": np.zeros((14, N_OPS)),
    "random, N(0, 1)": rng.standard_normal((14, N_OPS)),
    "+30 on sep_conv_5x5": 30.0 * np.eye(N_OPS)[[PRIMITIVES.index("sep_conv_5x5")] * 14],
    "+30 on none": 30.0 * np.eye(N_OPS)[[0] * 14],
    "random, N(0, 100^2)": 100 * rng.standard_normal((14, N_OPS)),
}
for name, a in cases.items():
    c = complexity({"reduce": md.tensor(a.astype(np.float32))}).item()
    by_hand = (softmax_rows(a) * cost).sum() / norm
    np.testing.assert_allclose(c, by_hand, rtol=1e-5)
    assert 0.0 <= c <= 1.0
    print(f"{name:>22}: complexity {c:.4f}  = {c * norm:8.1f} expected weights")
print("always in [0, 1]: 1 = every edge sep_conv_5x5, 0 = only free operations")

# %% 3. Its gradient: by hand, and gradcheck (alpha, and b1, b2 through eq. 5)
section("3. Its gradient: by hand, and gradcheck (alpha, and b1, b2 through eq. 5)")
a = rng.standard_normal((14, N_OPS))
alpha = md.tensor(a.astype(np.float32), requires_grad=True)
complexity({"reduce": alpha}).backward()
p = softmax_rows(a)
grad_hand = p * (cost - (p * cost).sum(axis=1, keepdims=True)) / norm
np.testing.assert_allclose(alpha.grad, grad_hand, rtol=1e-4, atol=1e-9)
print("d complexity / d alpha = p (cost - E_p[cost]) / norm, by hand = backward()")


def complexity_of_alpha(alpha_reduce):
    return complexity({"reduce": alpha_reduce})


report = md.gradcheck(complexity_of_alpha, f64(a))
print(f"gradcheck complexity(alpha_reduce): {report}")
assert report.n_checks == 14 * N_OPS

hyper64 = LinearHypernet(STEPS, N_OPS, md.backend.default_rng(90))


def penalty_through_hypernet(b1_reduce, b2_reduce):
    # b1 and b2 are Parameters in ParameterDicts (the hypernetwork is an nn.Module):
    # put gradcheck's float64 copies in their place
    hyper64.b1["reduce"], hyper64.b2["reduce"] = b1_reduce, b2_reduce
    return complexity({"reduce": hyper64(0.3)["reduce"]}) * 0.3


b1_start, b2_start = md.nn.Parameter(f64(rng.standard_normal(b1.shape))), md.nn.Parameter(f64(a))
report = md.gradcheck(penalty_through_hypernet, b1_start, b2_start)
print(f"gradcheck lambda * complexity(lambda * b1 + b2) w.r.t. b1, b2: {report}")

# %% 4. Why bounded: the authors' penalty sum(cost * raw alpha) against ours
section("4. Why bounded: the authors' penalty sum(cost * raw alpha) against ours")
v = cost / norm  # their per-operation cost (they used parameter norms; same idea)


def raw_penalty(a):
    return float((v * a).sum())


def ours(a):
    return complexity({"reduce": md.tensor(a.astype(np.float32))}).item()


for c in (0.0, -10.0, -1000.0):
    shifted = a + c  # the same architecture: softmax(a + c) = softmax(a) on every edge
    print(f"alpha + {c:7g}: raw penalty {raw_penalty(shifted):10.2f} | ours {ours(shifted):.4f}")
assert abs(ours(a - 1000.0) - ours(a)) < 1e-5
assert raw_penalty(a - 1000.0) < raw_penalty(a) - 100
print("one architecture, any raw penalty you like: it does not measure the architecture")

raw_alpha = md.tensor(a.copy(), requires_grad=True)
our_alpha = md.tensor(a.astype(np.float32), requires_grad=True)
sgd_raw, sgd_ours = optim.SGD([raw_alpha], lr=1000.0), optim.SGD([our_alpha], lr=1000.0)
trace = [(0, raw_penalty(a), ours(a))]
for step in range(1, 301):
    for opt, t, f in (
        (sgd_raw, raw_alpha, lambda x: (x * md.tensor(v)).sum()),
        (sgd_ours, our_alpha, complexity_of_alpha),
    ):
        opt.zero_grad()
        f(t).backward()
        opt.step()
    trace.append((step, raw_penalty(raw_alpha.numpy()), ours(our_alpha.numpy())))
print("gradient descent on each penalty alone (SGD, lr 1000, as if lambda were large):")
for step, r, o in (trace[k] for k in (0, 1, 10, 100, 300)):
    print(f"  step {step:3d}: raw penalty {r:12.1f} | ours {o:.5f}")
# still falling, by lr * |v|^2 per step, without end
np.testing.assert_allclose(trace[-1][1], raw_penalty(a) - 300 * 1000.0 * (v**2).sum(), rtol=1e-9)
assert 0.0 <= trace[-1][2] < trace[1][2]  # ours falls towards its floor 0 and stays >= 0
print("the raw one falls by the same amount every step, forever (its gradient v is")
print("constant); ours approaches 0, the cheapest architecture, and stops there")
print("(the |alpha| form, sum(v |alpha|), is bounded but is smallest at alpha = 0: the")
print(f" uniform mixture, complexity {ours(np.zeros((14, N_OPS))):.3f}, not the cheapest cell)")

# %% 5. One training, a family: b1, b2 on L + lambda * complexity, lambda log-uniform
section("5. One training, a family: b1, b2 on L + lambda * complexity, lambda log-uniform")
# A toy validation loss, linear in p: err[e, o] is the loss the network "would have" if
# edge e used operation o (made up, with the usual ordering: big convolutions best, then
# small ones, pools and skip far behind, none useless), plus edge-to-edge noise.
#     L(alpha) = (1 / 14) sum_e sum_o p_{e,o} err_{e,o}
# For each lambda the best cell is known exactly: edge e takes
#     argmin_o  err_{e,o} / 14 + lambda * cost_{e,o} / norm.
typical = np.array([1.0, 0.45, 0.45, 0.40, 0.15, 0.10, 0.22, 0.20])  # in PRIMITIVES order
err = typical + 0.02 * rng.standard_normal((14, N_OPS))
err_t = md.tensor(err.astype(np.float32))


def toy_loss(alpha_reduce):
    return (relax(alpha_reduce) * err_t).sum() * (1.0 / 14)


family = LinearHypernet(STEPS, N_OPS, md.backend.default_rng(9))
u = [family.b1["reduce"], family.b2["reduce"]]  # the paper's network has no normal cell
opt = optim.Adam(u, lr=0.05, betas=(0.5, 0.999))  # the search's betas for the architecture
lam_rng = md.backend.default_rng(99)
train_steps = 2000  # about a second: no shorter path needed
for _ in range(train_steps):
    lam = sample_lambda(lam_rng, LAMBDA_MIN, LAMBDA_MAX)  # log10 lambda ~ U(-5, 0)
    opt.zero_grad()
    alpha_r = family(lam)["reduce"]
    objective = toy_loss(alpha_r) + complexity({"reduce": alpha_r}) * lam
    objective.backward()
    opt.step()
print(f"{train_steps} Adam steps (lr 0.05), lambda drawn log-uniformly from [1e-5, 1]")

lams = log_spaced(LAMBDA_MIN, LAMBDA_MAX, 21)
rows = []
print(f"{'lambda':>8} | complexity | exact best | argmax = exact | ops chosen (argmax per edge)")
for lam in lams:
    alpha_r = family(lam)["reduce"]
    c = complexity({"reduce": alpha_r}).item()
    chosen = alpha_r.numpy().argmax(axis=1)
    best = (err / 14 + lam * cost / norm).argmin(axis=1)
    c_best = cost[np.arange(14), best].sum() / norm
    agree = float((chosen == best).mean())
    counts = np.bincount(chosen, minlength=N_OPS)
    rows.append((lam, c, c_best, agree, counts))
    ops = ", ".join(f"{counts[o]} {PRIMITIVES[o]}" for o in np.nonzero(counts)[0])
    print(f"{lam:8.1e} | {c:10.4f} | {c_best:10.4f} | {agree:14.2f} | {ops}")
comps = np.array([r[1] for r in rows])
print(f"Spearman(lambda, complexity) = {spearman(list(lams), list(comps)):.3f}")
corr = np.corrcoef(family.b1["reduce"].numpy().ravel(), cost.ravel())[0, 1]
print(f"correlation of the learned b1 with the cost table: {corr:+.2f} (negative: at larger")
print("lambda the costly operations are pushed down)")
assert comps[0] > 0.85 and comps[-1] < 0.7 * comps[0], comps
assert np.all(np.diff(comps) <= 1e-4), "complexity should not grow with lambda here"
small = [r[3] for r in rows if r[0] <= 1e-2]
assert min(small) >= 0.8, small  # the rich end: the optimum on all but 2 edges at most
assert corr < 0
first, last = rows[0][4], rows[-1][4]
mean_cost = [
    (counts * cost.mean(axis=0)).sum() / counts.sum() for counts in (first, last)
]  # per-op average over edges: free ops 0
assert mean_cost[1] < mean_cost[0]
peak = {lam: relax(family(lam)["reduce"]).numpy().max(axis=1).min() for lam in (0.1, 1.0)}
print("small lambda: the richest cell, the exact optimum on all but a couple of edges")
print("(alpha(lambda) ~ b2 there, one compromise for all the small lambdas); large lambda:")
print("cheaper operations win. Above lambda ~ 0.3 the exact optimum turns to free operations")
print("while the hypernetwork stays behind: softmax(alpha(lambda)) is already one-hot there")
print(f"(its smallest per-edge maximum is {peak[0.1]:.3f} at lambda 0.1, {peak[1.0]:.6f} at 1),")
print("so its gradient p (1 - p) has vanished, and the rare large draws of lambda teach b1")
print("little. With lambda itself as input (eq. 5) b1 matters only in the top decade of")
print("lambda; the library's hypernet_input='log' feeds log10(lambda) rescaled to [0, 1]")
assert peak[1.0] > 0.99

# %% 6. Figures
section("6. Figures")
FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogx(lams, comps, "o-", label="hypernet: complexity(alpha(lambda))")
ax1.semilogx(lams, [r[2] for r in rows], "s--", color="gray", label="exact optimum (argmin)")
ax1.set(xlabel="lambda", ylabel="complexity (expected weights / max)")
ax1.set_title("one training, every lambda", fontsize=10)
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
shares = np.array([r[4] for r in rows]) / 14
bottom = np.zeros(len(lams))
for o, name in enumerate(PRIMITIVES):
    if shares[:, o].any():
        ax2.fill_between(lams, bottom, bottom + shares[:, o], color=OP_COLORS[name], label=name)
        bottom += shares[:, o]
ax2.set_xscale("log")
ax2.set(xlabel="lambda", ylabel="share of the 14 edges", ylim=(0, 1))
ax2.set_title("operation chosen on each edge (argmax of alpha(lambda))", fontsize=10)
ax2.legend(fontsize=7, loc="lower left")
fig.tight_layout()
fig.savefig(FIG_DIR / "complexity_vs_lambda.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'complexity_vs_lambda.png').relative_to(ROOT)}")

fig, ax = plt.subplots(figsize=(6, 3.8))
steps = [t[0] for t in trace]
ax.plot(steps, [t[1] for t in trace], "-", color="#d62728", label="sum(cost * raw alpha)")
ax.set(xlabel="gradient step", ylabel="raw penalty")
ax2 = ax.twinx()
ax2.plot(steps, [t[2] for t in trace], "-", color="#1f77b4", label="complexity (ours)")
ax2.set_ylabel("complexity, in [0, 1]")
ax.set_title("descent on the penalty alone: unbounded vs bounded", fontsize=10)
fig.legend(loc="center right", fontsize=8, bbox_to_anchor=(0.85, 0.5))
fig.tight_layout()
fig.savefig(FIG_DIR / "penalties.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'penalties.png').relative_to(ROOT)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 2, add a case '+30 on skip_connect'. Expect 8 * 256 / norm: skip_connect is free
#    on the 6 inner edges and a FactorizedReduce with C^2 = 256 weights on the 8 edges that leave
#    the cell's inputs at stride 2.
#
# 2. In section 4, use lr 10 instead of 1000. Expect the raw penalty to fall by 10 |v|^2 per step
#    instead, still forever (its gradient is constant), and ours to move far less in the 300
#    steps.
#
# 3. In section 5, build the family with the log input: LinearHypernet(STEPS, N_OPS,
#    md.backend.default_rng(9), log_input). Expect the complexity to start falling decades
#    earlier (alpha is now linear in log10 lambda) but to stay richer at lambda = 1, so the
#    assert on comps[-1] fails.

# %%
print("\nlesson 09: all checks passed")
