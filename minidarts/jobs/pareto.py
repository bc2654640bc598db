"""The paper's claim, tested: one hypernet search gives a family of architectures
about as good as a dedicated penalised search per lambda, at 1/K of the cost.

`python -m minidarts experiment pareto` runs, for each seed, with the default
search budget (the CPU defaults of `search`, 188 steps each):

  hypernet  one search of alpha(lambda) = lambda b1 + b2 (eq. 5), lambda in
            [1e-2, 10]; its sweep (9 lambdas); every distinct cell it derives
  penalty   K penalised DARTS searches, L_val + lambda * complexity at a fixed
            lambda each (the paper's baseline), K lambdas log-spaced over the
            same range; each search as long as the hypernet search
  darts     plain DARTS (DARTS's derivation rule)
  random    R random cells of the same space (DARTS's rule: two inputs per node,
            no 'none'), spread evenly over the range of weight counts

and retrains every cell with one fixed protocol (retrain_config): the evaluation
network of `train` (2 reduction cells, C = 8), one epoch of the 60000 training
images (60000 * scale with --scale), SGD with DARTS's momentum, weight decay,
clip and a cosine, and a learning rate chosen once, before any family is
retrained, on 10000 held-out training images with a random cell (choose_lr).
The test images are read once, at the end of each retraining. Every family gets
the same seeds. Then pareto_report writes the table, the Pareto figure, the
hypervolumes and the wall times, and checks the targets of the issue.

Folders (an interrupted experiment continues where it stopped; the searches do
not depend on --scale and are shared by every scale):

    EXP/searches/seed0/{hypernet,penalty_0.01,...,darts}/   search run folders
    EXP/scale1/lr/lr_0.05/ ... lr.json                      the learning-rate choice
    EXP/scale1/seed0/{hypernet_1,penalty_0.01,darts,random_0,...}/  retrainings
    EXP/scale1/{table.csv,table.md,pareto.png,report.md,results.json}
"""

import json
import os
import time

from ..darts.genotype import PRIMITIVES, Genotype, genotype_from_dict, genotype_to_dict
from . import pool
from .config import make_config
from .progress import format_seconds
from .runfolder import check_experiment_folder, check_folder_name
from .sweep import cell_key, log_spaced

LAMBDA_RANGE = (1e-2, 10.0)  # the hypernet's default range (config.SearchConfig)
SWEEP_LAMBDAS = 9  # the sweep's default
LR_CANDIDATES = (0.025, 0.05, 0.1, 0.2)
HOLDOUT = 10000  # training images held out to choose the learning rate
LONG_EPOCHS = 10  # "the best cell retrained longer" (scale 1 only)


# --- the cells -------------------------------------------------------------------


def search_network_complexity(preset=None):
    """The Complexity of the search network (by default C = 8, one reduction cell):
    the yardstick every family's cell weights are counted with."""
    from ..darts.complexity import Complexity
    from ..darts.network import Network

    cfg = make_config(preset)
    net = Network(
        C=cfg.channels,
        layers=cfg.layers,
        steps=cfg.nodes,
        multiplier=cfg.multiplier,
        stem_multiplier=cfg.stem_multiplier,
        in_channels=1,
        seed=0,
    )
    return Complexity(net)


def richest_cell_params(complexity):
    """Weights of the richest discrete cell of the space: at every node, the two
    inputs whose heaviest operation is heaviest, each with that operation."""
    from ..darts.genotype import edge_index

    edge_of = edge_index(complexity.steps)
    total = 0
    for kind in complexity.kinds:
        table = complexity.cost_table[kind]
        for node in range(complexity.steps):
            heaviest = sorted(max(table[edge_of[(node, i)]]) for i in range(node + 2))
            total += sum(heaviest[-2:])
    return int(total)


def random_cell(rng, steps=4, primitives=PRIMITIVES):
    """One cell by DARTS's rule at random: each node takes two distinct inputs among
    the nodes before it, each with an operation other than 'none', uniformly."""
    ops = [p for p in primitives if p != "none"]
    gene = []
    for node in range(steps):
        inputs = rng.choice(node + 2, size=2, replace=False)
        for i in sorted(int(v) for v in inputs):
            gene.append((ops[int(rng.integers(len(ops)))], i))
    return gene


def random_genotypes(complexity, n, seed, pool_size=2000):
    """n random genotypes spread over the weight range: draw pool_size random cells
    (seeded), sort them by weight count, and take n at evenly spaced ranks (the
    lightest, the heaviest and n - 2 between). Returns [(weights, Genotype)]."""
    from ..engine import backend

    rng = backend.default_rng(10_000 + seed)
    concat = list(range(2, complexity.steps + 2))
    drawn = []
    for _ in range(pool_size):
        cell = random_cell(rng, complexity.steps, complexity.primitives)
        g = Genotype(normal=cell, normal_concat=concat, reduce=cell, reduce_concat=concat)
        drawn.append((complexity.genotype_params(g), g))
    drawn.sort(key=lambda t: t[0])
    picks = sorted({round(i * (pool_size - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [drawn[i] for i in picks]


# --- the plan --------------------------------------------------------------------


def penalty_lambdas(k):
    """The K fixed penalties of the baseline: log-spaced over the hypernet's range."""
    return log_spaced(*LAMBDA_RANGE, k)


def search_configs(folder, seed, k, preset=None):
    """(name, SearchConfig) of every search of one seed: the hypernet, the K
    penalised searches, plain DARTS. All at the default budget (or a preset's)."""
    common = dict(seed=seed, out=folder, plots=False, log_every=10)

    def make(extra):
        return make_config(preset, {**common, **extra})

    runs = [("hypernet", make({"name": "hypernet", "hypernet": "linear"}))]
    for lam in penalty_lambdas(k):
        name = f"penalty_{lam:.3g}"
        runs.append((name, make({"name": name, "penalty": lam})))
    runs.append(("darts", make({"name": "darts"})))
    return runs


def retrain_config(folder, name, seed, scale, lr, epochs=1, holdout=0, test_subset=None):
    """The one retraining protocol of every family: `train`'s default network (two
    reduction cells, C = 8, DARTS's SGD settings), `epochs` epochs of 60000 * scale
    training images at learning rate lr, cosine-annealed to 0. The run goes to
    folder/name, its genotype to folder/name/genotype.json."""
    from .train_config import make_train_config

    n = round((60000 - holdout) * scale)
    return make_train_config(
        None,
        dict(
            genotype=os.path.join(folder, name, "genotype.json"),
            subset=None if n >= 60000 - holdout and not holdout else n,
            epochs=epochs,
            lr=lr,
            seed=seed,
            holdout=holdout,
            test_subset=test_subset,
            out=folder,
            name=name,
            plots=False,
            log_every=200,
        ),
        source="experiment pareto",
    )


# --- the jobs (run in worker processes: top-level functions, plain arguments) ------


def _file_log(folder):
    path = os.path.join(folder, "log.txt")

    def log(line):
        os.makedirs(folder, exist_ok=True)
        with open(path, "a") as f:
            f.write(line + "\n")

    return log


def search_job(cfg_dict):
    """Run, continue or keep a search; returns its final record and wall time."""
    from .checkpoint import load_checkpoint
    from .search import Search

    cfg = make_config(None, cfg_dict, source="experiment pareto")
    folder = os.path.join(cfg.out, cfg.name)
    log = _file_log(folder)
    path = os.path.join(folder, "checkpoint.npz")
    if os.path.exists(path) and int(load_checkpoint(path)["epoch"]) >= cfg.epochs:
        pass  # finished earlier
    elif os.path.exists(path):
        Search.resume(folder, log=log).run()
    else:
        Search(cfg, folder=folder, log=log, overwrite=True).run()  # leftovers moved aside
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f if line.strip()]
    last = history[-1]
    return {
        "seconds": sum(r["seconds"] for r in history),
        "val_acc": last["val_acc"],
        "genotype": last["genotype"],
        "genotype_params": last["genotype_params"],
        "decidedness": last["decidedness"],
    }


def sweep_job(folder, n_lambdas):
    """The hypernet search's sweep (whole validation split), kept in sweep/rows.json."""
    from .sweep import run_sweep

    path = os.path.join(folder, "sweep", "rows.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    start = time.perf_counter()
    lambdas = log_spaced(*LAMBDA_RANGE, n_lambdas)
    rows = run_sweep(folder, lambdas, 0, log=_file_log(folder), overwrite=True)
    keep = ("lambda", "val_acc", "complexity", "genotype", "genotype_params", "decidedness")
    out = {
        "seconds": time.perf_counter() - start,
        "rows": [{k: r[k] for k in keep} for r in rows],
    }
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)
    return out


def train_job(cfg_dict, genotype_dict):
    """Retrain one cell (or keep a finished retraining); returns its summary."""
    from .checkpoint import load_checkpoint
    from .train import Train
    from .train_config import make_train_config

    cfg = make_train_config(None, cfg_dict, source="experiment pareto")
    folder = os.path.join(cfg.out, cfg.name)
    log = _file_log(folder)
    path = os.path.join(folder, "checkpoint.npz")
    if os.path.exists(path) and int(load_checkpoint(path)["epoch"]) >= cfg.epochs:
        pass
    elif os.path.exists(path):
        Train.resume(folder, log=log).run()
    else:
        genotype = genotype_from_dict(genotype_dict)  # run() saves it as cfg.genotype
        Train(cfg, folder=folder, log=log, genotype=genotype, overwrite=True).run()
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


# --- the experiment ----------------------------------------------------------------


def _phase(title, jobs, workers, log):
    log(f"--- {title}")
    return pool.run_jobs(jobs, workers, log)


def choose_lr(root, scale, workers, log, complexity, test_subset=None):
    """The learning rate of every retraining, chosen once: a random cell of median
    weight count (seed 0 of random_genotypes) trained for one epoch on the training
    images minus 10000 held out, at each of LR_CANDIDATES; the best held-out accuracy
    wins. The test images are not read."""
    path = os.path.join(root, "lr", "lr.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    cells = random_genotypes(complexity, 3, seed=0)
    weights, genotype = cells[1]  # the middle one
    jobs = []
    for lr in LR_CANDIDATES:
        name = f"lr_{lr:g}"
        folder = os.path.join(root, "lr")
        holdout = min(HOLDOUT, test_subset or HOLDOUT)
        cfg = retrain_config(folder, name, 0, scale, lr, holdout=holdout)
        jobs.append((f"lr {lr:g}", train_job, (cfg.to_dict(), genotype_to_dict(genotype))))
    results, failures = _phase("choosing the learning rate (held-out images)", jobs, workers, log)
    if failures:
        raise RuntimeError(f"the learning-rate choice failed: {failures}")
    accs = {lr: results[f"lr {lr:g}"]["holdout_acc"] for lr in LR_CANDIDATES}
    best = max(LR_CANDIDATES, key=lambda lr: accs[lr])
    choice = {
        "lr": best,
        "holdout_acc": {f"{lr:g}": a for lr, a in accs.items()},
        "cell_weights": weights,
        "genotype": genotype_to_dict(genotype),
    }
    with open(path, "w") as f:
        json.dump(choice, f, indent=1)
    log(
        "learning rate "
        + ", ".join(f"{lr:g}: {100 * a:.2f}%" for lr, a in accs.items())
        + f" held-out accuracy -> {best:g}"
    )
    return choice


def _distinct(rows, kinds):
    """The distinct cells of a sweep, in lambda order: [(genotype dict, [rows])]."""
    cells = {}
    for r in sorted(rows, key=lambda r: r["lambda"]):
        key = cell_key(r["genotype"], kinds)
        cells.setdefault(key, (r["genotype"], []))[1].append(r)
    return list(cells.values())


def run_pareto(
    scale=1.0,
    seeds=1,
    workers=None,
    penalties=4,
    random_cells=10,
    long_epochs=None,
    out="runs",
    name=None,
    log=print,
    search_preset=None,
    test_subset=None,
):
    """Run (or continue) the whole experiment; returns the report's folder.
    search_preset and test_subset shrink it for tests (`tiny`, a few test images)."""
    from . import pareto_report

    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be in (0, 1], got {scale}")
    if penalties < 2 or random_cells < 2 or seeds < 1:
        raise ValueError("need --penalties >= 2, --random-cells >= 2 and --seeds >= 1")
    workers = workers or pool.default_workers()
    long_epochs = (LONG_EPOCHS if scale == 1 else 0) if long_epochs is None else long_epochs
    if long_epochs < 0:  # checked here, not hours later where the retraining starts
        raise ValueError(f"--long-epochs must be 0 (none) or more, got {long_epochs}")
    if name is not None:
        name = check_folder_name(name, "experiment pareto", "--name")
    exp = os.path.join(out, name or "experiment-pareto")
    root = os.path.join(exp, f"scale{scale:g}")
    check_experiment_folder(exp)
    os.makedirs(root, exist_ok=True)
    start = time.perf_counter()
    log(
        f"experiment pareto: {exp} | seeds {list(range(seeds))} | hypernet + {penalties} "
        f"penalised + plain DARTS searches per seed, {random_cells} random cells | "
        f"retraining on {round(60000 * scale)} images | {workers} workers"
    )
    complexity = search_network_complexity(search_preset)
    lr = choose_lr(root, scale, workers, log, complexity, test_subset)["lr"]

    searches = {}
    jobs = []
    for seed in range(seeds):
        for run_name, cfg in search_configs(
            os.path.join(exp, "searches", f"seed{seed}"), seed, penalties, search_preset
        ):
            searches[(seed, run_name)] = cfg
            jobs.append((f"search seed {seed} {run_name}", search_job, (cfg.to_dict(),)))
    found, failed = _phase("searches", jobs, workers, log)
    jobs = [
        (f"sweep seed {seed}", sweep_job, (os.path.join(cfg.out, cfg.name), SWEEP_LAMBDAS))
        for (seed, run_name), cfg in searches.items()
        if run_name == "hypernet" and f"search seed {seed} hypernet" in found
    ]
    swept, failed_sweeps = _phase("sweeps of the hypernet searches", jobs, workers, log)
    failed.update(failed_sweeps)

    # every cell to retrain: (seed, family, label, lambdas, supernet accuracy, genotype)
    cells = []
    for seed in range(seeds):
        sweep = swept.get(f"sweep seed {seed}")
        if sweep:
            for i, (genotype, rows) in enumerate(_distinct(sweep["rows"], complexity.kinds), 1):
                cells.append((seed, "hypernet", f"hypernet_{i}", rows, genotype))
        for (s, run_name), cfg in searches.items():
            result = found.get(f"search seed {s} {run_name}")
            if s != seed or run_name == "hypernet" or result is None:
                continue
            family = "darts" if run_name == "darts" else "penalty"
            row = {"lambda": cfg.penalty, "val_acc": result["val_acc"]}
            cells.append((seed, family, run_name, [row], result["genotype"]))
        for i, (_, g) in enumerate(random_genotypes(complexity, random_cells, seed)):
            cells.append((seed, "random", f"random_{i}", [], genotype_to_dict(g)))
    jobs = []
    for seed, _, label, _, genotype in cells:
        folder = os.path.join(root, f"seed{seed}")
        cfg = retrain_config(folder, label, seed, scale, lr, test_subset=test_subset)
        jobs.append((f"retrain seed {seed} {label}", train_job, (cfg.to_dict(), genotype)))
    long_cell = pareto_report.best_searched_cell(cells) if long_epochs else None
    if long_cell is not None:
        cfg = retrain_config(root, "long", 0, scale, lr, long_epochs, test_subset=test_subset)
        jobs.insert(0, ("retrain long", train_job, (cfg.to_dict(), long_cell[4])))
    trained, failed_trains = _phase(
        f"retraining {len(cells)} cells (one epoch, lr {lr:g})", jobs, workers, log
    )
    failed.update(failed_trains)

    report = pareto_report.write_report(
        root,
        cells=cells,
        trained=trained,
        found=found,
        swept=swept,
        failed=failed,
        complexity=complexity,
        richest=richest_cell_params(complexity),
        penalties=penalty_lambdas(penalties),
        lr=lr,
        scale=scale,
        long=(long_cell, trained.get("retrain long"), long_epochs),
    )
    log(f"experiment pareto done in {format_seconds(time.perf_counter() - start)}")
    with open(report) as f:
        log(f.read())
    return root


__all__ = [
    "choose_lr",
    "random_genotypes",
    "richest_cell_params",
    "run_pareto",
    "search_configs",
]
