"""The lambda sweep: one finished hypernet search, a whole family of architectures.

The point of the hypernetwork (eq. 4-5) is that after one search, any lambda
gives an architecture alpha(lambda) with no further training. `sweep` walks a
list of lambdas through a finished search and reports, for each:

    the derived genotype, by the run's rule (the expected-cost rule for a hypernet
        search, genotype.py) and by DARTS's rule beside it
    their cell weights (the kept operations of the search network's cells)
    the expected complexity of alpha(lambda) (complexity.py, in [0, 1])
    the supernetwork's validation loss and accuracy at alpha(lambda), batch norm
        recalibrated at alpha(lambda) first (evaluate.recalibrated_batch_norm)

and writes RUN/sweep/: sweep.csv, sweep.md, pareto.png (accuracy against
weights), complexity.png (complexity and weights against lambda), cells.png
(the reduction cells side by side) and one genotype_lambda_*.json per lambda. The
rank correlation between lambda and the weight count says whether lambda really
controls the complexity.

sweep.md says what it read: the checkpoint's epoch of the run's epochs, the lambdas
outside the trained range (alpha there never trained), distinct cells over the cell
types the network has (a one-cell search's normal half is untrained; its genotype
files mark it unused). A search still running (its lock held) is refused.
"""

import csv
import json
import math
import os

from ..darts.genotype import genotype_from_dict, genotype_to_str, save_genotype, unused_marker

RANGE_TOLERANCE = 1e-6  # a lambda typed as the range's end (or one rounding off) is in it


def log_spaced(lo, hi, n):
    """n values from lo to hi, evenly spaced in log10."""
    if n == 1:
        return [lo]
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (n - 1)) for i in range(n)]


def _ranks(values):
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x, y):
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties
    averaged). NaN when either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return float("nan")
    return cov / math.sqrt(vx * vy)


def format_spearman(rho):
    """rho to 3 decimals; 'n/a' where it is undefined (NaN: a side holds one value, e.g.
    every lambda gave the same cell), which a report must not print as nan."""
    return "n/a (one value on a side)" if math.isnan(rho) else f"{rho:.3f}"


def cell_key(genotype, kinds):
    """What makes two genotypes different cells: the halves of the cell types the
    search network has (with one reduction cell, the normal half comes from an alpha
    that was never trained, and is ignored)."""
    return json.dumps({k: genotype[k] for k in kinds}, sort_keys=True)


def check_hypernet(search):
    """Refuse a search without a hypernetwork: it has one architecture, not a family."""
    if search.hypernet is None:
        raise ValueError(
            f"{search.folder} is not a hypernet search (hypernet = None): a sweep needs "
            "`python -m minidarts search --hypernet linear|mlp`"
        )


def outside_range(lambdas, lo, hi):
    """The lambdas outside the trained [lo, hi]: the search never drew them, so
    alpha(lambda) there is extrapolated from the range (the piecewise hypernetwork
    holds its end pivot), never trained at."""
    return [
        lam
        for lam in lambdas
        if not lo * (1 - RANGE_TOLERANCE) <= lam <= hi * (1 + RANGE_TOLERANCE)
    ]


def sweep(search, lambdas, log=print):
    """Evaluate a finished hypernet Search at each lambda; returns a list of rows.
    Each row holds the search's architecture record at its lambda, plus 'lambda',
    'genotype_str', 'extrapolated' (outside the trained range; one note line names
    them all) and 'cell_kinds' (the halves of its genotype that were trained)."""
    check_hypernet(search)
    lo, hi = search.cfg.lambda_min, search.cfg.lambda_max
    outside = outside_range(lambdas, lo, hi)
    if outside:
        log(
            f"note: lambda {', '.join(f'{v:g}' for v in outside)} outside the trained range "
            f"[{lo:g}, {hi:g}]: alpha(lambda) there is extrapolated, never trained "
            "(marked in sweep.md)"
        )
    kinds = list(search.model.cell_kinds())
    rows = []
    for lam in lambdas:
        record = search.architecture_record(lam)
        record["lambda"] = lam
        record["genotype_str"] = genotype_to_str(search.genotype(lam))
        record["extrapolated"] = lam in outside
        record["cell_kinds"] = kinds
        rows.append(record)
        log(
            f"lambda {lam:9.3g} | val acc {record['val_acc']:.4f} | complexity "
            f"{record['complexity']:.4f} | cell weights {record['genotype_params']:6d} "
            f"({record['genotype_rule']} rule), {record['darts_genotype_params']:6d} (DARTS rule)"
        )
    return rows


def summary(rows, key="genotype_params", kinds=None):
    """Spearman(lambda, cell weights), the ratio of the largest to the smallest count
    and the number of distinct cells, for the cells of `key` ('genotype_params': the
    run's rule, 'darts_genotype_params': DARTS's rule). Distinct cells are counted over
    the cell types `kinds` (None: the rows' 'cell_kinds', else their halves): a one-cell
    search's untrained normal half would count noise as cells."""
    params = [r[key] for r in rows]
    lams = [r["lambda"] for r in rows]
    span = max(params) / min(params) if min(params) > 0 else float("inf")
    genotypes = [r[key.replace("_params", "")] for r in rows]
    kinds = _row_kinds(rows, key.replace("_params", "")) if kinds is None else kinds
    cells = {cell_key(g, kinds) for g in genotypes}
    return {"spearman": spearman(lams, params), "span": span, "distinct": len(cells)}


def _row_kinds(rows, key="genotype"):
    """The cell types the rows' search network has (sweep's 'cell_kinds'); for rows
    made without them (a caller's own), the halves their genotypes hold."""
    return rows[0].get("cell_kinds") or [k for k in ("normal", "reduce") if k in rows[0][key]]


def checkpoint_info(search):
    """What the sweep read: the checkpoint's epoch of the run's epochs and the lambda
    range the hypernetwork was trained on (sweep.md's first line)."""
    return {
        "epoch": search.epoch,
        "epochs": search.cfg.epochs,
        "lambda_min": search.cfg.lambda_min,
        "lambda_max": search.cfg.lambda_max,
    }


def describe_checkpoint(info, folder=None):
    """One line on the checkpoint a sweep reads (checkpoint_info): its epoch of the
    run's epochs and the trained lambda range, and, for a search stopped before its
    last epoch, that the numbers are an intermediate epoch's."""
    line = (
        f"checkpoint of {folder or 'the search'}: epoch {info['epoch']} of {info['epochs']} "
        f"(lambda trained over [{info['lambda_min']:g}, {info['lambda_max']:g}])"
    )
    if info["epoch"] < info["epochs"]:
        line += (
            f"; the search is unfinished: the sweep gives the architectures of epoch "
            f"{info['epoch']}, not the search's result (search --resume {folder or 'RUN'} "
            "finishes it)"
        )
    return line


def _counted_over(rows):
    """'' where the distinct cells are whole genotypes; else which half they count."""
    unused = unused_marker(_row_kinds(rows)).get("unused")
    if not unused:
        return ""
    name = {"normal": "normal", "reduce": "reduction"}
    counted = [name[k] for k in ("normal", "reduce") if k not in unused]
    return f" ({' and '.join(counted)} only: the {name[unused[0]]} cell is untrained)"


def genotype_path(folder, lam):
    """Where the sweep saves the genotype at `lam`: folder/genotype_lambda_1e-04.json."""
    return os.path.join(folder, f"genotype_lambda_{lam:.3g}.json")


def write_tables(rows, folder, checkpoint=None, run=None):
    """sweep.csv, sweep.md and one genotype_lambda_*.json per row in `folder`; returns
    the paths of the two tables. checkpoint: checkpoint_info() of the search swept
    (in `run`), for sweep.md's first line. Each genotype file marks the halves the
    search network lacked as unused, as the search's genotype.json does, so that
    `train` refuses to build cells from them."""
    os.makedirs(folder, exist_ok=True)
    csv_path = os.path.join(folder, "sweep.csv")
    keys = [
        "lambda",
        "val_acc",
        "val_loss",
        "complexity",
        "decidedness",
        "genotype_rule",
        "genotype_params",
        "darts_genotype_params",
        "genotype_str",
    ]
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for r in rows:
            writer.writerow([r[k] for k in keys])
    marker = unused_marker(_row_kinds(rows))
    for r in rows:  # each architecture of the family, ready for `minidarts train`
        path = genotype_path(folder, r["lambda"])
        save_genotype(genotype_from_dict(r["genotype"]), path, marker)
    rule = rows[0]["genotype_rule"]
    md_path = os.path.join(folder, "sweep.md")
    with open(md_path, "w") as f:
        if checkpoint is not None:
            f.write(f"Swept from the {describe_checkpoint(checkpoint, run)}.\n\n")
        f.write(
            f"| lambda | val acc, % | complexity | cell weights ({rule} rule) | "
            "cell weights (DARTS rule) | reduction cell |\n"
        )
        f.write("|---:|---:|---:|---:|---:|---|\n")
        for r in rows:
            cell = ", ".join(f"{op}<-{i}" for op, i in r["genotype"]["reduce"])
            lam = f"{r['lambda']:.3g}" + (" (extrapolated)" if r.get("extrapolated") else "")
            f.write(
                f"| {lam} | {100 * r['val_acc']:.2f} | {r['complexity']:.4f} | "
                f"{r['genotype_params']} | {r['darts_genotype_params']} | {cell} |\n"
            )
        if any(r.get("extrapolated") for r in rows):
            f.write(
                "\n(extrapolated): outside the lambda range the search trained on; "
                "alpha(lambda) there was never trained.\n"
            )
        for name, key in (
            (f"{rule} rule", "genotype_params"),
            ("DARTS rule", "darts_genotype_params"),
        ):
            stats = summary(rows, key)
            f.write(
                f"\n{name}: Spearman(lambda, cell weights) {format_spearman(stats['spearman'])}, "
                f"{stats['distinct']} distinct cells{_counted_over(rows)}, largest / smallest "
                f"weight count {stats['span']:.2f}\n"
            )
    return [csv_path, md_path]


def plot_sweep(rows, folder, kinds=("reduce",)):
    """pareto.png, complexity.png and cells.png in `folder`; returns their paths."""
    from . import plots

    plt = plots.plt
    lams = [r["lambda"] for r in rows]
    params = [r["genotype_params"] for r in rows]
    accs = [100 * r["val_acc"] for r in rows]
    paths = []

    fig, ax = plt.subplots(figsize=(5.5, 4))
    sc = ax.scatter(params, accs, c=[math.log10(v) for v in lams], cmap="viridis", s=50)
    # one label per distinct weight count (several lambdas often share a cell), naming
    # its lambda range; labels alternate above and below so that neighbours stay apart
    # (and those in the right half of the plot point left, to stay inside the axes)
    groups = {}
    for p, a, lam in zip(params, accs, lams):
        groups.setdefault(p, []).append((lam, a))
    middle = (min(params) + max(params)) / 2
    for k, (p, members) in enumerate(sorted(groups.items())):
        lo, hi = min(m[0] for m in members), max(m[0] for m in members)
        text = f"lambda {lo:.0e}" if lo == hi else f"lambda {lo:.0e}..{hi:.0e}"
        top = max(m[1] for m in members)
        left = p > middle
        ax.annotate(
            text,
            (p, top),
            textcoords="offset points",
            xytext=(-6 if left else 6, 7 if k % 2 == 0 else -13),
            ha="right" if left else "left",
            fontsize=7,
        )
    ax.margins(x=0.08, y=0.12)
    front = _pareto_front(params, accs)
    ax.plot(
        [params[i] for i in front],
        [accs[i] for i in front],
        "--",
        color="#d62728",
        lw=1,
        label="Pareto front",
    )
    ax.set(
        xlabel="cell weights of the derived architecture",
        ylabel="supernetwork validation accuracy, %",
        title="one hypernet search, every lambda",
    )
    fig.colorbar(sc, ax=ax, label="log10 lambda")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(folder, "pareto.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax1 = plt.subplots(figsize=(5.5, 4))
    ax1.semilogx(lams, [r["complexity"] for r in rows], "o-", color="#1f77b4")
    ax1.set(xlabel="lambda", ylabel="expected complexity (0..1)")
    ax1.tick_params(axis="y", colors="#1f77b4")
    ax2 = ax1.twinx()
    rule = rows[0].get("genotype_rule", "darts")
    ax2.semilogx(lams, params, "s--", color="#ff7f0e", label=f"{rule} rule")
    if "darts_genotype_params" in rows[0] and rule != "darts":
        darts_params = [r["darts_genotype_params"] for r in rows]
        ax2.semilogx(lams, darts_params, "x:", color="#7f7f7f", label="DARTS rule")
    ax2.legend(fontsize=8, loc="upper right")
    ax2.set_ylabel("cell weights of the derived genotype")
    ax2.tick_params(axis="y", colors="#ff7f0e")
    ax1.set_title("complexity against lambda")
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(os.path.join(folder, "complexity.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    kind = kinds[-1]
    cols = min(3, len(rows))
    rows_n = math.ceil(len(rows) / cols)
    steps = len(rows[0]["genotype"]["reduce"]) // 2
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(cols * (1.6 * steps + 2.6), rows_n * 3.2), squeeze=False
    )
    for ax, r in zip(axes.flat, rows):
        g = genotype_from_dict(r["genotype"])
        gene, concat = (
            (g.reduce, g.reduce_concat) if kind == "reduce" else (g.normal, g.normal_concat)
        )
        plots.draw_cell(
            gene, concat, ax=ax, title=f"lambda {r['lambda']:.1e}: {r['genotype_params']} weights"
        )
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    paths.append(os.path.join(folder, "cells.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _pareto_front(params, accs):
    """Indices of the points no other point beats on both weights (fewer) and
    accuracy (higher), sorted by weights."""
    idx = sorted(range(len(params)), key=lambda i: (params[i], -accs[i]))
    front, best = [], -math.inf
    for i in idx:
        if accs[i] > best:
            front.append(i)
            best = accs[i]
    return front


def run_sweep(folder, lambdas=None, eval_batches=None, log=print, overwrite=False):
    """Load the search in `folder`, sweep it, write tables and plots to folder/sweep/.
    eval_batches: validation batches per lambda (None: the run's setting, 0: all).
    An existing folder/sweep/ is refused unless overwrite, which moves it aside to
    folder/sweep.old-N first. The sweep holds the run's lock (runfolder.RunLock): a
    search still running in `folder` holds it, and is refused (its checkpoint is an
    intermediate epoch's, replaced as it goes); nor can one start on it meanwhile. Every
    refusal comes before anything is created."""
    from .runfolder import RunLock

    if not os.path.exists(os.path.join(folder, "checkpoint.npz")):
        # checked before the lock, which would create the folder
        raise FileNotFoundError(
            f"sweep {folder}: no checkpoint.npz there; a sweep evaluates a finished "
            "hypernet search: give its run folder"
        )
    with RunLock(folder):
        return _sweep_run(folder, lambdas, eval_batches, log, overwrite)


def _sweep_run(folder, lambdas, eval_batches, log, overwrite):
    """run_sweep's work, under the run's lock."""
    from .runfolder import claim_folder
    from .search import Search

    try:
        search = Search.resume(folder, log=lambda *_: None, read_only=True)
    except (ValueError, FileNotFoundError) as e:  # worded for search --resume: not typed here
        prefix = f"--resume {folder}: "
        text = str(e)
        if not text.startswith(prefix):
            raise
        raise type(e)(f"sweep {folder}: {text[len(prefix) :]}") from None
    check_hypernet(search)  # before RUN/sweep/ is claimed: a refusal leaves no folder
    if eval_batches is not None:  # 0: the whole validation split (Search.eval_limit)
        search.cfg.eval_batches = eval_batches
    if lambdas is None:
        lambdas = log_spaced(search.cfg.lambda_min, search.cfg.lambda_max, 9)
    info = checkpoint_info(search)
    log(
        f"sweep: {folder} | epoch {info['epoch']}/{info['epochs']} | {len(lambdas)} lambdas "
        f"from {min(lambdas):g} to {max(lambdas):g}"
    )
    if info["epoch"] < info["epochs"]:
        log(f"note: sweeping the {describe_checkpoint(info, folder)}")
    out = os.path.join(folder, "sweep")
    claim_folder(out, overwrite, "sweep")
    rows = sweep(search, lambdas, log=log)
    paths = write_tables(rows, out, info, folder)
    paths += plot_sweep(rows, out, kinds=search.model.cell_kinds())
    for name, key in (
        (f"{rows[0]['genotype_rule']} rule", "genotype_params"),
        ("DARTS rule", "darts_genotype_params"),
    ):
        stats = summary(rows, key)
        log(
            f"{name}: Spearman(lambda, cell weights) = {format_spearman(stats['spearman'])} | "
            f"{stats['distinct']} distinct cells{_counted_over(rows)} | largest / smallest = "
            f"{stats['span']:.2f}"
        )
    log("wrote " + ", ".join(paths))
    return rows


__all__ = [
    "cell_key",
    "check_hypernet",
    "checkpoint_info",
    "describe_checkpoint",
    "format_spearman",
    "log_spaced",
    "outside_range",
    "run_sweep",
    "spearman",
    "sweep",
]
