"""Lesson 06: the 8 candidate operations of DARTS and the mixed operation, eq. (2).

An edge (i, j) of a DARTS cell carries one operation o^(i,j) chosen from a fixed set O
(minidarts.darts.operations.PRIMITIVES). Each maps C channels to C channels; at stride 2 (the
edges leaving the inputs of a reduction cell) it halves height and width.

    none          zeros: the edge is absent                                   0 weights
    max_pool_3x3  3x3 max, padding 1                                          0
    avg_pool_3x3  3x3 average, padding 1, padding not counted                 0
    skip_connect  identity; at stride 2 a FactorizedReduce (two 1x1 convs)    0 | C^2
    sep_conv_kxk  (ReLU - depthwise kxk - 1x1 - BN) twice                     2 (k^2 C + C^2)
    dil_conv_kxk  ReLU - depthwise kxk with dilation 2 - 1x1 - BN             k^2 C + C^2

(BN without learned scale and shift during the search; with them, +2C per BN.)

Searching means choosing one o per edge: a discrete choice, no gradient. DARTS relaxes it.
Every edge gets a vector alpha^(i,j) of |O| = 8 real numbers and computes ALL candidates,
mixed by the softmax of alpha, equation (2) of the paper:

    o_bar(x) = sum_o  w_o * o(x),       w_o = exp(alpha_o) / sum_o' exp(alpha_o').

Now the output is a smooth function of alpha. With the softmax Jacobian
dw_o / dalpha_k = w_o (delta_ok - w_k), a cotangent G = dL/do_bar gives

    dL/dalpha_k = sum_o <G, o(x)> w_o (delta_ok - w_k) = w_k <G, o_k(x) - o_bar(x)>:

alpha_k grows when operation k's output points where the loss wants to go, better than
the current mixture does. Even 'none', whose output is zero and which the library skips in
the sum, gets the gradient -w_none <G, o_bar>, through the normalisation.

Run from the repository root:  python lessons/06_candidate_operations.py
(figures: lessons/figures/06)
"""

import os
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
import minidarts.nn.functional as F  # noqa: E402
from minidarts import nn  # noqa: E402
from minidarts.darts.mixed_op import MixedOp  # noqa: E402
from minidarts.darts.operations import OPS, PRIMITIVES, op_param_count  # noqa: E402
from minidarts.jobs import data  # noqa: E402
from minidarts.jobs.plots import OP_COLORS  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "06"
FAST = os.environ.get("MINIDARTS_FAST") == "1" or "--fast" in sys.argv
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU
md.manual_seed(6)  # the operations' initial weights
rng = np.random.default_rng(6)


def section(title):
    print(f"\n=== {title} ===")


def to_float64(module):
    """Cast a module's weights and running statistics to float64, in place, for gradcheck
    (gradcheck casts its own inputs; the weights inside a module are ours to cast)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    return module


def distinct(*shape, spread=4.0):
    """float64 values all different, at least spread/n apart and never 0: a shuffled
    grid centred on 0. Keeps gradient checks off the kinks of ReLU (at 0) and of max
    pooling (where two values of a window tie)."""
    n = int(np.prod(shape))
    grid = (rng.permutation(n) + 0.5) / n - 0.5  # in (-0.5, 0.5), half a step off 0
    return md.tensor(spread * grid.reshape(shape), requires_grad=True, dtype=np.float64)


# %% 1. The 8 primitives: output shapes at stride 1 and 2, weights against the formula
section("1. The 8 primitives: output shapes at stride 1 and 2, weights against the formula")
C = 4
x = md.tensor(rng.standard_normal((2, C, 8, 8)).astype(np.float32))
x_odd = md.tensor(rng.standard_normal((2, C, 7, 7)).astype(np.float32))
print(f"input x {x.shape} (float32), and an odd-sized {x_odd.shape}")
print(f"{'operation':>13} | {'stride 1':>13} | {'stride 2':>13} | {'7x7, stride 2':>13} |", end="")
print(" weights s1 / s2 | formula s1 / s2 | affine BN s1 / s2")
for name in PRIMITIVES:
    shapes, counts, affine = [], [], []
    for stride in (1, 2):
        op = OPS[name](C, stride, False)
        y = op(x)
        shapes.append(y.shape)
        counts.append(nn.count_parameters(op))
        assert y.dtype == np.float32, (name, y.dtype)
        assert y.shape == (2, C, 8 // stride, 8 // stride), (name, stride, y.shape)
        assert counts[-1] == op_param_count(name, C, stride), (name, stride)
        affine.append(nn.count_parameters(OPS[name](C, stride, True)))  # BN scale and shift
        assert affine[-1] == op_param_count(name, C, stride, affine=True), (name, stride)
    odd = OPS[name](C, 2, False)(x_odd).shape
    assert odd == (2, C, 4, 4), (name, odd)  # every op rounds 7 / 2 up the same way
    formula = [op_param_count(name, C, s) for s in (1, 2)]
    print(
        f"{name:>13} | {str(shapes[0][2:]):>13} | {str(shapes[1][2:]):>13} | {str(odd[2:]):>13} |"
        f" {counts[0]:6d} / {counts[1]:<6d} | {formula[0]:6d} / {formula[1]:<6d} |"
        f" {affine[0]:6d} / {affine[1]:<6d}"
    )
print("every operation keeps C channels; at stride 2 they all agree on the halved size, even")
print("for 7x7 (the FactorizedReduce pads its shifted half back), so their outputs can be added")

print("\nweights of one operation for the paper's channel counts (stride 1 / stride 2):")
header = " | ".join(f"{f'C = {c}':^9}" for c in (4, 8, 16))
print(f"{'':>13} | {header}")
for name in PRIMITIVES:
    cells = " | ".join(
        f"{op_param_count(name, c, 1):4d}/{op_param_count(name, c, 2):<4d}" for c in (4, 8, 16)
    )
    print(f"{name:>13} | {cells}")
assert op_param_count("sep_conv_5x5", 8, 1) == 2 * (25 * 8 + 64) == 528
print("the convolutions cost weights, grow like C^2; pools, skip (stride 1) and none are free")

# %% 2. Receptive fields: which input pixels reach one output pixel
section("2. Receptive fields: which input pixels reach one output pixel")
# Backward from the centre output pixel: x.grad is nonzero exactly where the output
# depends on x. In eval mode BN is a fixed affine map (in training mode its batch mean
# would connect every pixel to every other); positive inputs keep the first ReLU open.
H = 15
footprints = {}
for name in PRIMITIVES[1:]:
    op = to_float64(OPS[name](C, 1, False))
    op.eval()
    reach = np.zeros((H, H), dtype=bool)
    for _ in range(4):  # a max pool routes to one pixel per image: take the union of a few
        xin = md.tensor(rng.uniform(0.5, 1.5, (4, C, H, H)), requires_grad=True, dtype=np.float64)
        y = op(xin)
        cot = np.zeros(y.shape)
        cot[:, :, H // 2, H // 2] = 1.0
        y.backward(cot)
        reach |= np.abs(xin.grad).sum(axis=(0, 1)) > 0
    rows, cols = np.nonzero(reach)
    extent = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    footprints[name] = reach
    print(f"{name:>13}: output ({H // 2}, {H // 2}) sees a {extent[0]}x{extent[1]} window,", end="")
    print(f" {reach.sum():2d} pixels")
    expected = {
        "max_pool_3x3": 3,
        "avg_pool_3x3": 3,
        "skip_connect": 1,
        "sep_conv_3x3": 5,  # two stacked 3x3: 3 + 3 - 1
        "sep_conv_5x5": 9,  # 5 + 5 - 1
        "dil_conv_3x3": 5,  # taps at -2, 0, 2
        "dil_conv_5x5": 9,  # taps at -4, -2, 0, 2, 4
    }[name]
    assert extent == (expected, expected), (name, extent)
assert footprints["dil_conv_3x3"].sum() == 9 and footprints["dil_conv_5x5"].sum() == 25
print("dilation 2 spreads the same 9 (25) taps over a 5x5 (9x9) window, with holes")

# %% 3. The mixed operation, eq. (2), by hand and by MixedOp
section("3. The mixed operation, eq. (2), by hand and by MixedOp")
mixed = MixedOp(C, stride=1)
print(f"MixedOp(C={C}, stride=1): {len(mixed._ops)} operations, {mixed.num_parameters()} weights")
print("(the sum of the 8 rows above; the pools are followed by a BN without weights, which")
print(" brings them to the scale of the convolutions, whose last layer is a BN)")
assert mixed.num_parameters() == sum(op_param_count(n, C, 1) for n in PRIMITIVES)
alpha = md.tensor(rng.standard_normal(len(PRIMITIVES)).astype(np.float32), requires_grad=True)
weights = F.softmax(alpha, dim=-1)
out = mixed(x, weights)

a = alpha.numpy().astype(np.float64)
w_hand = np.exp(a - a.max()) / np.exp(a - a.max()).sum()  # subtract the max: no overflow
outputs = [op(x).numpy() for op in mixed._ops]  # every candidate on its own
assert not outputs[PRIMITIVES.index("none")].any()
by_hand = sum(w * o for w, o in zip(w_hand, outputs))
np.testing.assert_allclose(weights.numpy(), w_hand, rtol=1e-6)
np.testing.assert_allclose(out.numpy(), by_hand, rtol=1e-5, atol=1e-6)
assert out.dtype == np.float32
print("alpha           = " + " ".join(f"{v:+.3f}" for v in a))
print("softmax(alpha)  = " + " ".join(f"{v:.3f}" for v in w_hand) + f"   (sum {w_hand.sum():.6f})")
print("sum_o w_o o(x) computed from the 8 outputs = MixedOp(x, softmax(alpha))  (float32)")

shifted = mixed(x, F.softmax(alpha + 5.0, dim=-1))
np.testing.assert_allclose(shifted.numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
print("alpha + 5 (every entry) gives the same mixture: only differences of alpha matter")

uniform = mixed(x, F.softmax(md.tensor(np.zeros(len(PRIMITIVES), np.float32)), dim=-1))
np.testing.assert_allclose(uniform.numpy(), sum(outputs) / len(PRIMITIVES), rtol=1e-5, atol=1e-6)
print("alpha = 0 (DARTS starts near it: 1e-3 * randn) mixes all 8 equally: the average")

# %% 4. d o_bar / d alpha: the formula, backward(), and gradcheck in float64
section("4. d o_bar / d alpha: the formula, backward(), and gradcheck in float64")
G = rng.standard_normal(out.shape).astype(np.float32)  # a cotangent: dL/do_bar
out.backward(G)
inner = np.array([(G * (o - by_hand)).sum() for o in outputs], dtype=np.float64)
grad_hand = w_hand * inner  # w_k <G, o_k - o_bar>
np.testing.assert_allclose(alpha.grad, grad_hand, rtol=1e-3, atol=1e-4)
k_none = PRIMITIVES.index("none")
print("dL/dalpha by backward():  " + " ".join(f"{v:+.3f}" for v in alpha.grad))
print("w_k <G, o_k - o_bar>:     " + " ".join(f"{v:+.3f}" for v in grad_hand))
print(f"'none' is skipped in the sum, yet dL/dalpha_none = {alpha.grad[k_none]:+.4f}")
print("= -w_none <G, o_bar>: raising alpha_none scales every other weight down")
np.testing.assert_allclose(alpha.grad[k_none], -w_hand[k_none] * (G * by_hand).sum(), rtol=1e-3)
assert abs(alpha.grad[k_none]) > 1e-3
assert abs(alpha.grad.sum()) < 1e-3 * np.abs(alpha.grad).sum()  # softmax: gradients sum to 0
print(f"the gradients sum to {alpha.grad.sum():+.1e}: adding c to every alpha changes nothing")

mixed64 = to_float64(MixedOp(2, stride=1))
mixed64_s2 = to_float64(MixedOp(2, stride=2))


def mixed_edge(alpha_edge, x_in):
    return mixed64(x_in, F.softmax(alpha_edge, dim=-1))


def mixed_edge_s2(alpha_edge, x_in):
    return mixed64_s2(x_in, F.softmax(alpha_edge, dim=-1))


alpha64 = md.tensor(rng.standard_normal(len(PRIMITIVES)), requires_grad=True, dtype=np.float64)
size = 4 if FAST else 5
report = md.gradcheck(mixed_edge, alpha64, distinct(2, 2, size, size))
print(f"gradcheck MixedOp stride 1, w.r.t. alpha and x: {report}")
report_s2 = md.gradcheck(mixed_edge_s2, alpha64, distinct(2, 2, size + 1, size + 1))
print(f"gradcheck MixedOp stride 2, w.r.t. alpha and x: {report_s2}")
assert report.n_checks == len(PRIMITIVES) + 2 * 2 * size * size
print("(x is a shuffled grid of distinct values away from 0: no ReLU kink, no max-pool tie;")
print(" the alpha gradient alone needs no such care, o(x) does not depend on alpha)")

# %% 5. The operations on an MNIST digit
section("5. The operations on an MNIST digit")
images, labels = data.load_mnist(split="test", verify=False)
digits = data.normalize(images[:8])  # float32 (8, 1, 28, 28): BN needs a batch
x_img = md.tensor(np.concatenate([digits, digits[:, :, ::-1]], axis=1))  # 2 channels
md.manual_seed(60)
mixed_img = {s: MixedOp(2, stride=s) for s in (1, 2)}
alpha_img = np.zeros(len(PRIMITIVES), np.float32)
alpha_img[PRIMITIVES.index("sep_conv_3x3")] = 2.0  # a mixture leaning to sep_conv_3x3
w_img = F.softmax(md.tensor(alpha_img), dim=-1)
panels = {}
with md.no_grad():
    for s, m in mixed_img.items():
        panels[s] = [op(x_img).numpy()[0, 0] for op in m._ops] + [m(x_img, w_img).numpy()[0, 0]]
assert panels[1][0].shape == (28, 28) and panels[2][0].shape == (14, 14)
FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, axes = plt.subplots(2, 10, figsize=(17, 4.8))
for row, s in enumerate((1, 2)):
    axes[row, 0].imshow(x_img.numpy()[0, 0], cmap="gray")
    axes[row, 0].set_title(f"input (label {labels[0]})", fontsize=8)
    titles = list(PRIMITIVES) + ["mixed, eq. (2)"]
    for k, (title, img) in enumerate(zip(titles, panels[s])):
        ax = axes[row, k + 1]
        lim = max(np.abs(img).max(), 1e-6)
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        color = OP_COLORS.get(title, "black")
        ax.set_title(f"{title}\nstride {s}, {img.shape[0]}x{img.shape[1]}", fontsize=7, color=color)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(
    "the 8 candidates (untrained weights, channel 0) and their mixture with alpha_sep_conv_3x3 = 2"
)
fig.tight_layout()
fig.savefig(FIG_DIR / "operations_on_a_digit.png", dpi=100)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'operations_on_a_digit.png').relative_to(ROOT)}")

fig, axes = plt.subplots(1, len(footprints), figsize=(2 * len(footprints), 2.4))
for ax, (name, reach) in zip(axes, footprints.items()):
    ax.imshow(reach, cmap="Greys", vmin=0, vmax=1.3)
    ax.plot(H // 2, H // 2, "s", color=OP_COLORS[name], ms=5)
    ax.set_title(name, fontsize=8, color=OP_COLORS[name])
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"input pixels that reach the centre output pixel ({H}x{H} input)", fontsize=10)
fig.tight_layout()
fig.savefig(FIG_DIR / "receptive_fields.png", dpi=100)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'receptive_fields.png').relative_to(ROOT)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 2, remove op.eval(). Expect the four convolutions to reach the whole 15x15 image
#    (in training mode BN normalises with the mean and variance of all pixels of the batch),
#    while the pools and skip_connect keep their windows; the extent assert fails for the
#    convolutions.
#
# 2. In section 3, make alpha 10 on sep_conv_3x3 and 0 elsewhere, and read section 4's dL/dalpha.
#    Expect every entry to be hundreds of times smaller than for the random alpha: w_k
#    <G, o_k - o_bar> vanishes for the winner (o_bar is nearly o_k) and for the losers (w_k is
#    nearly e^-10). A saturated softmax learns slowly.
#
# 3. In section 3, mix with F.sigmoid(alpha) instead of the softmax. Expect the alpha + 5 check
#    to fail: sigmoid weights do not sum to 1 and change under a common shift.

# %%
print("\nlesson 06: all checks passed")
