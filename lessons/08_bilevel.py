"""Lesson 08: the bilevel problem of DARTS, eq. (3), first order, on a problem with a known answer.

Two kinds of unknowns: the weights w of the operations (convolution kernels) and the
architecture alpha (which operation each edge uses, relaxed by the softmax, eq. 2).
DARTS does not fit both to the same data. The architecture should be the one whose
TRAINED weights do best on data the weights have not seen, equation (3):

    min_alpha  L_val(w*(alpha), alpha)    s.t.   w*(alpha) = argmin_w L_train(w, alpha).

Solving the inner problem for every alpha is far too expensive. First-order DARTS
replaces w*(alpha) by the current w and alternates one step of each:

    alpha <- alpha - Adam( grad_alpha L_val(w, alpha) )      on a validation batch, w fixed
    w     <- w     - SGD(  grad_w L_train(w, alpha) )        on a training batch, alpha fixed

(second-order DARTS would also differentiate through w*(alpha); the first-order
gradient ignores that dependence). Training alpha on the training data instead would
reward whatever fits the training set best, overfitting included; the validation split
asks which mixture generalises. Section 6 measures it: with few, noisy training targets,
alpha trained on the training split moves to the operation with the most weights, which
fits the training noise and does worse on new data; alpha trained on validation data
keeps the operation that made the targets.

Here the answer is known in advance. A "teacher" produces the targets with ONE candidate
operation: y = o_target(x) for random images x (for a convolution, with fixed random
weights). A "student" MixedOp, with its own randomly initialised weights, mixes all 8
candidates by softmax(alpha). The mean squared error

    L(w, alpha) = mean( (o_bar(x; w, alpha) - y)^2 )

is smallest when the mixture puts its weight on the target operation (whose weights can
learn the teacher's), so softmax(alpha) should move its mass there. The gradient that
moves it (lesson 06) is dL/dalpha_k = w_k <G, o_k(x) - o_bar(x)> with G = dL/do_bar =
2 (o_bar - y) / n: an operation gains when its output is closer to y than the mixture.

minidarts.jobs.search does the same with images and cross-entropy through its Architect
(architect.py) and Search.weight_step; this lesson writes the two steps out on a single
MixedOp, using the library's optimisers and its `frozen` helper.

Run from the repository root:  python lessons/08_bilevel.py   (figures: lessons/figures/08)
"""

import os
import sys
import time
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
from minidarts import optim  # noqa: E402
from minidarts.darts.architect import frozen  # noqa: E402
from minidarts.darts.mixed_op import MixedOp  # noqa: E402
from minidarts.darts.operations import PRIMITIVES, op_param_count  # noqa: E402
from minidarts.jobs.plots import OP_COLORS  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "08"
FAST = os.environ.get("MINIDARTS_FAST") == "1" or "--fast" in sys.argv
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU

C, SIZE, N, BATCH = 4, 8, 64, 16  # channels, image size, images per split, batch size
STEPS = 100 if FAST else 150
W_LR, ALPHA_LR = 0.05, 0.05  # DARTS: 0.025 and 3e-4 over tens of thousands of steps


def section(title):
    print(f"\n=== {title} ===")


def one_hot(name):
    w = np.zeros(len(PRIMITIVES), np.float32)
    w[PRIMITIVES.index(name)] = 1.0
    return md.tensor(w)


class Problem:
    """Random images split into train and validation, a teacher that uses only `target`,
    and batches of (x, teacher(x)). The teacher is a MixedOp with one-hot weights, so its
    target operation is exactly the student's candidate of the same name (pools and
    convolutions end in the same batch norm), only with other weights."""

    def __init__(self, target, seed):
        self.rng = np.random.default_rng(seed)
        md.manual_seed(seed)
        self.teacher = MixedOp(C, stride=1)
        self.weights = one_hot(target)
        self.x = {
            split: self.rng.standard_normal((N, C, SIZE, SIZE)).astype(np.float32)
            for split in ("train", "val")
        }

    def batch(self, split):
        x = md.tensor(self.x[split][self.rng.choice(N, BATCH, replace=False)])
        with md.no_grad():  # the teacher is fixed: no graph, no gradient
            y = self.teacher(x, self.weights)
        return x, y


def mse(out, y):
    return ((out - y) ** 2).mean()


class NoisyProblem(Problem):
    """Few images, noisy targets: y = teacher(x) + sigma * z, the noise z drawn once per
    image, part of the data as label noise is. A batch is the whole split."""

    def __init__(self, target, seed, n, sigma):
        self.rng = np.random.default_rng(seed)
        md.manual_seed(seed)
        self.teacher = MixedOp(C, stride=1)
        self.weights = one_hot(target)
        self.data, self.noise_power = {}, {}
        for split in ("train", "val"):
            x = self.rng.standard_normal((n, C, SIZE, SIZE)).astype(np.float32)
            with md.no_grad():
                y = self.teacher(md.tensor(x), self.weights).numpy()
            noise = sigma * self.rng.standard_normal(y.shape).astype(np.float32)
            self.data[split] = (md.tensor(x), md.tensor(y + noise))
            self.noise_power[split] = float((noise**2).mean())  # the true operation's MSE

    def batch(self, split):
        return self.data[split]


def search(target, steps, seed=8, log_every=0, w_lr=W_LR, problem=None, alpha_split="val"):
    """First-order DARTS on one MixedOp; returns softmax(alpha) and both losses per step
    (and the student). alpha_split: the split alpha learns from ("val": DARTS)."""
    problem = Problem(target, seed) if problem is None else problem
    student = MixedOp(C, stride=1)  # drawn after the teacher: different weights
    alpha = md.tensor(
        (1e-3 * problem.rng.standard_normal(len(PRIMITIVES))).astype(np.float32),
        requires_grad=True,
    )
    w_opt = optim.SGD(student.parameters(), lr=w_lr, momentum=0.9)
    a_opt = optim.Adam([alpha], lr=ALPHA_LR, betas=(0.5, 0.999))
    history = {"weights": [F.softmax(alpha, dim=-1).numpy()], "val": [], "train": []}
    for step in range(1, steps + 1):
        # 1. architecture step: validation batch, weights frozen
        x_val, y_val = problem.batch(alpha_split)
        a_opt.zero_grad()
        with frozen(student.parameters()):
            loss_val = mse(student(x_val, F.softmax(alpha, dim=-1)), y_val)
            loss_val.backward()
        a_opt.step()
        # 2. weight step: training batch, alpha frozen
        x_tr, y_tr = problem.batch("train")
        w_opt.zero_grad()
        with frozen([alpha]):
            loss_tr = mse(student(x_tr, F.softmax(alpha, dim=-1)), y_tr)
            loss_tr.backward()
        w_opt.step()
        history["weights"].append(F.softmax(alpha, dim=-1).numpy())
        history["val"].append(loss_val.item())
        history["train"].append(loss_tr.item())
        if log_every and (step % log_every == 0 or step == 1):
            row = " ".join(f"{v:5.3f}" for v in history["weights"][-1])
            print(f"{step:4d} | {loss_val.item():7.4f} | {loss_tr.item():7.4f} | {row}")
    history["weights"] = np.array(history["weights"])
    history["student"] = student
    return history


# %% 1. The problem: targets made by one operation, a student that mixes all 8
section("1. The problem: targets made by one operation, a student that mixes all 8")
TARGET = "avg_pool_3x3"
problem = Problem(TARGET, seed=8)
x, y = problem.batch("train")
direct = problem.teacher._ops[PRIMITIVES.index(TARGET)](x).numpy()
np.testing.assert_allclose(y.numpy(), direct, rtol=1e-6, atol=1e-6)
print(f"teacher: MixedOp with weights one_hot({TARGET!r}) = its {TARGET} (+ BN) alone")
print(f"{N} train and {N} validation images {(C, SIZE, SIZE)}, batches of {BATCH}: x {x.shape},")
print(f"y {y.shape}; steps {STEPS}; SGD lr {W_LR} on w, Adam lr {ALPHA_LR} on alpha")

# %% 2. The architecture gradient grad_alpha L_val(w, alpha): gradcheck in float64
section("2. The architecture gradient grad_alpha L_val(w, alpha): gradcheck in float64")
student64 = MixedOp(C, stride=1)
for t in list(student64.parameters()) + list(student64.buffers()):
    if np.issubdtype(t.data.dtype, np.floating):
        t.data = t.data.astype(np.float64)
x64, y64 = (md.tensor(t.numpy(), dtype=np.float64) for t in problem.batch("val"))


def val_loss(alpha_edge):
    return mse(student64(x64, F.softmax(alpha_edge, dim=-1)), y64)


alpha64 = md.tensor(0.5 * problem.rng.standard_normal(len(PRIMITIVES)), requires_grad=True)
report = md.gradcheck(val_loss, alpha64)
print(f"d L_val / d alpha (8 numbers, weights fixed): {report}")
assert report.n_checks == len(PRIMITIVES)
loss = val_loss(alpha64)
loss.backward()
w64 = F.softmax(alpha64, dim=-1).numpy()
with md.no_grad():
    outs = [op(x64).numpy() for op in student64._ops]
mix = sum(w * o for w, o in zip(w64, outs))
G = 2 * (mix - y64.numpy()) / mix.size
by_hand = w64 * np.array([(G * (o - mix)).sum() for o in outs])
np.testing.assert_allclose(alpha64.grad, by_hand, rtol=1e-9, atol=1e-12)
print("= w_k <G, o_k - o_bar> with G = 2 (o_bar - y) / n, by hand (lesson 06)")
k = PRIMITIVES.index(TARGET)
print(f"at this alpha the {TARGET} entry is {alpha64.grad[k]:+.4f}, the most negative: a step")
print("against the gradient raises it most")
assert np.argmin(alpha64.grad) == k

# %% 3. The bilevel loop, target avg_pool_3x3: watching softmax(alpha)
section(f"3. The bilevel loop, target {TARGET}: watching softmax(alpha)")
print(f"step |   L_val |  L_train | softmax(alpha) over {', '.join(PRIMITIVES)}")
start = time.perf_counter()
history = search(TARGET, STEPS, log_every=25)
seconds = time.perf_counter() - start
final = history["weights"][-1]
print(f"{STEPS} steps in {seconds:.1f} s; largest weight: {PRIMITIVES[int(final.argmax())]}")
assert final.argmax() == k, final
assert final[k] > 0.5, final
assert history["weights"][0].max() < 0.126  # it started uniform: 1/8 = 0.125 each
first, last = np.mean(history["val"][:5]), np.mean(history["val"][-5:])
print(f"validation loss {first:.4f} (first 5 steps) -> {last:.4f} (last 5)")
assert last < 0.1 * first
weights_ok = np.allclose(history["weights"].sum(axis=1), 1.0, atol=1e-5)
assert weights_ok

# %% 4. Other targets: does alpha find each one?
section("4. Other targets: does alpha find each one?")
targets = [p for p in PRIMITIVES if p not in ("none", TARGET)]
if FAST:
    targets = ["skip_connect", "dil_conv_3x3"]
results = {TARGET: final}
print(f"{'target':>13} | winner        | its weight | second")
for target in targets:
    w = search(target, STEPS)["weights"][-1]
    results[target] = w
    order = np.argsort(w)[::-1]
    print(
        f"{target:>13} | {PRIMITIVES[order[0]]:<13} | {w[order[0]]:10.3f} | "
        f"{PRIMITIVES[order[1]]} {w[order[1]]:.3f}"
    )
    assert PRIMITIVES[order[0]] == target, (target, w)
print("every target wins, the convolutions too, though the student's kernels started")
print("elsewhere than the teacher's")

# %% 5. The lower level matters: alpha alone, with the weights never trained
section("5. The lower level matters: alpha alone, with the weights never trained")
frozen_run = search("dil_conv_3x3", STEPS, w_lr=0.0)["weights"][-1]
winner = PRIMITIVES[int(frozen_run.argmax())]
print(f"target dil_conv_3x3, weight steps with lr 0: {winner} wins with {frozen_run.max():.3f}")
frozen_dil = frozen_run[PRIMITIVES.index("dil_conv_3x3")]
print(f"(dil_conv_3x3 gets {frozen_dil:.3f}). With random kernels no convolution resembles the")
print("teacher's, and the best the mixture can do is predict 0 (the targets end in a batch")
print("norm: mean 0): 'none'. An operation is only as good as its trained weights, which is")
print("why the architecture is judged at w*(alpha), eq. (3)")
assert winner == "none", frozen_run

# %% 6. Why validation data: alpha learned on the training split instead
section("6. Why validation data: alpha learned on the training split instead")
# Targets made by avg_pool_3x3 (no weights) plus noise, only 4 images per split: an
# operation with many weights can fit part of the training noise, which no new image
# shares. Both runs train w on the training split; alpha learns from the validation split
# (DARTS) or from the training split (the same data as w). Same seeds, same data.
N_NOISY, SIGMA = 4, 1.5
OVERFIT_STEPS = 150
SEEDS = (0, 1) if FAST else (0, 1, 2)
noisy_target = "avg_pool_3x3"
k_noisy = PRIMITIVES.index(noisy_target)
n_weights = np.array([op_param_count(name, C, 1) for name in PRIMITIVES])
heavy = PRIMITIVES[int(n_weights.argmax())]
has_weights = n_weights > 0
print(
    f"weights per operation at C = {C}: "
    + ", ".join(f"{p} {n}" for p, n in zip(PRIMITIVES, n_weights))
)
print(f"{N_NOISY} images per split, targets {noisy_target}(x) + {SIGMA} * noise,", end=" ")
print(f"{OVERFIT_STEPS} steps")
print("seed | alpha on | largest weight      | on ops with weights | L_train | L_val |", end=" ")
print("noise^2 (train, val)")
overfit = {"val": [], "train": []}
for seed in SEEDS:
    for split in ("val", "train"):
        problem = NoisyProblem(noisy_target, seed, N_NOISY, SIGMA)
        run = search(noisy_target, OVERFIT_STEPS, problem=problem, alpha_split=split)
        w = run["weights"][-1]
        with md.no_grad():
            losses = {
                s: mse(run["student"](x, md.tensor(w)), y).item()
                for s, (x, y) in problem.data.items()
            }
        overfit[split].append(dict(weights=w, noise=problem.noise_power, **losses))
        print(
            f"{seed:4d} | {split:>8} | {PRIMITIVES[int(w.argmax())]:13s} {w.max():.3f} | "
            f"{w[has_weights].sum():19.3f} | {losses['train']:7.3f} | {losses['val']:5.3f} | "
            f"{problem.noise_power['train']:.3f}, {problem.noise_power['val']:.3f}"
        )
for on_val, on_train in zip(overfit["val"], overfit["train"]):
    # alpha on validation data keeps the operation that made the targets...
    assert on_val["weights"].argmax() == k_noisy and on_val["weights"][k_noisy] > 0.8, on_val
    assert on_val["weights"][has_weights].sum() < 0.15, on_val
    # ...alpha on training data moves to the operations with weights, the heaviest first,
    assert on_train["weights"][has_weights].sum() > 0.4, on_train
    heaviest_share = on_train["weights"][PRIMITIVES.index(heavy)]
    assert heaviest_share == on_train["weights"][has_weights].max(), on_train
    # ...and fits the training noise: below the error of the true operation on the
    # training images, above it on new ones; a wider gap than alpha on validation data
    assert on_train["train"] < on_train["noise"]["train"] < on_train["val"], on_train
    gap_train = on_train["val"] - on_train["train"]
    gap_val = on_val["val"] - on_val["train"]
    assert gap_train > gap_val, (gap_train, gap_val)
mean_gap = {s: np.mean([r["val"] - r["train"] for r in overfit[s]]) for s in overfit}
print(f"mean L_val - L_train over the seeds: alpha on val {mean_gap['val']:+.3f}, alpha on train")
print(f"{mean_gap['train']:+.3f}. On the training split alpha rewards what fits the training")
print(f"set best: the operations with weights, the heaviest ({heavy}, {n_weights.max()}) most,")
print("which fit noise below the true operation's own error there and pay for it on new")
print("images. Validation data, which w never saw, keeps the operation that generalises")

# %% 7. Figures
section("7. Figures")
FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
steps = np.arange(len(history["weights"]))
for o, name in enumerate(PRIMITIVES):
    lw = 2.5 if name == TARGET else 1.2
    ax1.plot(steps, history["weights"][:, o], color=OP_COLORS[name], lw=lw, label=name)
ax1.axhline(1 / len(PRIMITIVES), color="gray", ls=":", lw=0.8)
ax1.set(xlabel="step (one alpha step + one weight step)", ylabel="softmax(alpha)")
ax1.set_title(f"target {TARGET}: alpha finds it", fontsize=10)
ax1.legend(fontsize=7)
ax2.semilogy(steps[1:], history["val"], label="L_val (alpha steps)")
ax2.semilogy(steps[1:], history["train"], label="L_train (weight steps)", alpha=0.7)
ax2.set(xlabel="step", ylabel="mean squared error")
ax2.set_title("the two levels' losses", fontsize=10)
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(FIG_DIR / "alpha_trajectories.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'alpha_trajectories.png').relative_to(ROOT)}")

results["dil_conv_3x3, w not trained"] = frozen_run
names = list(results)
fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(names) + 1.6))
grid = np.array([results[n] for n in names])
image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(len(PRIMITIVES)))
ax.set_xticklabels(PRIMITIVES, rotation=40, ha="right", fontsize=8)
ax.set_yticks(range(len(names)))
ax.set_yticklabels([f"target {n}" for n in names], fontsize=8)
ax.axhline(len(names) - 1.5, color="w", lw=2)  # the last row: section 5
for r, row in enumerate(grid):
    for c, v in enumerate(row):
        ax.text(
            c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.5 else "k"
        )
fig.colorbar(image, ax=ax, label="final softmax(alpha)")
ax.set_title(f"after {STEPS} bilevel steps, one search per target", fontsize=10)
fig.tight_layout()
fig.savefig(FIG_DIR / "final_weights.png", dpi=110)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'final_weights.png').relative_to(ROOT)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 6, set SIGMA = 0. Expect both runs to keep avg_pool_3x3, with the training split
#    no different from the validation split: without noise there is nothing to memorise, and the
#    assert that alpha moves to the operations with weights fails.
#
# 2. In section 6, set N_NOISY = 32. Expect the training split's alpha to keep avg_pool_3x3 as
#    well, with only a little more weight on the convolutions than the validation split's, and
#    the train-validation gap almost closed: the same weights cannot memorise eight times as much
#    noise.
#
# 3. Set ALPHA_LR = 3e-4 (DARTS's own rate). Expect softmax(alpha) to stay close to 1/8 after the
#    150 steps of section 3, so its asserts fail: DARTS runs tens of thousands of steps.

# %%
print("\nlesson 08: all checks passed")
