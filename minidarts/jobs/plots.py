"""Pictures of a search: curves, how softmax(alpha) moved, and the found cell.

All functions write PNG files with matplotlib's non-interactive Agg backend (no
screen needed) and return their paths.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

# one colour per candidate operation, the same in every figure
OP_COLORS = {
    "none": "#bbbbbb",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "skip_connect": "#2ca02c",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#8c564b",
}


def _save_curves(fig, axes, path):
    """Grid, legend and whole-epoch ticks on each panel, then write the PNG."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(history, path):
    """Loss and accuracy per epoch: search-train, the architecture batches, validation."""
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (weight steps)")
    ax1.plot(epochs, [r["arch_loss"] for r in history], "s-", label="val (alpha steps)")
    ax1.plot(epochs, [r["val_loss"] for r in history], "^-", label="val (eval)")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train")
    ax2.plot(epochs, [100 * r["arch_acc"] for r in history], "s-", label="val (alpha steps)")
    ax2.plot(epochs, [100 * r["val_acc"] for r in history], "^-", label="val (eval)")
    ax2.set(xlabel="epoch", ylabel="accuracy, %", title="accuracy")
    return _save_curves(fig, (ax1, ax2), path)


def plot_train_curves(history, path, split="test"):
    """Loss and accuracy per epoch of a retraining run (train.py): the training
    batches (mean over the epoch, training mode) and the test set, or the held-out
    training images (split "holdout"), after each epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (during the epoch)")
    ax1.plot(epochs, [r[f"{split}_loss"] for r in history], "^-", label=split)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train")
    ax2.plot(epochs, [100 * r[f"{split}_acc"] for r in history], "^-", label=split)
    best = max(history, key=lambda r: r[f"{split}_acc"])
    ax2.annotate(
        f"{100 * best[f'{split}_acc']:.2f}%",
        (best["epoch"], 100 * best[f"{split}_acc"]),
        textcoords="offset points",
        xytext=(0, -14),
        ha="center",
        fontsize=8,
    )
    ax2.set(xlabel="epoch", ylabel="accuracy, %", title="accuracy")
    return _save_curves(fig, (ax1, ax2), path)


def plot_alpha_heatmaps(history, primitives, kind, path, steps=None):
    """softmax(alpha) of every edge of one cell type over the epochs: one panel per
    edge (operations down, epochs across), panels laid out by target node.

    The colours are centred on the uniform weight 1/|O| that every operation starts
    from: red gained weight, blue lost it."""
    per_epoch = [r["alpha"][kind] for r in history]  # epochs x edges x ops
    n_edges = len(per_epoch[0])
    if steps is None:  # n_edges = 2 + 3 + ... + (steps + 1)
        steps, total = 0, 0
        while total < n_edges:
            total += steps + 2
            steps += 1
    uniform = 1.0 / len(primitives)
    values = [w for epoch in per_epoch for edge in epoch for w in edge]
    spread = max(max(abs(w - uniform) for w in values), 1e-6)
    norm = TwoSlopeNorm(vcenter=uniform, vmin=max(uniform - spread, 0.0), vmax=uniform + spread)
    cols = steps + 1
    fig, axes = plt.subplots(
        steps,
        cols,
        figsize=(2.1 * cols + 1.5, 2.0 * steps + 0.8),
        squeeze=False,
        layout="constrained",
    )
    edge, image = 0, None
    first, last = history[0]["epoch"], history[-1]["epoch"]
    for node in range(steps):
        for col in range(cols):
            ax = axes[node][col]
            if col >= node + 2:
                ax.axis("off")
                continue
            grid = [
                [per_epoch[e][edge][o] for e in range(len(per_epoch))]
                for o in range(len(primitives))
            ]
            image = ax.imshow(
                grid, aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest"
            )
            source = ("c_{k-2}", "c_{k-1}")[col] if col < 2 else f"node {col - 2}"
            ax.set_title(f"{source} -> node {node}", fontsize=8)
            ax.set_yticks(range(len(primitives)))
            ax.set_yticklabels(primitives if col == 0 else [], fontsize=6)
            ax.set_xticks([0, len(per_epoch) - 1])
            ax.set_xticklabels([f"ep {first}", f"ep {last}"], fontsize=6)
            edge += 1
    fig.suptitle(
        f"softmax(alpha) of the {kind} cell, per edge: operations (rows) over epochs (columns)",
        fontsize=10,
    )
    bar = fig.colorbar(image, ax=axes, shrink=0.6)
    bar.set_label(f"weight (uniform = 1/{len(primitives)})", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_cell(gene, concat, path=None, title="cell", ax=None):
    """The discrete cell of a genotype as a diagram: inputs c_{k-2}, c_{k-1} on the
    left, intermediate nodes 0..N-1, the output c_{k} on the right; each kept edge
    an arrow labelled with its operation."""
    steps = len(gene) // 2
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(2.2 * steps + 3, 3.6))
    pos = {0: (0.0, 1.6), 1: (0.0, -0.2)}
    for j in range(steps):
        pos[j + 2] = (1.6 + 1.6 * j, 1.4 if j % 2 == 0 else 0.0)
    out = (1.6 + 1.6 * steps, 0.7)
    labels = {0: "c_{k-2}", 1: "c_{k-1}"}
    for j in range(steps):
        labels[j + 2] = str(j)
    for k, (op, i) in enumerate(gene):
        target = k // 2 + 2
        (x0, y0), (x1, y1) = pos[i], pos[target]
        color = OP_COLORS.get(op, "k")
        rad = 0.15 * (1 - 2 * (k % 2))  # the two edges of a node bend opposite ways
        arrow = dict(
            arrowstyle="->",
            color=color,
            lw=1.8,
            shrinkA=14,
            shrinkB=14,
            connectionstyle=f"arc3,rad={rad}",
        )
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=arrow)
        # arc3 puts the curve's control point rad * length off the chord (to the left);
        # the quadratic Bezier curve passes half as far off at its middle: label there.
        lx = (x0 + x1) / 2 + 0.5 * rad * (y1 - y0)
        ly = (y0 + y1) / 2 - 0.5 * rad * (x1 - x0)
        ax.text(
            lx,
            ly,
            op,
            fontsize=7,
            ha="center",
            va="center",
            color=color,
            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85),
        )
    for j in concat:
        (x0, y0) = pos[j]
        ax.annotate(
            "",
            xy=out,
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="->", color="#999999", lw=0.8, ls="--", shrinkA=14, shrinkB=14
            ),
        )
    for node, (x, y) in pos.items():
        color = "#cfe2f3" if node < 2 else "#fde9c9"
        ax.text(
            x,
            y,
            labels[node],
            ha="center",
            va="center",
            fontsize=9,
            bbox=dict(
                boxstyle="circle,pad=0.3" if node >= 2 else "round,pad=0.3", fc=color, ec="#555555"
            ),
        )
    ax.text(
        out[0],
        out[1],
        "c_{k}",
        ha="center",
        va="center",
        fontsize=9,
        bbox=dict(boxstyle="round,pad=0.3", fc="#d9ead3", ec="#555555"),
    )
    ax.set_xlim(-0.6, out[0] + 0.6)
    ax.set_ylim(-0.8, 2.2)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    return ax


def draw_genotype(genotype, path, title="", kinds=("normal", "reduce")):
    """The cells of a genotype, one above the other, in one PNG. `kinds` names the
    cell types the network really has (the paper's one-cell network has no normal
    cell, and its normal genotype is only the untrained initial alpha)."""
    steps = len(genotype.normal) // 2
    fig, axes = plt.subplots(
        len(kinds), 1, figsize=(2.2 * steps + 3, 3.5 * len(kinds)), squeeze=False
    )
    for ax, kind in zip(axes[:, 0], kinds):
        gene, concat = (
            (genotype.normal, genotype.normal_concat)
            if kind == "normal"
            else (genotype.reduce, genotype.reduce_concat)
        )
        name = "normal" if kind == "normal" else "reduction"
        draw_cell(gene, concat, ax=ax, title=f"{title} {name} cell".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_search(folder, history, primitives, genotype, kinds=("normal", "reduce")):
    """All plots of a search run into folder/plots/; returns their paths."""
    out = os.path.join(folder, "plots")
    os.makedirs(out, exist_ok=True)
    paths = [plot_curves(history, os.path.join(out, "curves.png"))]
    for kind in kinds:
        paths.append(
            plot_alpha_heatmaps(history, primitives, kind, os.path.join(out, f"alpha_{kind}.png"))
        )
    paths.append(draw_genotype(genotype, os.path.join(out, "genotype.png"), kinds=kinds))
    return paths
