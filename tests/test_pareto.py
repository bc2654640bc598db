"""Tests of the Pareto experiment (jobs/pareto.py, pareto_report.py), its worker
pool (jobs/pool.py) and the held-out split its learning rate is chosen on."""

import itertools
import json
import math
import os

import pytest

from minidarts.darts.genotype import Genotype
from minidarts.engine import backend
from minidarts.jobs import data, pareto, pareto_report, pool
from minidarts.jobs.train import Train
from minidarts.jobs.train_config import make_train_config

# --- hypervolume -----------------------------------------------------------------


def test_hypervolume_of_known_fronts():
    ref = (1.0, 0.1)
    # one point: the rectangle up to the reference
    assert pareto_report.hypervolume([(0.2, 0.05)], ref) == pytest.approx(0.8 * 0.05)
    # two non-dominated points: two strips
    two = [(0.2, 0.05), (0.5, 0.02)]
    assert pareto_report.hypervolume(two, ref) == pytest.approx(0.3 * 0.05 + 0.5 * 0.08)
    # a dominated point and points outside the box change nothing
    more = [*two, (0.6, 0.04), (1.2, 0.0), (0.1, 0.3)]
    assert pareto_report.hypervolume(more, ref) == pytest.approx(0.055)
    assert pareto_report.hypervolume([], ref) == 0.0
    assert pareto_report.hypervolume([(0.5, 0.2)], ref) == 0.0


def test_hypervolume_agrees_with_counting_grid_cells():
    """An independent reference: the share of a fine grid over the box that some
    point dominates."""
    rng = backend.default_rng(3)
    points = [(float(x), float(y)) for x, y in zip(rng.random(7), 0.1 * rng.random(7))]
    n = 400
    covered = 0
    for i, j in itertools.product(range(n), range(n)):
        gx, gy = (i + 0.5) / n, 0.1 * (j + 0.5) / n
        covered += any(x <= gx and y <= gy for x, y in points)
    grid = covered / n**2 * 0.1
    assert pareto_report.hypervolume(points) == pytest.approx(grid, abs=2e-4)


def test_pareto_front_keeps_the_non_dominated_points_in_weight_order():
    pts = [(0.5, 0.02), (0.2, 0.05), (0.6, 0.04), (0.2, 0.07), (0.9, 0.01)]
    assert pareto_report.pareto_front(pts) == [(0.2, 0.05), (0.5, 0.02), (0.9, 0.01)]


# --- the cells ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def complexity():
    return pareto.search_network_complexity()


def test_random_cells_follow_dartss_rule_and_spread_over_the_weights(complexity):
    cells = pareto.random_genotypes(complexity, 10, seed=0)
    assert len(cells) == 10
    weights = [w for w, _ in cells]
    assert weights == sorted(weights)
    richest = pareto.richest_cell_params(complexity)
    assert 0 <= weights[0] < richest / 4 and weights[-1] > richest / 2
    for w, g in cells:
        assert w == complexity.genotype_params(g)
        for node in range(4):
            (op_a, a), (op_b, b) = g.reduce[2 * node : 2 * node + 2]
            assert a != b and {a, b} <= set(range(node + 2))
            assert "none" not in (op_a, op_b)
    # seeded: the same seed gives the same cells, another seed others
    assert pareto.random_genotypes(complexity, 10, seed=0) == cells
    assert pareto.random_genotypes(complexity, 10, seed=1) != cells


def test_richest_cell_is_the_heaviest_cell_of_the_space(complexity):
    richest = pareto.richest_cell_params(complexity)
    rng = backend.default_rng(0)
    concat = [2, 3, 4, 5]
    for _ in range(300):
        cell = pareto.random_cell(rng)
        g = Genotype(normal=cell, normal_concat=concat, reduce=cell, reduce_concat=concat)
        assert complexity.genotype_params(g) <= richest
    # the cell of sep_conv_5x5 on the two stride-2 input edges and the first node:
    # with every node taking the heaviest operation from the two reduced inputs
    heavy = [("sep_conv_5x5", 0), ("sep_conv_5x5", 1)] * 4
    g = Genotype(normal=heavy, normal_concat=concat, reduce=heavy, reduce_concat=concat)
    assert complexity.genotype_params(g) == richest


def test_distinct_cells_ignore_the_untrained_normal_half():
    red_a = [["max_pool_3x3", 0], ["skip_connect", 1]]
    red_b = [["sep_conv_3x3", 0], ["skip_connect", 1]]
    rows = [
        {"lambda": 1.0, "genotype": {"normal": [["a", 0]], "reduce": red_b}},
        {"lambda": 0.1, "genotype": {"normal": [["b", 0]], "reduce": red_a}},
        {"lambda": 0.01, "genotype": {"normal": [["c", 0]], "reduce": red_a}},
    ]
    cells = pareto._distinct(rows, ("reduce",))
    assert [g["reduce"] for g, _ in cells] == [red_a, red_b]
    assert [[r["lambda"] for r in rs] for _, rs in cells] == [[0.01, 0.1], [1.0]]


def test_plan_of_the_searches_and_the_protocol():
    runs = pareto.search_configs("EXP", seed=2, k=4)
    names = [n for n, _ in runs]
    assert names == ["hypernet", "penalty_0.01", "penalty_0.1", "penalty_1", "penalty_10", "darts"]
    for name, cfg in runs:
        assert cfg.seed == 2 and cfg.subset == 6000 and cfg.epochs == 4 and cfg.name == name
    assert runs[0][1].hypernet == "linear" and runs[-1][1].penalty == 0.0
    assert [cfg.penalty for _, cfg in runs[1:5]] == pytest.approx([0.01, 0.1, 1.0, 10.0])
    cfg = pareto.retrain_config("F", "x", 1, 1.0, 0.05)
    assert (cfg.subset, cfg.epochs, cfg.lr, cfg.holdout, cfg.layers, cfg.channels) == (
        None,
        1,
        0.05,
        0,
        2,
        8,
    )
    assert pareto.retrain_config("F", "x", 1, 0.25, 0.05).subset == 15000
    held = pareto.retrain_config("F", "x", 0, 1.0, 0.1, holdout=10000)
    assert (held.subset, held.holdout) == (50000, 10000)


# --- the held-out split --------------------------------------------------------


def test_holdout_split_is_disjoint_and_seeded():
    train, held = data.holdout_split(1000, subset=3000, seed=4)
    assert len(train) == 3000 and len(held) == 1000
    assert not set(train.indices.tolist()) & set(held.indices.tolist())
    again, held2 = data.holdout_split(1000, subset=3000, seed=4)
    assert (again.indices == train.indices).all() and (held2.indices == held.indices).all()
    with pytest.raises(data.MNISTError, match="subset"):
        data.holdout_split(1000, subset=59500)


def test_a_holdout_retraining_never_reads_the_test_images(tmp_path, monkeypatch):
    def no_test(*args, **kwargs):
        raise AssertionError("the test images were read")

    monkeypatch.setattr(data, "test_set", no_test)
    cfg = make_train_config(
        "tiny",
        dict(
            genotype="unused.json",  # the genotype is passed in
            holdout=64,
            out=str(tmp_path),
            name="h",
            plots=False,
        ),
    )
    concat = [2, 3, 4, 5]
    cell = [("skip_connect", 0), ("max_pool_3x3", 1)] * 4
    g = Genotype(normal=cell, normal_concat=concat, reduce=cell, reduce_concat=concat)
    run = Train(cfg, genotype=g, log=lambda *_: None)
    acc = run.run()
    assert 0.0 <= acc <= 1.0 and len(run.test_data) == 64
    summary = json.load(open(tmp_path / "h" / "summary.json"))
    assert summary["holdout_acc"] == acc and "test_acc" not in summary
    with pytest.raises(ValueError, match="holdout must be between"):
        make_train_config("tiny", dict(genotype="g.json", holdout=-1))


# --- the pool ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_pool_runs_every_job_and_records_failures(workers):
    lines = []
    jobs = [("four", math.sqrt, (4.0,)), ("bad", math.sqrt, (-1.0,)), ("nine", math.sqrt, (9.0,))]
    results, failures = pool.run_jobs(jobs, workers, log=lines.append)
    assert results == {"four": 2.0, "nine": 3.0}
    assert list(failures) == ["bad"] and "ValueError: math domain error" in failures["bad"]
    assert any("bad: FAILED" in line for line in lines)
    assert "2 of 3 jobs done, 1 failed" in lines[-1]


# --- end to end --------------------------------------------------------------------


@pytest.mark.slow
def test_pareto_experiment_end_to_end_and_resumed(tmp_path):
    """A tiny experiment (tiny searches, 300 retraining images): every output is
    written, every cell retrained once; run again, nothing is redone."""
    lines = []
    kwargs = dict(
        scale=0.005,
        seeds=2,
        workers=2,
        penalties=2,
        random_cells=3,
        long_epochs=1,
        out=str(tmp_path),
        search_preset="tiny",
        test_subset=128,
    )
    root = pareto.run_pareto(log=lines.append, **kwargs)
    for name in ("table.csv", "table.md", "pareto.png", "report.md", "results.json"):
        assert os.path.getsize(os.path.join(root, name)) > 0
    results = json.load(open(os.path.join(root, "results.json")))
    assert results["failed"] == {}
    families = {(r["family"], r["seed"]) for r in results["rows"]}
    assert families == {(f, s) for f in pareto_report.FAMILIES for s in (0, 1)}
    assert all(r["test_acc"] is not None for r in results["rows"])
    assert set(results["hypervolume"]) == set(pareto_report.FAMILIES)
    report = open(os.path.join(root, "report.md")).read()
    assert "## Targets" in report and "retrained 1 epochs" in report
    # resumed: every search and retraining is kept, none redone
    stamps = {p: os.path.getmtime(p) for p in (str(x) for x in tmp_path.rglob("checkpoint.npz"))}
    pareto.run_pareto(log=lines.append, **kwargs)
    assert stamps == {p: os.path.getmtime(p) for p in stamps}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "gpu"], "--device is an option of experiment paper"),
        (["--seed", "3"], "give --seeds N, not --seed"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--long-epochs", "-1"], "--long-epochs must be 0 (none) or more, got -1"),
    ],
)
def test_pareto_refuses_the_options_it_would_ignore(tmp_path, capsys, extra, message):
    from minidarts.__main__ import main

    assert main(["experiment", "pareto", "--out", str(tmp_path), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any folder was made
