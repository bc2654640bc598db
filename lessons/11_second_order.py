"""Lesson 11: second-order DARTS: the virtual step, the finite-difference Hessian-vector
product, the authors' slip caught numerically, and what ReLU and max-pool kinks do to it.

Equation (3) asks for the architecture whose TRAINED weights do best on validation data:

    min_alpha  L_val(w*(alpha), alpha),     w*(alpha) = argmin_w L_train(w, alpha).

First-order DARTS (lesson 08) uses the current w for w*(alpha) and so ignores how the
weights would react to a change of alpha. Second-order DARTS models that reaction by ONE
virtual step of the weights' optimiser (plain SGD here, learning rate xi):

    w'(alpha) = w - xi * grad_w L_train(w, alpha)

and differentiates the whole unrolled objective f(alpha) = L_val(w'(alpha), alpha). The
chain rule, with v = grad_w' L_val(w', alpha) and the Jacobian dw'/dalpha =
-xi * grad^2_{w,alpha} L_train(w, alpha):

    df/dalpha = grad_alpha L_val(w', alpha)  -  xi * grad^2_{alpha,w} L_train(w, alpha) v.
                 (direct term)                    (the second-order correction)

The matrix grad^2_{alpha,w} L_train has (number of alphas) x (number of weights) entries,
never formed: only its product with the vector v is needed, and DARTS takes it by a
central difference of two alpha-gradients, one at each side of w along v:

    grad^2_{alpha,w} L_train v
        ~  (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),
    w+- = w +- eps v,      eps = 0.01 / ||v||   (the weights move by 0.01 in norm).

Cost: four forward-backward passes per architecture step instead of one. Accuracy: the
Taylor series of lesson 01, in the direction v, gives a truncation error of order eps^2,
where the loss is smooth. Two things this lesson measures:

1. The authors' code wrote the quotient as `(p - n) / 2. * eps`. Python reads that as
   ((p - n) / 2) * eps, which MULTIPLIES by eps/2 where it should divide by 2 eps: the
   product comes out eps^2 times too small and the correction all but vanishes. Two
   missing parentheses, and the code runs as happily as before; a gradient check of
   df/dalpha against central differences of f itself (float64, tiny problem) catches it.
2. ReLU and max pooling have kinks: where a ReLU input changes sign or a pooling window
   changes its winner, the alpha-gradient of L_train JUMPS. If w+ and w- lie on either side
   of a kink, the difference quotient picks up jump / (2 eps), which does not shrink with
   eps. So on a ReLU network the error does not fall like eps^2: it stays large until eps
   is so small that no kink lies between w- and w+. (The reference, a difference of the
   loss f itself, suffers far less: f is continuous, only its slope jumps at a kink.)

minidarts.darts.architect.Architect(order=2) implements all of this (with momentum and
weight decay in the virtual step too, which are left out here: xi, no momentum, no decay).
This lesson rebuilds each piece by hand, compares with `Architect.unrolled_gradient`, and
checks that gradient against a reference that knows nothing of Hessians.

Run from the repository root:  python lessons/11_second_order.py   (figures: lessons/figures/11)
"""

import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # import minidarts from the repository, installed or not

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw to files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import minidarts as md  # noqa: E402
import minidarts.nn.functional as F  # noqa: E402
from minidarts import nn, optim  # noqa: E402
from minidarts.darts import architect as architect_module  # noqa: E402
from minidarts.darts.architect import Architect  # noqa: E402
from minidarts.darts.network import Network  # noqa: E402
from minidarts.darts.operations import PRIMITIVES, Pool  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "11"
FAST = os.environ.get("MINIDARTS_FAST") == "1" or "--fast" in sys.argv
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU

XI = 0.025  # the virtual step's learning rate: DARTS's weight learning rate
DARTS_SCALE = architect_module.HVP_SCALE  # 0.01: eps = 0.01 / ||v||
SMOOTH_PRIMITIVES = tuple(p for p in PRIMITIVES if p != "max_pool_3x3")


def section(title):
    print(f"\n=== {title} ===")


@contextmanager
def patched(owner, name, value):
    """owner.name = value for the duration of a `with` block (the old one put back)."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def silu(self, x):
    """x * sigmoid(x): a smooth stand-in for ReLU, to be put in place of ReLU.forward."""
    return x * F.sigmoid(x)


def relative_error(g, ref):
    """max_i |g_i - ref_i| / max_i |ref_i|: one number per gradient."""
    return float(np.abs(g - ref).max() / np.abs(ref).max())


class Problem:
    """A tiny float64 search problem: a Network with one reduction cell of 2 nodes (5 edges),
    C = 2, alpha far from uniform, a training and a validation batch of 4 images 8x8, and
    an Architect of order 2 whose virtual step is SGD with learning rate xi."""

    def __init__(self, primitives=PRIMITIVES, seed=0):
        # fast=False: the readable Cell.forward, one edge after another, so that section 5
        # sees the ReLUs and pools in the same order in both of its passes (the fast path
        # runs edges on several threads, in whatever order they finish)
        self.model = Network(
            C=2, layers=1, steps=2, multiplier=2, primitives=primitives, seed=seed, fast=False
        )
        for t in list(self.model.parameters()) + list(self.model.buffers()):
            if np.issubdtype(t.data.dtype, np.floating):
                t.data = t.data.astype(np.float64)
        rng = np.random.default_rng(seed)
        for a in self.model.arch_parameters():
            a.data = rng.standard_normal(a.shape)
        self.model.train()
        self.params = list(self.model.parameters())
        self.x, self.x_val = (md.tensor(rng.standard_normal((4, 1, 8, 8))) for _ in "tv")
        self.y, self.y_val = rng.permutation(10)[:4], rng.permutation(10)[:4]

    def alphas(self, reduce=None):
        """The network's alpha as constants, the reduction cell's replaced by `reduce`."""
        values = {k: a.data for k, a in self.model.alphas.items()}
        if reduce is not None:
            values["reduce"] = reduce
        return {k: md.tensor(v) for k, v in values.items()}

    @contextmanager
    def weights(self, arrays):
        """The model holds `arrays` as its weights inside the block, w outside it."""
        saved = [p.data for p in self.params]
        for p, a in zip(self.params, arrays):
            p.data = a
        try:
            yield
        finally:
            for p, a in zip(self.params, saved):
                p.data = a

    def grad_w(self, x, y, alphas):
        """grad_w of the cross-entropy on (x, y) at the weights the model holds."""
        for p in self.params:
            p.grad = None
        F.cross_entropy(self.model(x, alphas), y).backward()
        grads = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        return grads

    def virtual_weights(self, reduce=None):
        """w' = w - xi * grad_w L_train(w, alpha)."""
        g = self.grad_w(self.x, self.y, self.alphas(reduce))
        return [p.data - XI * gi for p, gi in zip(self.params, g)]

    def objective(self, reduce):
        """f(alpha) = L_val(w'(alpha), alpha), alpha_reduce = `reduce`: the unrolled loss."""
        with self.weights(self.virtual_weights(reduce)), md.no_grad():
            return F.cross_entropy(self.model(self.x_val, self.alphas(reduce)), self.y_val).item()

    def architect(self, xi=XI):
        sgd = optim.SGD(self.model.parameters(), lr=xi)  # no momentum, no weight decay
        return Architect(
            self.model, optim.Adam(self.model.arch_parameters()), order=2, w_optimizer=sgd
        )

    def second_order(self, scale=DARTS_SCALE, xi=XI):
        """The package's second-order gradient of the reduction cell's alpha at
        eps = scale / ||v|| (xi = 0: no virtual step, the first-order gradient)."""
        with patched(architect_module, "HVP_SCALE", scale):
            grads, _, _ = self.architect(xi).unrolled_gradient(
                self.x, self.y, self.x_val, self.y_val
            )
        return grads["reduce"]

    def reference(self):
        """df/dalpha_reduce by central differences of f itself (md.numerical_grad, float64)."""
        return md.numerical_grad(self.objective, self.model.alphas["reduce"].data.copy())


# %% 1. A tiny search problem in float64
section("1. A tiny search problem in float64")
problem = Problem()
model = problem.model
n_weights = sum(p.numel() for p in problem.params)
alpha = model.alphas["reduce"]
print(f"Network(C=2, one reduction cell, 2 nodes): {n_weights} weights, alpha_reduce {alpha.shape}")
print(f"({alpha.shape[0]} edges x {alpha.shape[1]} operations; the normal alpha is unused)")
print(f"train batch {problem.x.shape}, validation batch {problem.x_val.shape}, xi = {XI}")
assert problem.x.dtype == np.float64 and all(p.dtype == np.float64 for p in problem.params)

# %% 2. The virtual step
section("2. The virtual step w' = w - xi * grad_w L_train(w, alpha)")
w = [p.data.copy() for p in problem.params]
w_virtual = problem.virtual_weights()
moved = math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(w_virtual, w)))
with problem.weights(w_virtual), md.no_grad():
    loss_virtual = F.cross_entropy(model(problem.x_val, problem.alphas()), problem.y_val).item()
with md.no_grad():
    loss_here = F.cross_entropy(model(problem.x_val, problem.alphas()), problem.y_val).item()
print(f"||w' - w|| = {moved:.4f}; L_val(w) = {loss_here:.6f}, L_val(w') = {loss_virtual:.6f}")
buffers = [b.data.copy() for b in model.buffers()]  # (the forward passes above moved them)
architect = problem.architect()
grads, arch_loss, _ = architect.unrolled_gradient(
    problem.x, problem.y, problem.x_val, problem.y_val
)
print(f"Architect.unrolled_gradient reports L_val at its virtual weights: {arch_loss:.6f}")
np.testing.assert_allclose(arch_loss, loss_virtual, rtol=1e-12)
assert all(np.array_equal(p.data, a) for p, a in zip(problem.params, w))
assert all(np.array_equal(b.data, s) for b, s in zip(model.buffers(), buffers))
print("the same number; and afterwards the model holds w again, bit for bit (weights and")
print("BatchNorm statistics): the virtual step is virtual")

# %% 3. The chain rule, and the Hessian-vector product by central differences
section("3. df/dalpha = grad_alpha L_val(w') - xi * H v, the product by central differences")


def alpha_gradient(x, y):
    """grad_alpha_reduce of the cross-entropy on (x, y) at the weights the model holds."""
    alphas = problem.alphas()
    alphas["reduce"].requires_grad = True
    with architect_module.frozen(problem.params):
        F.cross_entropy(model(x, alphas), y).backward()
    return alphas["reduce"].grad


with problem.weights(w_virtual):
    direct = alpha_gradient(problem.x_val, problem.y_val)  # grad_alpha L_val(w', alpha)
    v = problem.grad_w(problem.x_val, problem.y_val, problem.alphas())  # grad_w' L_val(w')
norm_v = math.sqrt(sum(float((g * g).sum()) for g in v))
eps = DARTS_SCALE / norm_v
with problem.weights([wi + eps * g for wi, g in zip(w, v)]):
    g_plus = alpha_gradient(problem.x, problem.y)  # grad_alpha L_train(w+, alpha)
with problem.weights([wi - eps * g for wi, g in zip(w, v)]):
    g_minus = alpha_gradient(problem.x, problem.y)  # grad_alpha L_train(w-, alpha)
hvp = (g_plus - g_minus) / (2 * eps)
by_hand = direct - XI * hvp
print(f"||v|| = {norm_v:.4f}, eps = 0.01 / ||v|| = {eps:.3e}")
print(
    f"||direct term|| = {np.linalg.norm(direct):.4f}, ||xi * H v|| = {np.linalg.norm(XI * hvp):.4f}"
)
np.testing.assert_allclose(grads["reduce"], by_hand, rtol=1e-10, atol=1e-14)
print("by hand = Architect.unrolled_gradient (to 1e-10)")

calls = []
original_forward = Network.forward


def counting_forward(self, *args, **kwargs):
    calls.append(1)
    return original_forward(self, *args, **kwargs)


with patched(Network, "forward", counting_forward):
    architect.unrolled_gradient(problem.x, problem.y, problem.x_val, problem.y_val)
print(f"cost: {len(calls)} forward(+backward) passes per architecture step (first order: 1)")
assert len(calls) == 4

# %% 4. A reference that knows no Hessian: central differences of f itself
section("4. A reference that knows no Hessian: central differences of f itself")
# On a smooth network (ReLU replaced by x * sigmoid(x), no max pooling) the finite
# difference in w has no kink to cross: what is left is its eps^2 truncation.


def authors_slip(g_plus, g_minus, eps):
    """The authors' line, `(p - n) / 2. * eps`: ((p - n) / 2) * eps."""
    return (g_plus - g_minus) / 2.0 * eps


def no_product(g_plus, g_minus, eps):
    """No Hessian-vector product at all: what is left is the direct term."""
    return 0.0 * g_plus


with patched(nn.ReLU, "forward", silu):
    smooth = Problem(SMOOTH_PRIMITIVES)
    reference = smooth.reference()
    second = smooth.second_order()
    second_2eps = smooth.second_order(2 * DARTS_SCALE)
    first = smooth.second_order(xi=0.0)  # w' = w: grad_alpha L_val(w, alpha)
    with patched(architect_module, "_central_difference", authors_slip):
        slipped = smooth.second_order()
    with patched(architect_module, "_central_difference", no_product):
        direct_only = smooth.second_order()
errors = {
    "second order, eps = 0.01/||v||": relative_error(second, reference),
    "second order, eps doubled": relative_error(second_2eps, reference),
    "first order (no virtual step)": relative_error(first, reference),
    "the authors' (p - n) / 2. * eps": relative_error(slipped, reference),
}
print(f"max |g - reference| / max |reference| over the {reference.size} entries of alpha_reduce:")
for name, err in errors.items():
    print(f"  {name:32s} {err:.2e}")
ratio = errors["second order, eps doubled"] / errors["second order, eps = 0.01/||v||"]
print(f"doubling eps multiplies the error by {ratio:.2f}: the eps^2 truncation, nothing else")
assert errors["second order, eps = 0.01/||v||"] < 1e-4
assert 3.0 < ratio < 5.0, ratio
assert errors["first order (no virtual step)"] > 100 * errors["second order, eps = 0.01/||v||"]
assert errors["the authors' (p - n) / 2. * eps"] > 100 * errors["second order, eps = 0.01/||v||"]

# Why the slip is so wrong: on the by-hand pieces of section 3, the slipped product is the
# right one times eps^2, so the correction it adds is negligible and what remains is the
# direct term grad_alpha L_val(w', alpha) alone.
slip_ratio = float(np.abs(authors_slip(g_plus, g_minus, eps)).max() / np.abs(hvp).max())
print(f"(p - n) / 2. * eps over (p - n) / (2 eps): {slip_ratio:.4e} = eps^2 = {eps**2:.4e}")
np.testing.assert_allclose(slip_ratio, eps**2, rtol=1e-9)
left = relative_error(slipped, direct_only)
print(f"the slipped gradient differs from the direct term alone by {left:.1e} (relative): the")
print("authors' second-order DARTS kept the virtual step and dropped its derivative")
assert left < 1e-2 * errors["the authors' (p - n) / 2. * eps"]


def check_like_gradcheck(name, g, ref, rtol=1e-6, atol=1e-8):
    """gradcheck's criterion, |g - ref| <= atol + rtol |ref| for every entry, against the
    reference above (md.numerical_grad of f at gradcheck's eps, 1e-6). md.gradcheck itself
    cannot take f: it evaluates its function under no_grad, and f needs a backward pass
    inside it (the virtual step's grad_w L_train)."""
    bad = np.abs(g - ref) > atol + rtol * np.abs(ref)
    if bad.any():
        i = tuple(int(j) for j in np.unravel_index(np.argmax(np.abs(g - ref) * bad), g.shape))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {g.size} entries off; alpha_reduce{i}: "
            f"analytic {g[i]:.8g}, numerical {ref[i]:.8g}"
        )
    return float((np.abs(g - ref) / np.maximum(np.abs(ref), atol / rtol)).max())


# gradcheck's tolerance is for exact backward passes; DARTS's eps leaves an eps^2
# truncation of about 1e-6, so the check runs at eps = 1e-4 / ||v||.
with patched(nn.ReLU, "forward", silu):
    worst = check_like_gradcheck("second order", smooth.second_order(1e-4), reference)
    print(f"second order at eps = 1e-4/||v||: passes gradcheck's test, worst relative {worst:.1e}")
    with patched(architect_module, "_central_difference", authors_slip):
        slipped_small = smooth.second_order(1e-4)
try:
    check_like_gradcheck("the authors' slip", slipped_small, reference)
except AssertionError as err:
    print(f"the authors' slip at the same eps: caught\n  {err}")
else:
    raise AssertionError("the check accepted the authors' slip")

# %% 5. The finite-difference error against eps: smooth, ReLU, ReLU + max pooling
section("5. The finite-difference error against eps: smooth, ReLU, ReLU + max pooling")


def direction(problem):
    """v = grad_w' L_val(w', alpha) and the weights w of `problem`."""
    with problem.weights(problem.virtual_weights()):
        v = problem.grad_w(problem.x_val, problem.y_val, problem.alphas())
    return v, [p.data for p in problem.params]


pool_forward = Pool.forward


def kinks_crossed(problem, scale):
    """(ReLU inputs that change sign, max-pool windows that change their winner) between
    the training batch's forward passes at w - eps v and at w + eps v."""
    v, w = direction(problem)
    eps = scale / math.sqrt(sum(float((g * g).sum()) for g in v))
    seen = []
    for sign in (1.0, -1.0):
        record = []

        def relu(self, x, record=record):
            record.append(x.data > 0)
            return F.relu(x)

        def pool(self, x, record=record):
            if self.kind == "max":  # each window's winner, as max_pool2d pads: with -inf
                padded = np.pad(x.data, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
                win = sliding_window_view(padded, (3, 3), axis=(2, 3))[
                    :, :, :: self.stride, :: self.stride
                ]
                record.append(win.reshape(*win.shape[:4], 9).argmax(axis=-1))
            return pool_forward(self, x)

        with problem.weights([wi + sign * eps * g for wi, g in zip(w, v)]), md.no_grad():
            with patched(nn.ReLU, "forward", relu), patched(Pool, "forward", pool):
                problem.model(problem.x, problem.alphas())
        seen.append(record)
    relu_flips = sum(int((a != b).sum()) for a, b in zip(*seen) if a.dtype == bool)
    pool_flips = sum(int((a != b).sum()) for a, b in zip(*seen) if a.dtype != bool)
    return relu_flips, pool_flips


if FAST:
    scales = np.array([1e-1, 1e-2, 1e-3, 1e-6])
else:
    scales = np.array([3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-7])
assert DARTS_SCALE in scales and 1e-6 in scales
curves, crossed = {}, {}
with patched(nn.ReLU, "forward", silu):
    curves["smooth"] = [relative_error(smooth.second_order(s), reference) for s in scales]
for name, primitives in [("ReLU", SMOOTH_PRIMITIVES), ("ReLU + max pool", PRIMITIVES)]:
    net = Problem(primitives)
    ref = net.reference()
    curves[name] = [relative_error(net.second_order(s), ref) for s in scales]
    crossed[name] = [kinks_crossed(net, s) for s in scales]
    if name == "ReLU + max pool":
        real, real_reference = net, ref
print(f"{'eps * ||v||':>11} | {'smooth':>8} | {'ReLU':>8} (kinks) |", end=" ")
print(f"{'ReLU + max pool':>15} (kinks: ReLU, pool)")
for k, s in enumerate(scales):
    (r1, _), (r2, p2) = crossed["ReLU"][k], crossed["ReLU + max pool"][k]
    print(
        f"{s:11.1e} | {curves['smooth'][k]:8.1e} | {curves['ReLU'][k]:8.1e} ({r1:5d}) | "
        f"{curves['ReLU + max pool'][k]:15.1e} ({r2:5d}, {p2:4d})"
    )
at = {s: k for k, s in enumerate(scales)}
at_darts, tiny = at[DARTS_SCALE], at[1e-6]
smooth_drop = curves["smooth"][at[1e-1]] / curves["smooth"][at_darts]
kinked_drop = curves["ReLU + max pool"][at[1e-1]] / curves["ReLU + max pool"][at_darts]
n_kinks = sum(crossed["ReLU + max pool"][at_darts])
print("eps ten times smaller (0.1 -> 0.01): the smooth network's error is multiplied by")
print(
    f"{1 / smooth_drop:.4f} (eps^2: 0.01), the ReLU + max pool network's by {1 / kinked_drop:.2f}:"
)
print(f"at eps = 0.01/||v|| {n_kinks} kinks lie between w- and w+, each adding jump / (2 eps)")
assert 50 < smooth_drop < 200, smooth_drop
assert kinked_drop < 10, kinked_drop
assert sum(crossed["ReLU + max pool"][at_darts]) > 0
assert curves["ReLU + max pool"][at_darts] > 100 * curves["smooth"][at_darts]
assert crossed["ReLU"][tiny] == (0, 0) and crossed["ReLU + max pool"][tiny] == (0, 0)
assert max(c[tiny] for c in curves.values()) < 1e-6
worst = check_like_gradcheck("ReLU + max pool", real.second_order(1e-6), real_reference)
agree = max(c[tiny] for c in curves.values())
print("with no kink in between (eps = 1e-6/||v||) all three agree with their references to")
print(f"{agree:.0e}, and the real network's gradient passes gradcheck's test (worst relative")
print(f"{worst:.1e})")
first_real = relative_error(real.second_order(xi=0.0), real_reference)
kinked = curves["ReLU + max pool"][at_darts]
print(f"on the real network at DARTS's eps the second-order gradient misses by {kinked:.1e}, the")
print(f"first-order one (no virtual step at all) by {first_real:.1e}: on this tiny network the")
print(f"finite difference's error at the kinks is {kinked / first_real:.2f} times first order's")

# %% 6. Figures
section("6. Figures")
FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, style in [("smooth", "o-"), ("ReLU", "s-"), ("ReLU + max pool", "^-")]:
    ax1.loglog(scales, curves[name], style, label=name)
guide = curves["smooth"][at_darts] * (scales / DARTS_SCALE) ** 2
ax1.loglog(scales, guide, "k:", lw=0.8, label="eps^2")
ax1.axvline(DARTS_SCALE, color="gray", ls="--", lw=0.8)
ax1.set(xlabel="eps * ||v||  (DARTS: 0.01, dashed)", ylabel="max |g - reference| / max |reference|")
ax1.set_ylim(1e-10, 10)
ax1.set_title("second-order gradient against central differences of f", fontsize=10)
ax1.legend(fontsize=8)
for name, style in [("ReLU", "s-"), ("ReLU + max pool", "^-")]:
    ax2.loglog(scales, [max(sum(c), 0.5) for c in crossed[name]], style, label=name)
ax2.axvline(DARTS_SCALE, color="gray", ls="--", lw=0.8)
ax2.set(xlabel="eps * ||v||", ylabel="kinks between w- and w+ (0 drawn at 0.5)")
ax2.set_title("ReLU sign changes + max-pool winner changes", fontsize=10)
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(FIG_DIR / "error_vs_eps.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'error_vs_eps.png').relative_to(ROOT)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. Give the SGD of Problem.architect weight_decay=3e-4. Expect section 2's check to fail: the
#    Architect's virtual step now also shrinks w by xi * wd * w, and virtual_weights must add
#    wd * p.data to the gradient to agree again.
#
# 2. Set XI = 0.1. Expect the first-order error of section 4 to grow about in proportion to xi
#    (the virtual step it ignores is four times longer), while second order stays at the small
#    eps^2 truncation.
#
# 3. In Problem, use batches of 8 images instead of 4. Expect more kinks between w- and w+ at the
#    larger eps (twice the ReLU inputs) and the same picture: the ReLU networks' errors do not
#    fall like eps^2 until no kink is left between w- and w+.

# %%
print("\nlesson 11: all checks passed")
