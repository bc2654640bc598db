"""Lesson 05: max and average pooling, and batch normalisation in training and evaluation.

Pooling. With kernel k, stride s and padding p, output pixel (i, j) summarises the window
of rows s*i - p .. s*i - p + k - 1 (columns likewise), and H_out = (H + 2p - k) // s + 1.

    max:  y = max over the window,  padding = -inf so it never wins.
          dL/dx: each window sends its gradient to the ONE pixel that was its maximum
          (a pixel that is the maximum of m windows collects m gradients; the others get 0).
          At a tie the max is not differentiable: the library gives the gradient to the
          first maximum, and gradient checks must use inputs without ties.
    avg:  y = (sum over the window) / d,  padding = 0, where
          d = k*k                                 (count_include_pad=True, PyTorch's default)
          d = number of real pixels in the window (count_include_pad=False, used by DARTS),
          so near the border the two differ: a window half in the padding is averaged over
          k*k or over its real pixels only.
          dL/dx: each window spreads gy/d evenly over its pixels. For stride 1 that is a
          "full" convolution of gy/d with a k x k kernel of ones: the backward of a
          correlation is a convolution.

Batch normalisation, per channel c over the n = N*H*W values of that channel:

    training:  mu = mean(x),  var = mean((x - mu)^2)   (biased),
               x_hat = (x - mu) / sqrt(var + eps),   y = gamma * x_hat + beta,
               running_mean <- (1 - m) running_mean + m mu
               running_var  <- (1 - m) running_var  + m var * n / (n - 1)   (unbiased)
    evaluation: the same with mu, var := running_mean, running_var: a FIXED affine map,
               so an image's output no longer depends on the other images of its batch.

The training backward has to remember that mu and var depend on x too. Section 4 derives
it on the graph of the normalisation (one channel; sums and means over its n values):

    x --+-------------------> d = x - mu --+--> var = mean(d^2) --> r = (var + eps)^(-1/2)
        |                          ^          |                                |
        +--> mu = mean(x) ---------+          +-----------> x_hat = d * r <----+
                                                                  |
                                                     y = gamma * x_hat + beta

x reaches L through d and through mu; d through x_hat and through var.

Going backward from gy = dL/dy, each node's adjoint (dL/dnode) is the sum over the nodes
it feeds of (their adjoint) x (the local partial derivative):

    dL/dbeta  = sum(gy),   dL/dgamma = sum(gy * x_hat),   g := dL/dx_hat = gy * gamma
    dL/dr     = sum(g * d)                                       (x_hat = d * r)
    dL/dvar   = dL/dr * dr/dvar = -1/2 (var + eps)^(-3/2) sum(g * d)
    dL/dd_i   = g_i * r + dL/dvar * 2 d_i / n                    (through x_hat and var)
    dL/dmu    = -sum_i dL/dd_i = -r sum(g)                       (sum(d) = 0 drops the var term)
    dL/dx_i   = dL/dd_i + dL/dmu / n                             (through d and mu)

and substituting, with x_hat_i = d_i r,

    dL/dx = r * (g - mean(g) - x_hat * mean(g * x_hat)):

the mean(g) term comes through mu, the x_hat term through var. Every line is checked
against central differences of L computed from that node onwards, and the result against
the library's backward and gradcheck.

Run from the repository root:  python lessons/05_pooling_batchnorm.py  (figures: lessons/figures/05)
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
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from scipy.signal import convolve2d  # noqa: E402

import minidarts as md  # noqa: E402
import minidarts.nn.functional as F  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "05"
md.set_default_device("cpu")  # the lesson compares with NumPy and SciPy on the CPU
rng = np.random.default_rng(5)


def section(title):
    print(f"\n=== {title} ===")


def distinct(*shape):
    """A float64 leaf with all values different and at least 0.1 apart: a shuffled grid.
    Max pooling has a kink wherever two values of a window tie; this keeps gradient checks
    away from every kink."""
    values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
    return md.tensor(values, requires_grad=True, dtype=np.float64)


def leaf(*shape, scale=1.0, shift=0.0):
    data = shift + scale * rng.standard_normal(shape)
    return md.tensor(data, requires_grad=True, dtype=np.float64)


def same(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def windows(x, k, s, p, fill):
    """All k x k windows of x (N, C, H, W) padded by p with `fill`, at stride s:
    shape (N, C, H_out, W_out, k, k)."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    return sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]


# %% 1. Max pooling: forward against windows.max(), gradient to the winner
section("1. Max pooling: forward against windows.max(), gradient to the winner")
x = distinct(2, 3, 7, 7)
y = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
win = windows(x.data, 3, 2, 1, -np.inf)
same(y.numpy(), win.max(axis=(-1, -2)))
print(f"x {x.shape}, kernel 3, stride 2, padding 1 -> y {y.shape} = the windows' maxima")

G = rng.standard_normal(y.shape)
y.backward(G)
# By hand: find each window's winner, turn it into a position in the padded image, add.
n, c, ho, wo = y.shape
flat_win = win.reshape(n, c, ho, wo, 9)
winner = flat_win.argmax(axis=-1)  # 0..8 inside the window
rows = 2 * np.arange(ho)[:, None] + winner // 3  # stride 2, padded coordinates
cols = 2 * np.arange(wo)[None, :] + winner % 3
gpad = np.zeros((n, c, 9, 9))
img_idx, ch_idx = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
np.add.at(gpad, (img_idx[..., None, None], ch_idx[..., None, None], rows, cols), G)
same(x.grad, gpad[:, :, 1:-1, 1:-1])
wins = np.zeros((9, 9))
np.add.at(wins, (rows[0, 0], cols[0, 0]), 1)
print("x.grad = each window's gradient routed to its maximum (np.add.at by hand)")
print(f"image 0, channel 0 has 16 windows; a pixel wins 0 to {int(wins.max())} of them, and the")
print(f"{int((wins == 0).sum())} of 81 padded pixels that win none get gradient 0. Wins per pixel:")
print(wins[1:-1, 1:-1])
assert wins.sum() == ho * wo


def maxpool_s2(t):
    return F.max_pool2d(t, 3, stride=2, padding=1)


def maxpool_darts(t):  # DARTS' max_pool_3x3 at stride 1
    return F.max_pool2d(t, 3, stride=1, padding=1)


print(f"gradcheck max_pool2d 3/2/1: {md.gradcheck(maxpool_s2, distinct(2, 2, 7, 7))}")
print(f"gradcheck max_pool2d 3/1/1: {md.gradcheck(maxpool_darts, distinct(2, 2, 6, 6))}")

tie = md.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], requires_grad=True, dtype=np.float64)
try:
    md.gradcheck(lambda t: F.max_pool2d(t, 2), tie)
except AssertionError:
    print("with a tie (two equal maxima) gradcheck fails: the numerical derivative of")
    print("max(a, b) at a = b is 1/2 for each, the library gives 1 to the first: a kink")
else:
    raise AssertionError("a tie in max pooling should not pass gradcheck")

# %% 2. Average pooling: count_include_pad True and False
section("2. Average pooling: count_include_pad True and False")
ones = md.tensor(np.ones((1, 1, 4, 4)), dtype=np.float64)
incl = F.avg_pool2d(ones, 3, stride=1, padding=1, count_include_pad=True).numpy()[0, 0]
excl = F.avg_pool2d(ones, 3, stride=1, padding=1, count_include_pad=False).numpy()[0, 0]
print("an image of ones, kernel 3, stride 1, padding 1:")
print(f"count_include_pad=True (divide by 9):\n{incl.round(4)}")
print(f"count_include_pad=False (divide by the real pixels):\n{excl}")
same(incl[0, 0], 4 / 9)  # a corner window holds 4 real pixels and 5 zeros of padding
same(excl, np.ones((4, 4)))

x = leaf(2, 3, 6, 6)
for include in (True, False):
    y = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=include)
    total = windows(x.data, 3, 1, 1, 0.0).sum(axis=(-1, -2))
    real = windows(np.ones((1, 1, 6, 6)), 3, 1, 1, 0.0).sum(axis=(-1, -2))  # real pixels
    d = 9.0 if include else real
    same(y.numpy(), total / d)
    G = rng.standard_normal(y.shape)
    x.zero_grad()
    y.backward(G)
    # backward by hand: spread gy/d over each window = full convolution with ones((3, 3))
    spread = np.empty(x.shape)
    g_over_d = G / d
    for i in range(2):
        for ch in range(3):
            spread[i, ch] = convolve2d(g_over_d[i, ch], np.ones((3, 3)), mode="full")[1:-1, 1:-1]
    same(x.grad, spread)
    print(f"count_include_pad={include}: forward = window sums / d, backward = full")
    print("  convolution of gy/d with ones(3, 3), cropped: both match the library")


def avgpool_incl(t):
    return F.avg_pool2d(t, 3, stride=2, padding=1, count_include_pad=True)


def avgpool_excl(t):  # DARTS' avg_pool_3x3
    return F.avg_pool2d(t, 3, stride=2, padding=1, count_include_pad=False)


print(f"gradcheck avg_pool2d 3/2/1, include pad: {md.gradcheck(avgpool_incl, leaf(2, 2, 7, 7))}")
print(f"gradcheck avg_pool2d 3/2/1, exclude pad: {md.gradcheck(avgpool_excl, leaf(2, 2, 7, 7))}")

# %% 3. Batch norm, training: batch statistics and running statistics
section("3. Batch norm, training: batch statistics and running statistics")
C = 3
x = leaf(8, C, 4, 4, scale=3.0, shift=2.0)  # mean about 2, std about 3
gamma, beta = leaf(C), leaf(C)
running_mean, running_var = np.zeros(C), np.ones(C)
y = F.batch_norm(x, running_mean, running_var, gamma, beta, training=True, momentum=0.1)

axes = (0, 2, 3)  # every axis but the channel axis
n = x.numel() // C
mu = x.data.mean(axis=axes)
var = x.data.var(axis=axes)  # biased: divides by n
x_hat = (x.data - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
ref = gamma.data[None, :, None, None] * x_hat + beta.data[None, :, None, None]
same(y.numpy(), ref, rtol=1e-10)
print(f"x {x.shape}: per-channel mean {mu.round(3)}, biased variance {var.round(3)}")
y_mean, y_std = y.numpy().mean(axis=axes), y.numpy().std(axis=axes)
print(f"y per channel: mean {y_mean.round(4)} = beta {beta.numpy().round(4)}")
print(f"               std  {y_std.round(4)} = |gamma| {np.abs(gamma.numpy()).round(4)}")
same(y_mean, beta.data, rtol=1e-10)
same(y_std, np.abs(gamma.data) * np.sqrt(var / (var + 1e-5)), rtol=1e-10)  # eps shrinks it
same(running_mean, 0.1 * mu)
same(running_var, 0.9 * 1.0 + 0.1 * var * n / (n - 1))
print(f"running_mean = 0.9*0 + 0.1*mu = {running_mean.round(4)}")
print(f"running_var  = 0.9*1 + 0.1*var*n/(n-1) = {running_var.round(4)}  (n = {n}, unbiased)")

# In training an image's output depends on its batch-mates (through mu and var):
x0 = x.data[:1]
with md.no_grad():
    batch_a = F.batch_norm(md.tensor(np.concatenate([x0, x.data[1:4]])), None, None, training=True)
    batch_b = F.batch_norm(
        md.tensor(np.concatenate([x0, 5.0 + x.data[4:7]])), None, None, training=True
    )
moved = np.abs(batch_a.numpy()[0] - batch_b.numpy()[0]).max()
print(f"the same image in two different batches: outputs differ by up to {moved:.3f}")
assert moved > 0.1

# %% 4. The batch-norm backward, derived on its graph
section("4. The batch-norm backward, derived on its graph")
# The same x, gamma, beta as above; L = sum(G * y) for a random G, so that dL/dy = G.
EPS, axes_k = 1e-5, dict(axis=axes, keepdims=True)  # per channel, shapes (1, C, 1, 1)
n = x.numel() // C  # values per channel, N * H * W
G = rng.standard_normal(y.shape)
gam, bet = gamma.data[None, :, None, None], beta.data[None, :, None, None]
# forward, node by node
mu = x.data.mean(**axes_k)
d = x.data - mu
var = (d * d).mean(**axes_k)
r = (var + EPS) ** -0.5
x_hat = d * r
# backward, node by node, from the output to the input
dbeta = G.sum(axis=axes)
dgamma = (G * x_hat).sum(axis=axes)
g = G * gam  # dL/dx_hat
dr = (g * d).sum(**axes_k)  # x_hat = d * r
dvar = dr * -0.5 * (var + EPS) ** -1.5  # r = (var + eps)^(-1/2)
dd = g * r + dvar * 2 * d / n  # d feeds x_hat and var = mean(d^2)
dmu = -dd.sum(**axes_k)  # d = x - mu: every d_i feeds back to mu
dx = dd + dmu / n  # x feeds d and mu = mean(x)


# L computed from one node onwards: the node's value is the argument, everything it feeds
# is recomputed from it, every other input keeps its value. md.numerical_grad of such a
# function (central differences, float64) is that node's adjoint, found without calculus.
def L_from_x(x_):
    m = x_.mean(**axes_k)
    return L_from_mu(m, x_)


def L_from_mu(m, x_=x.data):
    return L_from_d(x_ - m)


def L_from_d(d_):
    return L_from_var((d_ * d_).mean(**axes_k), d_)


def L_from_var(v_, d_=d):
    return L_from_r((v_ + EPS) ** -0.5, d_)


def L_from_r(r_, d_=d):
    return L_from_x_hat(d_ * r_)


def L_from_x_hat(xh):
    return float((G * (gam * xh + bet)).sum())


adjoints = [
    ("dL/dx_hat = gy * gamma", g, L_from_x_hat, x_hat),
    ("dL/dr = sum(g * d)", dr, L_from_r, r),
    ("dL/dvar = -1/2 (var + eps)^(-3/2) dL/dr", dvar, L_from_var, var),
    ("dL/dd = g r + dL/dvar 2 d / n", dd, L_from_d, d),
    ("dL/dmu = -sum(dL/dd)", dmu, L_from_mu, mu),
    ("dL/dx = dL/dd + dL/dmu / n", dx, L_from_x, x.data),
]
for name, analytic, L_from, value in adjoints:
    numerical = md.numerical_grad(L_from, value.copy())
    err = np.abs(analytic - numerical).max() / np.abs(numerical).max()
    print(f"{name:40s} against central differences: max relative error {err:.1e}")
    assert err < 1e-7, name
# the simplifications: sum(d) = 0 per channel, so the var term drops out of dL/dmu ...
largest = np.abs(d.sum(axis=axes)).max()
print(f"largest |sum(d)| over the channels: {largest:.0e} (zero up to rounding)")
same(dmu, -r * g.sum(**axes_k), rtol=1e-9)
print("so dL/dmu = -r sum(g): the variance path adds nothing to it")
# ... and dvar * 2 d / n = -r^3 d mean(g d) = -r x_hat mean(g x_hat): the compact formula
compact = r * (g - g.mean(**axes_k) - x_hat * (g * x_hat).mean(**axes_k))
same(dx, compact, rtol=1e-10)
print("dL/dx = r * (g - mean(g) - x_hat * mean(g * x_hat)): the steps, collapsed")

# the library's backward: the same numbers
x.zero_grad()
gamma.zero_grad()
beta.zero_grad()
F.batch_norm(x, None, None, gamma, beta, training=True).backward(G)
same(x.grad, compact, rtol=1e-10)
same(gamma.grad, dgamma, rtol=1e-10)
same(beta.grad, dbeta, rtol=1e-10)
print("= the library's backward: x.grad, dL/dgamma = sum(gy * x_hat), dL/dbeta = sum(gy)")


def bn_train(t, w, b):  # no running statistics: gradcheck calls it many times
    return F.batch_norm(t, None, None, w, b, training=True)


report = md.gradcheck(bn_train, leaf(4, 2, 3, 3, scale=2.0), leaf(2), leaf(2))
print(f"gradcheck batch_norm training (x, gamma, beta): {report}")

# %% 5. Batch norm, evaluation: the running statistics, a fixed affine map
section("5. Batch norm, evaluation: the running statistics, a fixed affine map")
rm, rv = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 1.0])
x = leaf(8, C, 4, 4, scale=3.0, shift=2.0)
y = F.batch_norm(x, rm, rv, gamma, beta, training=False)
scale = gamma.data / np.sqrt(rv + 1e-5)
ref = (
    scale[None, :, None, None] * (x.data - rm[None, :, None, None]) + beta.data[None, :, None, None]
)
same(y.numpy(), ref, rtol=1e-10)
same(rm, [1.0, -2.0, 0.5])  # evaluation never updates the running statistics
with md.no_grad():
    y_first = F.batch_norm(md.tensor(x.data[:1]), rm, rv, gamma, beta).numpy()
same(y_first, y.numpy()[:1])
print("y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta, unchanged running")
print("statistics, and an image alone gives the same output as inside its batch")


def bn_eval(t, w, b):
    return F.batch_norm(t, rm, rv, w, b, training=False)


report = md.gradcheck(bn_eval, leaf(4, 3, 3, 3), leaf(3), leaf(3))
print(f"gradcheck batch_norm eval (x, gamma, beta): {report}")

# %% 6. nn.BatchNorm2d: running statistics converge to the data's, then eval()
section("6. nn.BatchNorm2d: running statistics converge to the data's, then eval()")
true_mean = np.array([1.0, -2.0, 0.5], dtype=np.float32)
true_std = np.array([2.0, 0.5, 1.0], dtype=np.float32)


def batch(size=16):
    x = rng.standard_normal((size, C, 8, 8)).astype(np.float32)
    return md.tensor(true_std[None, :, None, None] * x + true_mean[None, :, None, None])


bn = md.nn.BatchNorm2d(C)  # momentum 0.1, float32 parameters and buffers
steps = 150
history = []
bn.train()
with md.no_grad():
    for _ in range(steps):
        y = bn(batch())
        history.append((bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()))
assert y.dtype == np.float32
final_mean, final_var = history[-1]
print(f"after {steps} training batches: running_mean {final_mean.round(3)} (true {true_mean})")
print(f"                               running_var  {final_var.round(3)} (true {true_std**2})")
np.testing.assert_allclose(final_mean, true_mean, atol=0.1)
np.testing.assert_allclose(final_var, true_std**2, rtol=0.1)

bn.eval()
probe = batch(4)
with md.no_grad():
    y_eval = bn(probe).numpy()
    y_one = bn(md.tensor(probe.numpy()[:1])).numpy()
# a fresh layer has gamma = 1 and beta = 0
expected = (probe.numpy() - final_mean[None, :, None, None]) / np.sqrt(
    final_var[None, :, None, None] + 1e-5
)
np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(y_one, y_eval[:1], rtol=1e-6)
assert int(bn.num_batches_tracked.numpy()) == steps
print("eval(): normalised with the running statistics; batch size no longer matters")

FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
t = np.arange(1, steps + 1)
for ch in range(C):
    line = axes[0].plot(t, [h[0][ch] for h in history], label=f"channel {ch}")[0]
    axes[0].axhline(true_mean[ch], color=line.get_color(), ls=":")
    axes[1].plot(t, [h[1][ch] for h in history], color=line.get_color())
    axes[1].axhline(true_std[ch] ** 2, color=line.get_color(), ls=":")
axes[0].set_title("running_mean (dotted: the data's mean)")
axes[1].set_title("running_var (dotted: the data's variance)")
for ax in axes:
    ax.set_xlabel("training batch")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "running_stats.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'running_stats.png').relative_to(ROOT)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 4, drop the variance path from dL/dd (dd = g * r). Expect the dL/dd and dL/dx
#    checks against central differences to fail, and the result r (g - mean(g)) to miss the
#    x_hat * mean(g * x_hat) term of the library's gradient.
#
# 2. Call F.batch_norm in training mode on one 1x1 image, shape (1, C, 1, 1). Expect a
#    ValueError: with n = 1 value per channel, var = 0 and x_hat = 0 whatever x is, so section
#    4's formula gives dL/dx = 0 and there is nothing to learn (PyTorch refuses it too).
#
# 3. In section 1's tie test, separate the two maxima by 1e-7, then by 1e-3. Expect gradcheck to
#    fail at 1e-7 (its eps = 1e-6 steps past the other value: the central difference straddles
#    the kink) and to pass at 1e-3.

# %%
print("\nlesson 05: all checks passed")
