"""Tests of sweep.py and experiment.py: the lambda sweep of a finished hypernet search
and the paper's experiment, end to end on tiny configurations."""

import csv
import math
import os
import re
import shutil

import pytest
import scipy.stats

from minidarts.__main__ import main
from minidarts.darts.genotype import load_genotype, unused_halves
from minidarts.jobs import experiment, runfolder
from minidarts.jobs import sweep as sweep_module
from minidarts.jobs.checkpoint import load_checkpoint, save_checkpoint
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


@pytest.fixture
def own_run(hyper_run, tmp_path):
    """A copy of the tiny hypernet search (its checkpoint and records, no sweep), for a
    test that changes the run or sweeps it without --overwrite."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("checkpoint.npz", "config.json", "genotype.json", "metrics.jsonl"):
        shutil.copy(hyper_run / name, folder / name)
    return folder


@pytest.fixture
def quick_sweep(monkeypatch):
    """`sweep RUN ...` with one validation batch per lambda and no plots (most of a
    tiny sweep's time; test_sweep_cli_writes_tables_and_plots draws them)."""
    monkeypatch.setattr(sweep_module, "plot_sweep", lambda *args, **kwargs: [])
    return lambda folder, *extra: main(["sweep", str(folder), "--eval-batches", "1", *extra])


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
    assert not (folder / "sweep").exists()  # refused before RUN/sweep/ was made
    assert not (folder / runfolder.LOCK).exists()
    assert main(["sweep", str(tmp_path / "nowhere")]) == 1  # names no flag it was not given
    err = capsys.readouterr().err
    assert "no checkpoint.npz there; a sweep evaluates a finished" in err and "--resume" not in err
    assert not (tmp_path / "nowhere").exists()
    # nor where the folder holds another kind of run (a retraining's)
    save_checkpoint(str(folder / "checkpoint.npz"), {"format": "minidarts-train-1", "epoch": 1})
    assert main(["sweep", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"sweep {folder}: not a checkpoint" in err and "--resume" not in err


def test_sweep_genotypes_mark_the_untrained_normal_cell(own_run, quick_sweep, tmp_path, capsys):
    # the tiny search network is one reduction cell: its normal alpha is never trained,
    # and the sweep's genotype files say so as the search's genotype.json does
    assert unused_halves(own_run / "genotype.json") == ["normal"]
    assert quick_sweep(own_run, "--lambdas", "0.01,1") == 0
    for lam in (0.01, 1.0):
        path = genotype_path(own_run / "sweep", lam)
        assert unused_halves(path) == ["normal"]
        assert load_genotype(path) is not None  # still DARTS's format, both halves
    capsys.readouterr()
    # so a retraining with a normal cell is refused, as it is for genotype.json
    path = genotype_path(own_run / "sweep", 0.01)
    argv = ["train", "--preset", "tiny", "--no-plots", "--layers", "3", "--out", str(tmp_path)]
    assert main([*argv, "--genotype", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "its normal cell is marked unused" in err


def test_distinct_cells_count_only_the_trained_cells():
    def row(lam, normal, reduce, kinds=None):
        genotype = {
            "normal": [[normal, 0]],
            "normal_concat": [2],
            "reduce": [[reduce, 1]],
            "reduce_concat": [2],
        }
        r = {"lambda": lam, "genotype_params": 100, "genotype": genotype}
        return r if kinds is None else {**r, "cell_kinds": kinds}

    cells = [("sep_conv_3x3", "skip_connect"), ("max_pool_3x3", "skip_connect")]
    cells.append(("avg_pool_3x3", "dil_conv_3x3"))
    # one reduction cell: 3 genotypes, but the normal halves are untrained noise
    one_cell = [row(i, n, r, ["reduce"]) for i, (n, r) in enumerate(cells)]
    assert summary(one_cell)["distinct"] == 2
    # a network with both cell types (and rows of old, without cell_kinds): unchanged
    assert (
        summary([row(i, n, r, ["normal", "reduce"]) for i, (n, r) in enumerate(cells)])["distinct"]
        == 3
    )
    assert summary([row(i, n, r) for i, (n, r) in enumerate(cells)])["distinct"] == 3


def test_sweep_md_counts_the_reduction_cells_of_a_one_cell_search(own_run, quick_sweep, capsys):
    lambdas = log_spaced(1e-3, 10.0, 5)
    assert quick_sweep(own_run, "--lambdas", ",".join(map(repr, lambdas))) == 0
    out = capsys.readouterr().out
    reduce_cells = {str(load_genotype(genotype_path(own_run / "sweep", v)).reduce) for v in lambdas}
    md = (own_run / "sweep" / "sweep.md").read_text()
    # the run's rule: its distinct cells are its distinct reduction cells, said so
    assert re.findall(r"(\d+) distinct cells", md)[0] == str(len(reduce_cells))
    assert f"{len(reduce_cells)} distinct cells (reduction only" in md
    assert f"{len(reduce_cells)} distinct cells (reduction only" in out


def test_sweep_of_a_running_search_is_refused(own_run, quick_sweep, capsys):
    # a live process (not this one) holds the run's lock, as a running search does
    (own_run / runfolder.LOCK).write_text(f"{os.getppid()}\n")
    assert quick_sweep(own_run, "--lambdas", "1") == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "in use by another process" in err
    assert not (own_run / "sweep").exists()
    assert (own_run / runfolder.LOCK).read_text() == f"{os.getppid()}\n"  # left to its owner


def test_sweep_md_records_the_epoch_and_an_unfinished_search(own_run, quick_sweep, capsys):
    assert quick_sweep(own_run, "--lambdas", "1") == 0
    assert not (own_run / runfolder.LOCK).exists()  # the sweep's own lock, released
    md = (own_run / "sweep" / "sweep.md").read_text()
    assert md.startswith(f"Swept from the checkpoint of {own_run}: epoch 2 of 2 (")
    assert "unfinished" not in md and "note:" not in capsys.readouterr().out
    # the same checkpoint in a run of 3 epochs: a search stopped after its second
    path = str(own_run / "checkpoint.npz")
    state = load_checkpoint(path)
    state["config"]["epochs"] = 3
    save_checkpoint(path, state)
    assert quick_sweep(own_run, "--lambdas", "1", "--overwrite") == 0
    out = capsys.readouterr().out
    md = (own_run / "sweep" / "sweep.md").read_text()
    assert "epoch 2 of 3" in md and "the search is unfinished" in md
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "epoch 2 of 3" in notes[0] and "unfinished" in notes[0]


def test_lambdas_outside_the_trained_range_are_noted_and_marked(own_run, quick_sweep, capsys):
    # the ends of the range [1e-3, 10], as log_spaced computes them, are inside it
    ends = log_spaced(1e-3, 10.0, 2)
    assert quick_sweep(own_run, "--lambdas", ",".join(map(repr, ends))) == 0
    assert "note:" not in capsys.readouterr().out
    assert "extrapolated" not in (own_run / "sweep" / "sweep.md").read_text()
    assert quick_sweep(own_run, "--lambdas", "1e-4,1,1e6", "--overwrite") == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, notes
    assert "lambda 0.0001, 1e+06 outside the trained range [0.001, 10]" in notes[0]
    md = (own_run / "sweep" / "sweep.md").read_text()
    assert "| 0.0001 (extrapolated) |" in md and "| 1e+06 (extrapolated) |" in md
    assert "| 1 |" in md  # inside the range: not marked


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
