"""Tests of sweep.py and experiment.py: the lambda sweep of a finished hypernet search
and the paper's experiment, end to end on tiny configurations."""

import csv
import math

import pytest
import scipy.stats

from minidarts.__main__ import main
from minidarts.darts.genotype import load_genotype
from minidarts.jobs import experiment
from minidarts.jobs.checkpoint import save_checkpoint
from minidarts.jobs.config import make_config
from minidarts.jobs.search import Search
from minidarts.jobs.sweep import (
    _pareto_front,
    format_spearman,
    genotype_path,
    log_spaced,
    spearman,
    summary,
)

TINY_HYPERNET = {
    "epochs": 2,
    "plots": False,
    "hypernet": "linear",
    "alpha_lr": 0.05,
    "lambda_min": 1e-3,
    "lambda_max": 10.0,
}


@pytest.fixture(scope="module")
def hyper_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "run"
    Search(make_config("tiny", TINY_HYPERNET), folder=str(folder), log=lambda *_: None).run()
    return folder


def test_sweep_cli_writes_tables_and_plots(hyper_run, capsys):
    assert main(["sweep", str(hyper_run), "--lambdas", "1e-3,1e-2,1e-1,1,10"]) == 0
    out = capsys.readouterr().out
    assert "Spearman(lambda, cell weights)" in out
    folder = hyper_run / "sweep"
    for name in ("sweep.csv", "sweep.md", "pareto.png", "complexity.png", "cells.png"):
        assert (folder / name).stat().st_size > 0, name
    search = Search.resume(str(hyper_run), log=lambda *_: None)
    for lam in (1e-3, 1e-2, 1e-1, 1.0, 10.0):  # each architecture saved for retraining
        assert load_genotype(genotype_path(folder, lam)) == search.genotype(lam)
    with open(folder / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lambda"]) for r in rows] == [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    for r in rows:
        assert 0.0 <= float(r["complexity"]) <= 1.0
        assert 0.0 <= float(r["val_acc"]) <= 1.0
        assert int(r["genotype_params"]) >= 0
        assert r["genotype_str"].startswith("Genotype(normal=[")
    # the tiny search's hypernet lowers the expected complexity as lambda grows
    complexities = [float(r["complexity"]) for r in rows]
    assert complexities[-1] < complexities[0]


def test_sweep_default_lambdas_and_rows_match_the_search(hyper_run, capsys):
    # over an earlier sweep: refused, then moved aside with --overwrite
    assert main(["sweep", str(hyper_run), "--lambdas", "1", "--overwrite"]) == 0
    assert main(["sweep", str(hyper_run), "--eval-batches", "1"]) == 1
    assert "is not empty" in capsys.readouterr().err
    old = len(list(hyper_run.glob("sweep.old-*")))
    assert main(["sweep", str(hyper_run), "--eval-batches", "1", "--overwrite"]) == 0
    assert len(list(hyper_run.glob("sweep.old-*"))) == old + 1
    with open(hyper_run / "sweep" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    lams = [float(r["lambda"]) for r in rows]
    assert lams == pytest.approx(log_spaced(1e-3, 10.0, 9))
    search = Search.resume(str(hyper_run), log=lambda *_: None)
    for r in rows:
        lam = float(r["lambda"])
        expected = search.complexity(search.alphas(lam)).item()
        assert float(r["complexity"]) == pytest.approx(expected, rel=1e-6)
        assert int(r["genotype_params"]) == search.complexity.genotype_params(search.genotype(lam))


def test_sweep_of_a_plain_search_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "plain"
    Search(make_config("tiny", {"plots": False}), folder=str(folder), log=lambda *_: None).run()
    assert main(["sweep", str(folder)]) == 1
    assert "not a hypernet search" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nowhere")]) == 1  # names no flag it was not given
    err = capsys.readouterr().err
    assert "no checkpoint.npz there; a sweep evaluates a finished" in err and "--resume" not in err
    # nor where the folder holds another kind of run (a retraining's)
    save_checkpoint(str(folder / "checkpoint.npz"), {"format": "minidarts-train-1", "epoch": 1})
    assert main(["sweep", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"sweep {folder}: not a checkpoint" in err and "--resume" not in err


@pytest.mark.parametrize("text", ["a,b", "1e-3,-1", "0", ","])
def test_bad_lambdas_are_rejected(hyper_run, text, capsys):
    assert main(["sweep", str(hyper_run), "--lambdas", text]) == 1
    assert "--lambdas" in capsys.readouterr().err


@pytest.mark.parametrize(
    "x, y",
    [
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ([1, 2, 3, 4, 5, 6], [9, 9, 9, 4, 4, 0]),  # ties share their mean rank
        ([0.1, 0.5, 0.2, 0.9], [3, 1, 2, 7]),
    ],
)
def test_spearman_matches_scipy(x, y):
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, rel=1e-12)


def test_spearman_of_a_constant_is_nan_and_summary_span():
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    # a report says so in words, never "nan"
    assert format_spearman(spearman([1, 2, 3], [4, 4, 4])) == "n/a (one value on a side)"
    assert format_spearman(-0.98765) == "-0.988"
    rows = [
        {"lambda": lam, "genotype_params": p, "genotype": {"reduce": [[op, 0]]}}
        for lam, p, op in [(1e-3, 800, "sep_conv_3x3"), (1, 400, "dil_conv_3x3"), (10, 0, "skip")]
    ]
    stats = summary(rows)
    assert stats["spearman"] == pytest.approx(-1.0) and stats["span"] == math.inf
    assert stats["distinct"] == 3


def test_pareto_front():
    params = [100, 50, 50, 200, 10]
    accs = [0.9, 0.8, 0.85, 0.95, 0.5]
    # fewest weights first; each point on the front beats every cheaper one
    assert _pareto_front(params, accs) == [4, 2, 0, 3]


def test_log_spaced():
    assert log_spaced(1e-4, 1.0, 5) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert log_spaced(2.0, 8.0, 1) == [2.0]


def test_experiment_plan_at_scale():
    folder, runs, table_epochs = experiment.plan(0.06, out="runs")
    names = [n for n, _ in runs]
    assert names == [
        "darts",
        "baseline_1e-04",
        "baseline_1e-03",
        "baseline_1e-02",
        "baseline_1e-01",
        "hypernet_lambda",
        "hypernet_log",
    ]
    for _, cfg in runs:  # the same budget for every search
        assert (cfg.subset, cfg.epochs, cfg.warmup_epochs) == (3600, 6, 3)
        assert cfg.alpha_lr == 3e-3 and cfg.eval_lambdas == list(experiment.LAMBDAS)
    assert [cfg.penalty for _, cfg in runs[1:5]] == list(experiment.LAMBDAS)
    assert [cfg.hypernet_input for _, cfg in runs[5:]] == ["lambda", "log"]
    assert table_epochs == [2, 3, 4, 6]
    _, full, full_epochs = experiment.plan(1.0)
    assert full[0][1].subset is None and full[0][1].epochs == 100
    assert full[0][1].alpha_lr == 1e-3 and full_epochs == [30, 50, 70, 100]
    with pytest.raises(ValueError, match="scale"):
        experiment.plan(0)


def test_experiment_end_to_end_on_a_tiny_plan(tmp_path, monkeypatch, capsys):
    """The whole experiment (7 searches, 2 sweeps, table, figures) with tiny searches;
    run twice, the second run keeps the finished searches."""
    real_plan = experiment.plan

    def tiny_plan(*args, **kwargs):
        folder, runs, table_epochs = real_plan(*args, **kwargs)
        small = dict(channels=2, nodes=2, multiplier=2, batch_size=32, eval_batches=1)
        runs = [(n, make_config(None, {**cfg.to_dict(), **small})) for n, cfg in runs]
        return folder, runs, table_epochs

    monkeypatch.setattr(experiment, "plan", tiny_plan)
    args = ["experiment", "paper", "--scale", "0.005", "--out", str(tmp_path), "--name", "e"]
    assert main(args) == 0
    folder = tmp_path / "e"
    for name in ("table.md", "accuracy.png", "tradeoff.png", "sweep.md"):
        assert (folder / name).stat().st_size > 0, name
    table = (folder / "table.md").read_text()
    assert "DARTS (no penalty)" in table and "hypernet (lambda input, eq. 5)" in table
    assert "98.58 / 98.89 / 98.95 / 99.24" in table  # the paper's row beside ours
    assert "Plain DARTS with the same budget" in table
    assert "nan" not in table  # an undefined rank correlation reads n/a
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("finished earlier, kept") == 7
    # another seed in the same folder: refused, not reported as this one's
    assert main(args + ["--seed", "1"]) == 1
    assert "holds a search of other settings (seed 0 there, 1 now)" in capsys.readouterr().err
    # options of the other experiment are refused, not ignored
    assert main(args + ["--seeds", "3"]) == 1
    assert "--seeds: option(s) of experiment pareto, which" in capsys.readouterr().err
    assert main(args + ["--seeds", "1", "--penalties", "4"]) == 1  # given, even at the default
    assert "--seeds, --penalties: option(s) of experiment pareto" in capsys.readouterr().err
