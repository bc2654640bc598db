"""The report of `experiment pareto` (pareto.py): the table, the Pareto figure,
the hypervolumes, the search wall times, and the issue's targets checked.

Hypervolume. Each retrained cell is a point in the objective space

    (cell weights / weights of the richest cell of the space,  test error)

both to be minimised. A family's hypervolume is the area dominated by its points
and bounded by the reference point r = (1.0, 0.10): every cell no heavier than the
richest one and no worse than 90% test accuracy counts. With the non-dominated
points sorted by weight, x_1 < ... < x_m (so errors y_1 > ... > y_m),

    HV = sum_i (x_{i+1} - x_i) * (r_y - y_i),    x_{m+1} = r_x.

Larger is better: a family with light cells of low error covers more.
"""

import csv
import json
import os
import statistics

from ..darts.genotype import genotype_from_dict, genotype_to_str
from .sweep import cell_key, format_spearman, spearman

REFERENCE = (1.0, 0.10)
FAMILIES = ("hypernet", "penalty", "darts", "random")
TITLES = {
    "hypernet": "hypernet (one search, eq. 5)",
    "penalty": "DARTS + fixed penalty (one search per lambda)",
    "darts": "plain DARTS",
    "random": "random cells",
}
COLORS = {"hypernet": "tab:red", "penalty": "tab:blue", "darts": "tab:green", "random": "0.55"}


def pareto_front(points):
    """The non-dominated points of [(x, y)], both minimised, sorted by x."""
    front = []
    for x, y in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def hypervolume(points, reference=REFERENCE):
    """The area dominated by `points` (x, y: both minimised) inside the box below
    `reference` (the module docstring's formula). 0 for no point inside."""
    rx, ry = reference
    front = pareto_front([(x, y) for x, y in points if x < rx and y < ry])
    area = 0.0
    for i, (x, y) in enumerate(front):
        next_x = front[i + 1][0] if i + 1 < len(front) else rx
        area += (next_x - x) * (ry - y)
    return area


def best_searched_cell(cells):
    """The cell to retrain longer, chosen without the test images: of seed 0's
    searched cells (not the random ones), the one whose supernetwork had the highest
    validation accuracy."""
    searched = [c for c in cells if c[0] == 0 and c[1] != "random" and c[3]]
    if not searched:
        return None
    return max(searched, key=lambda c: max(r["val_acc"] for r in c[3]))


def _fmt(v, pattern):
    return "-" if v is None else pattern.format(v)


def table_rows(cells, trained):
    """One row per (family, seed, lambda): a hypernet cell once per lambda it covers."""
    rows = []
    for seed, family, label, lambdas, genotype in cells:
        summary = trained.get(f"retrain seed {seed} {label}")
        test_acc = summary["test_acc"] if summary else None
        base = dict(
            family=family,
            seed=seed,
            cell=label,
            test_acc=test_acc,
            network_params=summary["params"] if summary else None,
            genotype=genotype_to_str(genotype_from_dict(genotype)),
        )
        for r in lambdas or [{}]:
            rows.append(
                dict(
                    base,
                    **{"lambda": r.get("lambda"), "supernet_val_acc": r.get("val_acc")},
                )
            )
    return rows


def _with_weights(rows, cells, complexity):
    weights = {
        (seed, label): complexity.genotype_params(genotype_from_dict(g))
        for seed, _, label, _, g in cells
    }
    for r in rows:
        r["cell_weights"] = weights[(r["seed"], r["cell"])]
    return rows


def family_points(rows, richest):
    """{(family, seed): [(weights / richest, test error)]}, one point per cell."""
    points = {}
    seen = set()
    for r in rows:
        if r["test_acc"] is None or (r["seed"], r["cell"]) in seen:
            continue
        seen.add((r["seed"], r["cell"]))
        points.setdefault((r["family"], r["seed"]), []).append(
            (r["cell_weights"] / richest, 1.0 - r["test_acc"])
        )
    return points


def write_table(rows, root):
    """table.csv and table.md; returns their paths."""
    keys = [
        "family",
        "seed",
        "lambda",
        "cell",
        "cell_weights",
        "supernet_val_acc",
        "test_acc",
        "network_params",
        "genotype",
    ]
    csv_path = os.path.join(root, "table.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in keys})
    lines = [
        "| family | seed | lambda | cell | cell weights | supernet val acc, % | "
        "retrained test acc, % |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        supernet, test = (
            None if v is None else 100 * v for v in (r["supernet_val_acc"], r["test_acc"])
        )
        lines.append(
            f"| {r['family']} | {r['seed']} | {_fmt(r['lambda'], '{:.3g}')} | {r['cell']} | "
            f"{r['cell_weights']} | {_fmt(supernet, '{:.2f}')} | {_fmt(test, '{:.2f}')} |"
        )
    md_path = os.path.join(root, "table.md")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [csv_path, md_path]


def plot_pareto(points, hv, richest, path):
    """Cell weights against retrained test accuracy, each family in its colour with
    its front (all seeds pooled) drawn; beside it, each family's hypervolume."""
    from .plots import plt  # matplotlib only when a figure is drawn

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2.2, 1]})
    markers = "os^Dv<>p"
    for family in FAMILIES:
        pooled = []
        for (fam, seed), pts in sorted(points.items()):
            if fam != family:
                continue
            pooled += pts
            ax.scatter(
                [x * richest for x, _ in pts],
                [100 * (1 - y) for _, y in pts],
                color=COLORS[family],
                marker=markers[seed % len(markers)],
                s=28,
                alpha=0.8,
                label=TITLES[family] if seed == 0 else None,
            )
        front = pareto_front(pooled)
        if len(front) > 1:
            ax.step(
                [x * richest for x, _ in front],
                [100 * (1 - y) for _, y in front],
                where="post",
                color=COLORS[family],
                lw=1.5,
            )
    ax.set(
        xlabel="cell weights of the derived cell (search network, C = 8)",
        ylabel="retrained test accuracy, %",
        title="every cell retrained with one protocol (marker: seed)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    names = [f for f in FAMILIES if f in hv]
    means = [statistics.mean(hv[f].values()) for f in names]
    spreads = [statistics.stdev(hv[f].values()) if len(hv[f]) > 1 else 0.0 for f in names]
    bx.bar(
        range(len(names)),
        means,
        yerr=spreads,
        color=[COLORS[f] for f in names],
        capsize=4,
    )
    for i, f in enumerate(names):
        bx.scatter([i] * len(hv[f]), list(hv[f].values()), color="k", s=10, zorder=3)
    bx.set_xticks(range(len(names)), names)
    bx.set(
        ylabel=f"hypervolume, reference {REFERENCE}",
        title="hypervolume per seed (dots), mean +- sd",
    )
    bx.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean_sd(values):
    values = list(values)
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def write_report(
    root, cells, trained, found, swept, failed, complexity, richest, penalties, lr, scale, long
):
    """Write table.csv/md, pareto.png, results.json and report.md (hypervolumes,
    wall times, targets); returns report.md's path."""
    rows = _with_weights(table_rows(cells, trained), cells, complexity)
    paths = write_table(rows, root)
    seeds = sorted({c[0] for c in cells})
    points = family_points(rows, richest)
    hv = {}
    for (family, seed), pts in points.items():
        hv.setdefault(family, {})[seed] = hypervolume(pts)
    paths.append(plot_pareto(points, hv, richest, os.path.join(root, "pareto.png")))

    k = len(penalties)
    lines = [
        f"# experiment pareto, scale {scale:g}",
        "",
        f"Retraining protocol: `train`'s network (2 reduction cells, C = 8), 1 epoch of "
        f"{round(60000 * scale)} training images, lr {lr:g} (chosen on held-out training "
        f"images, lr/lr.json), cosine to 0; test accuracy read once at the end. Richest cell "
        f"of the space: {richest} weights. Penalties: "
        + ", ".join(f"{p:.3g}" for p in penalties)
        + ".",
        "",
        "## Hypervolume (objective space: cell weights / richest, test error; "
        f"reference {REFERENCE})",
        "",
        "| family | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- sd |",
        "|---|" + "---:|" * (len(seeds) + 1),
    ]
    for family in FAMILIES:
        if family in hv:
            lines.append(
                f"| {family} | "
                + " | ".join(_fmt(hv[family].get(s), "{:.4f}") for s in seeds)
                + f" | {_mean_sd(hv[family].values())} |"
            )
    lines += [
        "",
        "## Search wall time per seed (each search alone in its worker process)",
        "",
        "| seed | hypernet search | its sweep | K = "
        f"{k} penalised searches | plain DARTS | hypernet / penalised |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    times = {}
    for s in seeds:
        hyper = found.get(f"search seed {s} hypernet", {}).get("seconds")
        sweep = (swept.get(f"sweep seed {s}") or {}).get("seconds")
        pen = [
            found[f"search seed {s} penalty_{p:.3g}"]["seconds"]
            for p in penalties
            if f"search seed {s} penalty_{p:.3g}" in found
        ]
        pen_total = sum(pen) if len(pen) == k else None
        plain = found.get(f"search seed {s} darts", {}).get("seconds")
        ratio = (hyper + (sweep or 0)) / pen_total if hyper and pen_total else None
        times[s] = dict(hypernet=hyper, sweep=sweep, penalty=pen_total, darts=plain, ratio=ratio)
        lines.append(
            f"| {s} | {_fmt(hyper, '{:.0f} s')} | {_fmt(sweep, '{:.0f} s')} | "
            f"{_fmt(pen_total, '{:.0f} s')} | {_fmt(plain, '{:.0f} s')} | "
            f"{_fmt(ratio, '{:.2f}')} |"
        )

    # the targets of the issue, each checked on every seed
    checks = []
    for s in seeds:
        sweep = swept.get(f"sweep seed {s}")
        if not sweep:
            checks.append(f"- seed {s}: no sweep (the hypernet search failed)")
            continue
        srows = sweep["rows"]
        first = min(srows, key=lambda r: r["lambda"])
        rho = spearman([r["lambda"] for r in srows], [r["genotype_params"] for r in srows])
        distinct = len({cell_key(r["genotype"], complexity.kinds) for r in srows})
        checks += [
            f"- seed {s}: supernetwork at the smallest lambda {100 * first['val_acc']:.2f}% "
            f"(target >= 97%: {'reached' if first['val_acc'] >= 0.97 else 'missed'})",
            f"- seed {s}: Spearman(lambda, cell weights) {format_spearman(rho)}, "
            f"{distinct} distinct cells (target <= -0.9 and >= 4: "
            f"{'reached' if rho <= -0.9 and distinct >= 4 else 'missed'})",
        ]
    for s in seeds:
        h, p, r = (hv.get(f, {}).get(s) for f in ("hypernet", "penalty", "random"))
        if None in (h, p, r):
            continue
        checks.append(
            f"- seed {s}: hypervolume hypernet {h:.4f}, penalised {p:.4f}, random {r:.4f} "
            f"(hypernet >= penalised: {'yes' if h >= p else 'no'}; both above random: "
            f"{'yes' if min(h, p) > r else 'no'}); search time ratio "
            f"{_fmt(times[s]['ratio'], '{:.2f}')} (1/K = {1 / k:.2f})"
        )
    long_cell, long_summary, long_epochs = long
    if long_cell is not None:
        acc = long_summary["test_acc"] if long_summary else None
        checks.append(
            f"- the best searched cell by supernetwork validation accuracy ({long_cell[1]} "
            f"{long_cell[2]}, seed 0) retrained {long_epochs} epochs: "
            + (
                f"{100 * acc:.2f}% test accuracy (target >= 99.3%: "
                f"{'reached' if acc >= 0.993 else 'missed'})"
                if acc is not None
                else "failed"
            )
        )
    if failed:
        checks += ["", "Failed sub-runs (the others went on):"]
        checks += [f"- {label}: {error}" for label, error in sorted(failed.items())]
    lines += ["", "## Targets", "", *checks, "", "## Table", ""]
    with open(paths[1]) as f:
        lines.append(f.read())
    report = os.path.join(root, "report.md")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    results = dict(
        rows=rows,
        hypervolume={f: {str(s): v for s, v in d.items()} for f, d in hv.items()},
        times={str(s): t for s, t in times.items()},
        failed=failed,
        lr=lr,
        scale=scale,
        richest=richest,
    )
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return report


__all__ = ["hypervolume", "pareto_front", "write_report"]
