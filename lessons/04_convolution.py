"""Lesson 04: convolution by im2col, step by step, forward and backward; depthwise too.

A convolution layer (really a cross-correlation: the kernel is not flipped) slides a small
kernel w over the image and takes a dot product at every position:

    y[n, o, h, v] = b[o] + sum_c sum_{i, j} w[o, c, i, j] * xp[n, c, h*s + i*d, v*s + j*d]

with xp the input padded by p zeros, stride s, dilation d, and output size

    H_out = (H + 2p - d (k - 1) - 1) // s + 1.

im2col ("image to columns") turns this into ONE matrix product:

1. windows: every output pixel sees a (C, k, k) window of xp. NumPy can present all the
   windows as a strided VIEW of xp, with no copying: one step right in the output moves
   the window s elements right, one step right inside the kernel moves d elements right.
2. cols: copy each window into one column of a matrix, K = C k k rows, P = H_out W_out
   columns.
3. product: y = W (O x K) @ cols (K x P), reshaped to (O, H_out, W_out).

Backward: with G = dL/dy as an (O x P) matrix, the product rule for matrices gives

    dL/dW = G @ cols^T,        dL/dcols = W^T @ G,

and dL/dx is dL/dcols sent back to the pixels the columns were copied from ("col2im"):
copying (a gather) is linear, and its transpose is a scatter-ADD, because a pixel that
appears in several windows receives the gradient of each of them.

Depthwise convolution (groups = C, weight (C, 1, k, k)) filters every channel with its own
kernel and never mixes channels: C k k weights instead of C^2 k k. DARTS' separable and
dilated convolutions are a depthwise convolution followed by a 1x1 one.

Checks: every forward against scipy.signal.correlate2d and against minidarts.nn.functional.conv2d
(which uses this im2col, a 1x1 product, or a banded-matrix depthwise kernel, depending on the
shape), every gradient against our hand derivation and against minidarts.engine.gradcheck.

Run from the repository root:  python lessons/04_convolution.py   (figures: lessons/figures/04)
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
from matplotlib.patches import Rectangle  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402
from scipy.signal import convolve2d, correlate2d  # noqa: E402

import minidarts as md  # noqa: E402
import minidarts.nn.functional as F  # noqa: E402
from minidarts.jobs import data  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "04"
md.set_default_device("cpu")  # the lesson compares with NumPy and SciPy on the CPU
rng = np.random.default_rng(4)


def section(title):
    print(f"\n=== {title} ===")


def leaf(*shape):
    """A float64 leaf tensor of standard normal values that wants a gradient."""
    return md.tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)


def same(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


# %% 1. A 4x4 image and a 2x2 kernel: windows, columns, product
section("1. A 4x4 image and a 2x2 kernel: windows, columns, product")
x = md.tensor(np.arange(16.0).reshape(4, 4), dtype=np.float64)
w = md.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=np.float64)
xa, wa = x.data, w.data  # the arrays inside the library's tensors
kh, kw = wa.shape
ho, wo = 4 - kh + 1, 4 - kw + 1  # stride 1, no padding: (4 - 2) // 1 + 1 = 3
print(f"x =\n{xa}\nw =\n{wa}")

# step 1: the windows as a view. x is 4x4 float64: one row is 32 bytes, one element 8.
row, col = xa.strides
windows = as_strided(xa, shape=(ho, wo, kh, kw), strides=(row, col, row, col))
print(f"x.strides = {xa.strides}; windows: shape {windows.shape}, strides {windows.strides}")
print(f"window (0, 0) =\n{windows[0, 0]}\nwindow (0, 1) =\n{windows[0, 1]}")
print(f"window (2, 2) =\n{windows[2, 2]}")
assert np.shares_memory(windows, xa)  # no copy yet: 36 numbers shown, 16 stored
print("the windows share x's memory: a view, no copy")

# step 2: the column matrix, one column per output pixel, K = kh*kw rows
cols = windows.reshape(ho * wo, kh * kw).T  # reshape of a strided view: this copies
print(f"cols (K = {kh * kw} rows x P = {ho * wo} columns):\n{cols}")

# step 3: one matrix product
y_im2col = (wa.reshape(1, kh * kw) @ cols).reshape(ho, wo)
print(f"w (1 x K) @ cols (K x P), reshaped to {ho}x{wo}:\n{y_im2col}")
print(f"e.g. y[0, 0] = 0*1 + 1*2 + 4*3 + 5*4 = {y_im2col[0, 0]:.0f}: window (0, 0) times w")
assert y_im2col[0, 0] == 34

# checks: SciPy's cross-correlation; SciPy's convolution with the kernel flipped; the library
y_scipy = correlate2d(xa, wa, mode="valid")
y_flip = convolve2d(xa, wa[::-1, ::-1], mode="valid")
y_lib = F.conv2d(x.reshape(1, 1, 4, 4), w.reshape(1, 1, 2, 2)).numpy()[0, 0]
same(y_im2col, y_scipy)
same(y_im2col, y_flip)
same(y_im2col, y_lib)
print("= scipy.signal.correlate2d = convolve2d with the flipped kernel = F.conv2d")
print("(deep learning's 'convolution' is cross-correlation: the kernel is not flipped)")

# %% 2. The general case: batch, channels, padding, stride, dilation
section("2. The general case: batch, channels, padding, stride, dilation")


def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col(x, kh, kw, s, p, d):
    """The (N, C*kh*kw, Ho*Wo) column matrix of x (N, C, H, W): pad, view, copy."""
    n, c, h, wd = x.shape
    ho, wo = conv_out(h, kh, s, p, d), conv_out(wd, kw, s, p, d)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    sn, sc, sh, sw = xp.strides
    windows = as_strided(xp, (n, c, kh, kw, ho, wo), (sn, sc, d * sh, d * sw, s * sh, s * sw))
    return windows.reshape(n, c * kh * kw, ho * wo), (ho, wo)


def my_conv2d(x, w, s=1, p=0, d=1):
    """y = W (O x K) @ cols (K x P) for every image of the batch."""
    o, c, kh, kw = w.shape
    cols, (ho, wo) = im2col(x, kh, kw, s, p, d)
    return (w.reshape(o, c * kh * kw) @ cols).reshape(x.shape[0], o, ho, wo), cols


def scipy_conv2d(x, w, s=1, p=0, d=1):
    """The reference: one scipy correlate2d per (image, out channel, in channel)."""
    n, (o, c, kh, kw) = x.shape[0], w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = []
    for i in range(n):
        for oc in range(o):
            acc = 0.0
            for ic in range(c):
                kernel = np.zeros((d * (kh - 1) + 1, d * (kw - 1) + 1))
                kernel[::d, ::d] = w[oc, ic]  # a dilated kernel is a sparse bigger one
                acc = acc + correlate2d(xp[i, ic], kernel, mode="valid")[::s, ::s]
            out.append(acc)
    return np.array(out).reshape(n, o, *out[0].shape)


settings = dict(s=2, p=1, d=2)
xt, wt, bt = leaf(2, 3, 9, 9), leaf(4, 3, 3, 3), leaf(4)
y_mine, cols = my_conv2d(xt.data, wt.data, **settings)
y_mine = y_mine + bt.data.reshape(1, 4, 1, 1)
yt = F.conv2d(xt, wt, bt, stride=2, padding=1, dilation=2)
print(f"x {xt.shape}, w {wt.shape}, stride 2, padding 1, dilation 2")
print(f"H_out = (9 + 2*1 - 2*(3 - 1) - 1) // 2 + 1 = {conv_out(9, 3, 2, 1, 2)}; y {yt.shape}")
print(f"cols per image: K = 3*3*3 = {cols.shape[1]} rows, P = 4*4 = {cols.shape[2]} columns")
same(y_mine, yt.numpy())
same(y_mine, scipy_conv2d(xt.data, wt.data, **settings) + bt.data.reshape(1, 4, 1, 1))
print("im2col by hand = F.conv2d = the SciPy reference")

# %% 3. Backward: dW, dcols, then col2im as a scatter-add
section("3. Backward: dW = G cols^T, dcols = W^T G, then col2im as a scatter-add")
G = rng.standard_normal(yt.shape)  # some upstream gradient dL/dy
yt.backward(G)
n, o = G.shape[:2]
Gm = G.reshape(n, o, -1)  # (N, O, P)
dW = sum(Gm[i] @ cols[i].T for i in range(n)).reshape(wt.shape)  # summed over the batch
db = G.sum(axis=(0, 2, 3))
dcols = wt.data.reshape(o, -1).T @ Gm  # (N, K, P)

# col2im. Element (k, q) of cols was copied from one position of the padded image: build
# that index map, check that gathering with it IS the im2col copy, then scatter-add back.
_, c, h, wd = xt.shape
s, p, d = settings["s"], settings["p"], settings["d"]
hp, wp = h + 2 * p, wd + 2 * p
kk, ho, wo = 3, *yt.shape[2:]  # kernel size, output size
ti, tj, oh, ow = np.meshgrid(*(np.arange(m) for m in (kk, kk, ho, wo)), indexing="ij")
# tap (ti, tj) of output pixel (oh, ow) reads padded pixel (oh*s + ti*d, ow*s + tj*d)
flat_pos = ((oh * s + ti * d) * wp + (ow * s + tj * d)).reshape(kk * kk, ho * wo)  # (k*k, P)
xpad = np.pad(xt.data, ((0, 0), (0, 0), (p, p), (p, p))).reshape(n, c, hp * wp)
same(xpad[:, :, flat_pos].reshape(n, -1, ho * wo), cols)  # gather = the im2col copy
gxpad = np.zeros((n, c, hp * wp))
np.add.at(gxpad, (slice(None), slice(None), flat_pos), dcols.reshape(n, c, kk * kk, -1))
dx = gxpad.reshape(n, c, hp, wp)[:, :, p : p + h, p : p + wd]  # drop the padding's share

same(wt.grad, dW)
same(bt.grad, db)
same(xt.grad, dx)
print("dW, db and dx by hand (scatter-add with np.add.at) = the library's gradients")
uses = np.zeros(hp * wp)
np.add.at(uses, flat_pos, 1.0)
print(f"a padded-input pixel is read by 0 to {int(uses.max())} windows, and its gradient")
print("is the sum of one term per window that read it")


def conv_s2_p1_d2(x, w, b):
    return F.conv2d(x, w, b, stride=2, padding=1, dilation=2)


def conv_groups2(x, w):
    return F.conv2d(x, w, stride=1, padding=1, groups=2)


r1 = md.gradcheck(conv_s2_p1_d2, leaf(2, 2, 7, 7), leaf(3, 2, 3, 3), leaf(3))
r2 = md.gradcheck(conv_groups2, leaf(2, 4, 5, 5), leaf(4, 2, 3, 3))
print(f"gradcheck conv2d stride 2, padding 1, dilation 2, bias: {r1}")
print(f"gradcheck conv2d groups=2:                            {r2}")

# %% 4. Depthwise convolution: one kernel per channel
section("4. Depthwise convolution: groups = C, one kernel per channel")
C = 3
xd, wdw = leaf(2, C, 8, 8), leaf(C, 1, 3, 3)
yd = F.conv2d(xd, wdw, padding=2, dilation=2, groups=C)  # DARTS' dil_conv_3x3 geometry
ref = np.empty(yd.shape)
for img in range(2):
    for ch in range(C):  # channel ch only ever meets kernel ch
        kernel = np.zeros((5, 5))
        kernel[::2, ::2] = wdw.data[ch, 0]
        padded = np.pad(xd.data[img, ch], 2)
        ref[img, ch] = correlate2d(padded, kernel, mode="valid")
same(yd.numpy(), ref)
full = C * C * 3 * 3
print(f"x {xd.shape}, w {wdw.shape}, padding 2, dilation 2 -> y {yd.shape}")
print("each output channel = scipy correlate2d of its own input channel with its own kernel")
print(f"weights: depthwise {wdw.numel()} vs {full} for a full 3x3 convolution C -> C")
# The same depthwise convolution as im2col on each channel on its own: groups split the
# channels, and a group of one channel is the single-channel case of section 2.
y_groups = np.concatenate(
    [my_conv2d(xd.data[:, ch : ch + 1], wdw.data[ch : ch + 1], p=2, d=2)[0] for ch in range(C)],
    axis=1,
)
same(yd.numpy(), y_groups)
print("= im2col per channel (the library's CPU depthwise kernel uses banded matrices instead)")


def depthwise_s2(x, w):
    return F.conv2d(x, w, stride=2, padding=1, groups=3)


def depthwise_dil(x, w):
    return F.conv2d(x, w, padding=2, dilation=2, groups=3)


r3 = md.gradcheck(depthwise_s2, leaf(2, 3, 7, 7), leaf(3, 1, 3, 3))
r4 = md.gradcheck(depthwise_dil, leaf(2, 3, 6, 6), leaf(3, 1, 3, 3))
print(f"gradcheck depthwise stride 2:   {r3}")
print(f"gradcheck depthwise dilation 2: {r4}")

# %% 5. Pictures: an MNIST digit, its windows, the column matrix, edge filters
section("5. Pictures: an MNIST digit, its windows, the column matrix, edge filters")
images, labels = data.load_mnist(split="test", verify=False)
digit = images[0].astype(np.float32) / 255.0  # a 28x28 "7"
sobel = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
filters = np.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3): d/dx and d/dy
img_t = md.tensor(digit[None, None])
edges = F.conv2d(img_t, md.tensor(filters), padding=1).numpy()[0]  # float32, (2, 28, 28)
edges_s2 = F.conv2d(img_t, md.tensor(filters), padding=1, stride=2).numpy()[0]
digit_cols, _ = im2col(digit[None, None], 3, 3, 1, 1, 1)  # (1, 9, 784)
same(edges, (filters.reshape(2, 9) @ digit_cols[0]).reshape(2, 28, 28), rtol=1e-5)
same(edges[0], correlate2d(np.pad(digit, 1), sobel, mode="valid"), rtol=1e-5)
same(edges_s2, edges[:, ::2, ::2], rtol=1e-6)  # stride 2 = every other output pixel
assert edges.dtype == np.float32
print(f"digit label {labels[0]}; Sobel filters through F.conv2d (float32): {edges.shape}")
print("checked against im2col @ filters and scipy; stride 2 keeps every other output pixel")

FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
pick = (9, 12)  # the output pixel whose window we follow
q = pick[0] * 28 + pick[1]  # its column in cols
ax = axes[0, 0]
ax.imshow(np.pad(digit, 1), cmap="gray")
ax.add_patch(Rectangle((pick[1] - 0.5, pick[0] - 0.5), 3, 3, fill=False, ec="red", lw=2))
ax.set_title(f"padded input 30x30,\nthe window of output pixel {pick}", fontsize=10)
ax = axes[0, 1]
first, last = (pick[0] - 1) * 28, (pick[0] + 2) * 28  # the columns of 3 output rows
ax.imshow(
    digit_cols[0][:, first:last],
    cmap="gray",
    aspect="auto",
    interpolation="nearest",
    extent=(first - 0.5, last - 0.5, 8.5, -0.5),
)
ax.add_patch(Rectangle((q - 0.5, -0.5), 1, 9, fill=False, ec="red", lw=1.5))
ax.set_title(f"cols (9 x 784), columns {first}..{last - 1};\ncolumn {q} in red", fontsize=10)
ax.set_xlabel("output pixel h*28 + w")
ax.set_ylabel("tap i*3 + j")
ax = axes[0, 2]
window = digit_cols[0][:, q].reshape(3, 3)
ax.imshow(window, cmap="gray", vmin=0, vmax=1)
for (r, cc), val in np.ndenumerate(window):
    ax.text(cc, r, f"{val:.2f}", ha="center", va="center", color="red", fontsize=11)
ax.set_title(f"column {q} reshaped to 3x3:\nthe window again", fontsize=10)
for k, (name, img) in enumerate([("Sobel d/dx", edges[0]), ("Sobel d/dy", edges[1])]):
    ax = axes[1, k]
    lim = np.abs(img).max()
    ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(f"filter {k} @ cols, reshaped:\n{name}", fontsize=10)
ax = axes[1, 2]
ax.imshow(np.hypot(*edges_s2), cmap="magma")
ax.set_title("edge strength with stride 2:\n14x14, every other pixel", fontsize=10)
for ax in axes.flat:
    if ax is not axes[0, 1]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle("convolution = windows -> column matrix -> one matrix product")
fig.tight_layout()
fig.savefig(FIG_DIR / "im2col.png", dpi=110)
plt.close(fig)

# Row k of cols is the whole image shifted by tap k: y = sum_k w_k * (shifted image k).
# Zoom on the corner of the 7, with a fixed red dot, to see the one-pixel shifts.
fig, axes = plt.subplots(3, 3, figsize=(6.5, 6.5))
for k, ax in enumerate(axes.flat):
    ax.imshow(digit_cols[0][k].reshape(28, 28)[3:15, 14:26], cmap="gray")
    ax.plot(5, 5, "o", color="red", ms=4)
    ax.set_title(f"row {k}: tap ({k // 3}, {k % 3}), w = {sobel.flat[k]:+.0f}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("the 9 rows of cols (zoomed): the image shifted by each tap")
fig.tight_layout()
fig.savefig(FIG_DIR / "cols_rows.png", dpi=110)
plt.close(fig)
print(f"figures: {FIG_DIR.relative_to(ROOT)}/im2col.png, cols_rows.png")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 1, swap the last two strides of the windows view: strides=(row, col, col, row).
#    Expect every window to come out transposed: y becomes correlate2d(x, w.T) and the checks
#    against SciPy fail.
#
# 2. In section 3, replace np.add.at by gxpad[:, :, flat_pos] += dcols.reshape(n, c,
#    kk * kk, -1). Expect the dx check to fail exactly at the pixels that more than one window
#    reads: with repeated indices NumPy's += keeps only one of the additions, np.add.at keeps
#    them all.

# %%
print("\nlesson 04: all checks passed")
