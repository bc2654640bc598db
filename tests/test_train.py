"""Tests of train.py and `python -m minidarts train`: retraining a genotype end to end
on a tiny subset, the run folder, bit-identical resumption, and clear errors.

Runs use the 'tiny' preset (256 training and 256 test images, C=4, one cell, 8
steps of 32 images per epoch)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_search import _cli_error

from minidarts.__main__ import main
from minidarts.darts.eval_network import EvalNetwork, genotype_param_count
from minidarts.darts.genotype import (
    Genotype,
    describe_genotype,
    load_genotype,
    save_genotype,
)
from minidarts.engine import backend
from minidarts.jobs.checkpoint import load_checkpoint, save_checkpoint
from minidarts.jobs.data import test_set
from minidarts.jobs.evaluate import evaluate
from minidarts.jobs.train import Train
from minidarts.jobs.train_config import TrainConfig, make_train_config

REPO = Path(__file__).resolve().parents[1]

GENOTYPE = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("dil_conv_3x3", 2),
        ("max_pool_3x3", 0),
        ("avg_pool_3x3", 1),
        ("skip_connect", 3),
        ("sep_conv_5x5", 4),
        ("dil_conv_5x5", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 1),
        ("max_pool_3x3", 2),
        ("skip_connect", 0),
        ("avg_pool_3x3", 3),
        ("skip_connect", 1),
        ("sep_conv_3x3", 4),
        ("dil_conv_5x5", 2),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def _quiet(message):
    pass


@pytest.fixture(scope="module")
def genotype_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("genotype") / "genotype.json"
    save_genotype(GENOTYPE, path)
    return str(path)


def tiny(genotype_file, **overrides):
    return make_train_config(
        "tiny", {"genotype": genotype_file, "epochs": 2, "plots": False, **overrides}
    )


def assert_same_state(a, b, where="state"):
    """Exact equality of two train states: arrays bit for bit, other values ==;
    wall-clock seconds, the run folder's name and place and the path of the genotype
    file (the genotype itself is compared) are skipped."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            if k == "seconds" or (
                where.endswith("['config']") and k in ("out", "name", "genotype")
            ):
                continue
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif hasattr(a, "dtype"):
        a, b = backend.to_numpy(a), backend.to_numpy(b)
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{where}: arrays differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def full_run(genotype_file, tmp_path_factory):
    """An uninterrupted 2-epoch tiny run: the reference for the resumed ones."""
    folder = tmp_path_factory.mktemp("full") / "run"
    run = Train(tiny(genotype_file), folder=str(folder), log=_quiet)
    run.run()
    return run, folder


def test_full_run_trains_and_records(full_run):
    run, folder = full_run
    assert run.epoch == 2 and len(run.history) == 2
    fresh = EvalNetwork(GENOTYPE, C=4, layers=1, seed=0)
    assert not np.array_equal(fresh.stem[0].weight.data, run.model.stem[0].weight.data)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(r) == {
            "epoch",
            "lr",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "seconds",
        }
        assert all(np.isfinite(v) for v in r.values())
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
    # DARTS's cosine from lr to lr_min = 0: lr in epoch 1, half of it at t = 1 of T_max = 2
    assert records[0]["lr"] == pytest.approx(0.025)
    assert records[1]["lr"] == pytest.approx(0.025 / 2)
    assert_same_state(run.state_dict(), load_checkpoint(folder / "checkpoint.npz"))
    assert load_genotype(folder / "genotype.json") == GENOTYPE


def test_reported_accuracy_is_the_test_set_accuracy_of_the_saved_weights(full_run):
    """The checkpoint's weights, put in a fresh network, give the last epoch's test
    loss and accuracy on the first 256 test images."""
    run, folder = full_run
    state = load_checkpoint(folder / "checkpoint.npz")
    model = EvalNetwork(GENOTYPE, C=4, layers=1, seed=123)
    model.load_state_dict(state["model"])
    loss, acc = evaluate(model, test_set(subset=256), batch_size=100)
    assert acc == run.history[-1]["test_acc"]
    assert loss == pytest.approx(run.history[-1]["test_loss"], rel=1e-5)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["test_acc"] == acc and summary["epochs"] == 2
    assert summary["params"] == genotype_param_count(GENOTYPE, 4, 1)


def test_resume_after_epoch_1_is_bitwise_identical(full_run, genotype_file, tmp_path):
    reference, _ = full_run
    folder = tmp_path / "run"
    run = Train(tiny(genotype_file), folder=str(folder), log=_quiet)

    def stop_after_epoch_1(message):
        if run.epoch >= 1:
            raise KeyboardInterrupt

    run.log = stop_after_epoch_1
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert load_checkpoint(folder / "checkpoint.npz")["epoch"] == 1
    resumed = Train.resume(str(folder), log=_quiet)
    assert resumed.epoch == 1
    resumed.run()
    assert resumed.epoch == 2
    assert_same_state(reference.state_dict(), resumed.state_dict())
    ref_model, res_model = reference.model.state_dict(), resumed.model.state_dict()
    assert any(k.endswith("running_var") for k in ref_model)
    for name, value in ref_model.items():
        assert np.array_equal(value, res_model[name]), name
    assert len(reference.optimizer.state_dict()["state"]) > 0


def test_resume_mid_epoch_via_cli_without_the_genotype_file(full_run, tmp_path, capsys):
    """Ctrl-C in epoch 2, the original genotype file gone: `train --resume` redoes
    epoch 2 from the checkpoint (which holds the genotype) and ends where the
    uninterrupted run ended."""
    _, reference_folder = full_run
    genotype_file = tmp_path / "g.json"
    save_genotype(GENOTYPE, genotype_file)
    folder = tmp_path / "run"
    run = Train(tiny(str(genotype_file)), folder=str(folder), log=_quiet)
    original, calls = run.train_step, [0]

    def train_step(x, y):
        calls[0] += 1
        if calls[0] == 11:  # epoch 2, step 3 of 8
            raise KeyboardInterrupt
        return original(x, y)

    run.train_step = train_step
    with pytest.raises(KeyboardInterrupt):
        run.run()
    genotype_file.unlink()
    assert main(["train", "--resume", str(folder)]) == 0
    out = capsys.readouterr().out
    assert_same_state(
        load_checkpoint(reference_folder / "checkpoint.npz"),
        load_checkpoint(folder / "checkpoint.npz"),
    )

    def records(f):
        return [
            {k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (f / "metrics.jsonl").read_text().splitlines()
        ]

    assert records(folder) == records(reference_folder)
    assert "done: test acc" in out


def test_cli_train_end_to_end(genotype_file, tmp_path, capsys):
    argv = ["train", "--genotype", genotype_file, "--subset", "256", "--test-subset", "256"]
    argv += ["--epochs", "1", "--channels", "4", "--layers", "1", "--batch-size", "32"]
    code = main([*argv, "--out", str(tmp_path), "--name", "t"])
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "t"
    for name in (
        "config.json",
        "genotype.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoint.npz",
        "plots/curves.png",
        "plots/genotype.png",
    ):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    for png in (run / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    config = json.loads((run / "config.json").read_text())
    assert config.pop("produced_by")["python"]  # and what produced the run (provenance.py)
    assert config.pop("format").startswith("minidarts-")  # of its checkpoints
    expected = make_train_config(
        None,
        dict(
            genotype=genotype_file,
            subset=256,
            test_subset=256,
            epochs=1,
            channels=4,
            layers=1,
            batch_size=32,
            out=str(tmp_path),
            name="t",
        ),
    )
    assert config == expected.to_dict()
    assert load_genotype(run / "genotype.json") == GENOTYPE
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    params = genotype_param_count(GENOTYPE, 4, 1)
    assert summary["params"] == params and summary["test_acc"] == record["test_acc"]
    # the final summary line: test accuracy, weight count and the genotype
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"done: test acc {record['test_acc']:.4f} after 1 epochs")
    # the cells the network has (one reduction cell here: the normal half is unused)
    assert f"{params} weights" in last and describe_genotype(GENOTYPE, ("reduce",)) in last
    assert re.search(r"epoch 1/1 step 8/8 \| loss [\d.]+ \| acc [\d.]+ \|", out)


def test_cli_accepts_a_search_run_folder(genotype_file, tmp_path, capsys):
    search_run = tmp_path / "search-run"
    search_run.mkdir()
    save_genotype(GENOTYPE, search_run / "genotype.json")
    argv = ["train", "--genotype", str(search_run), "--preset", "tiny", "--no-plots"]
    assert main([*argv, "--out", str(tmp_path), "--name", "t"]) == 0
    capsys.readouterr()
    assert load_genotype(tmp_path / "t" / "genotype.json") == GENOTYPE
    assert not (tmp_path / "t" / "plots").exists()


def test_extending_a_run_stretches_the_cosine(genotype_file, tmp_path, capsys):
    argv = ["train", "--genotype", genotype_file, "--preset", "tiny", "--no-plots"]
    assert main([*argv, "--out", str(tmp_path), "--name", "r", "--epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "3"]) == 0
    capsys.readouterr()
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["lr"] for line in lines]
    # epoch 1 ran at lr; epochs 2, 3 follow the 3-epoch cosine lr (1 + cos(pi t / 3)) / 2
    expected = [0.025 * (1 + np.cos(np.pi * t / 3)) / 2 for t in range(3)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_default_config_is_the_documented_one():
    cfg = TrainConfig()
    assert (cfg.layers, cfg.channels, cfg.epochs, cfg.batch_size) == (2, 8, 3, 64)
    assert (cfg.lr, cfg.lr_min, cfg.momentum, cfg.weight_decay, cfg.grad_clip) == (
        0.025,
        0.0,
        0.9,
        3e-4,
        5.0,
    )
    assert cfg.subset is None and cfg.test_subset is None  # all 60000 / 10000 images


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "not_json": "{'normal': oops",
        "a_list": "[1, 2, 3]",
        "text_form": "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], ...)",
        "odd_gene": json.dumps(
            {
                "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["skip_connect", 1]],
                "normal_concat": [2],
                "reduce": [["skip_connect", 0], ["skip_connect", 1]],
                "reduce_concat": [2],
            }
        ),
        "bad_op": json.dumps(
            {
                "normal": [["conv_9x9", 0], ["skip_connect", 1]],
                "normal_concat": [2],
                "reduce": [["skip_connect", 0], ["skip_connect", 1]],
                "reduce_concat": [2],
            }
        ),
        "bad_concat": json.dumps(
            {
                "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
                "normal_concat": [2],
                "reduce": [["sep_conv_3x3", 0], ["skip_connect", 1]],
                "reduce_concat": [2, 7],
            }
        ),
    }
    for name, text in files.items():
        (tmp_path / f"{name}.json").write_text(text)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00\x81")
    return tmp_path


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "a genotype is required"),
        (["--genotype", "{dir}/absent.json"], "genotype file .*absent.json does not exist"),
        (["--genotype", "{dir}/not_json.json"], "not_json.json: not a genotype JSON file"),
        (["--genotype", "{dir}/binary.json"], "binary.json: not a genotype JSON file"),
        (["--genotype", "{dir}/a_list.json"], "expected an object with keys normal"),
        (["--genotype", "{dir}/text_form.json"], "text_form.json: DARTS's text form"),
        (
            ["--genotype", "{dir}/odd_gene.json"],
            "genotype file .*odd_gene.json: normal cell: the gene must be a non-empty list",
        ),
        (["--genotype", "{dir}/bad_op.json"], "unknown operation 'conv_9x9'"),
        (["--genotype", "{dir}/bad_concat.json"], r"reduce cell.*concat must list distinct"),
        (["--genotype", "{geno}", "--epochs", "0"], "epochs must be at least 1"),
        (["--genotype", "{geno}", "--epochs", "two"], "argument --epochs: invalid int value"),
        (["--genotype", "{geno}", "--lr", "-0.1"], "lr must be >= 0"),
        (["--genotype", "{geno}", "--lr", "nan"], "lr must be finite"),
        (["--genotype", "{geno}", "--lr-min", "1"], r"lr_min \(1.0\) exceeds lr \(0.025\)"),
        (["--genotype", "{geno}", "--subset", "70000"], "subset must be between 1 and 60000"),
        (["--genotype", "{geno}", "--test-subset", "-1"], "test_subset must be between 1 and"),
        (["--genotype", "{geno}", "--channels", "-2"], "channels must be at least 1"),
        (["--genotype", "{geno}", "--device", "tpu"], "device must be 'cpu' or 'gpu'"),
        (["--genotype", "{geno}", "--seed", "-1"], "seed must be >= 0"),
        (["--genotype", "{geno}", "--data", "{dir}/nowhere"], "MNIST file not found"),
        (["--genotype", "{geno}", "--preset", "huge"], "invalid choice: 'huge'"),
        (["--genotype", "{geno}", "--config", "{dir}/absent.toml"], "absent.toml does not exist"),
        (["--resume", "{dir}/no-run"], "no checkpoint.npz"),
        (["--resume", "{dir}", "--layers", "3"], "only --epochs may be given"),
        (["--resume", "{dir}/search-run"], "not a minidarts train checkpoint"),
    ],
)
def test_cli_errors_are_clear(argv, message, bad_files, genotype_file, capsys, monkeypatch):
    monkeypatch.chdir(bad_files)
    save_checkpoint(bad_files / "search-run" / "checkpoint.npz", {"format": "minidarts-search-1"})
    argv = [a.format(dir=bad_files, geno=genotype_file) for a in argv]
    out = [] if "--resume" in argv else ["--out", str(bad_files / "runs")]
    code, err = _cli_error(["train", *argv, *out], capsys)
    assert code not in (0, None)
    assert re.search(message, err), err
    assert not (bad_files / "runs").exists()


def test_cli_error_in_a_subprocess_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "minidarts", "train", "--genotype", str(tmp_path / "x.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "error: genotype file" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("momentum", [1.0, 5.0])
def test_momentum_of_one_or_more_is_refused(genotype_file, momentum):
    """At momentum >= 1 the SGD momentum grows without bound and training diverges."""
    overrides = {"genotype": str(genotype_file), "momentum": momentum}
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        make_train_config(None, overrides)


def test_a_non_finite_evaluation_stops_the_run_before_it_is_saved(
    genotype_file, tmp_path, monkeypatch
):
    # a NaN in the history would be saved, and refused at resume as a damaged file
    monkeypatch.setattr(Train, "evaluate", lambda self: (float("nan"), 0.5))
    run = Train(tiny(genotype_file, epochs=1), folder=str(tmp_path / "t"), log=_quiet)
    with pytest.raises(FloatingPointError, match=r"epoch 1: the test loss is nan; lower lr"):
        run.run()
    assert not (tmp_path / "t" / "checkpoint.npz").exists()
