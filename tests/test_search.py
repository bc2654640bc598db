"""Tests of search.py and the command line: a tiny search end to end, bit-identical
resumption after an interruption, determinism, and clean CLI errors.

All runs use the 'tiny' preset (256 MNIST images, C=4, 2 nodes, one reduction cell,
4 steps per epoch)."""

import json
import os
import re
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from minidarts.__main__ import main
from minidarts.darts.genotype import describe_genotype, load_genotype
from minidarts.darts.network import Network
from minidarts.engine import backend
from minidarts.jobs.checkpoint import load_checkpoint
from minidarts.jobs.config import make_config
from minidarts.jobs.search import Search

REPO = Path(__file__).resolve().parents[1]


def _quiet(message):
    pass


def tiny(**overrides):
    return make_config("tiny", {"epochs": 2, "plots": False, **overrides})


def assert_same_state(a, b, where="state"):
    """Exact equality of two search states: arrays bit for bit (np.array_equal, same
    dtype), numbers and strings ==; run-specific fields (wall-clock seconds, run folder
    name) are skipped."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            if k == "seconds" or (where.endswith("['config']") and k in ("out", "name")):
                continue
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif hasattr(a, "dtype"):
        a, b = backend.to_numpy(a), backend.to_numpy(b)  # alphas stay CuPy on the GPU
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{where}: arrays differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def interrupt_after_epoch(search, epoch):
    """Make `search` raise KeyboardInterrupt (as Ctrl-C would) at its first log line
    after `epoch` epochs are done, i.e. after that epoch's checkpoint is written."""

    def log(message):
        if search.epoch >= epoch:
            raise KeyboardInterrupt

    search.log = log


def interrupt_at_weight_step(search, step):
    """Raise KeyboardInterrupt instead of the `step`-th weight update (1-based)."""
    original, calls = search.weight_step, [0]

    def weight_step(x, y, *args):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        return original(x, y, *args)

    search.weight_step = weight_step


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 2-epoch tiny search: the reference for the resumed runs."""
    folder = tmp_path_factory.mktemp("full") / "run"
    search = Search(tiny(), folder=str(folder), log=_quiet)
    search.run()
    return search, folder


def test_full_run_trains_and_records(full_run):
    search, folder = full_run
    assert search.epoch == 2 and len(search.history) == 2
    fresh = Network(C=4, layers=1, steps=2, multiplier=2, seed=0)
    # the search moved both the weights and the (trained) reduction alphas
    assert not np.array_equal(fresh.stem[0].weight.data, search.model.stem[0].weight.data)
    assert not np.array_equal(fresh.alphas["reduce"].data, search.model.alphas["reduce"].data)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        for key in ("train_loss", "train_acc", "arch_loss", "arch_acc", "val_loss", "val_acc"):
            assert np.isfinite(r[key])
        assert set(r["alpha"]) == {"normal", "reduce"}
        np.testing.assert_allclose(np.sum(r["alpha"]["reduce"], axis=1), 1.0, rtol=1e-5)
    # the cosine schedule: w_lr in epoch 1, then half way to w_lr_min at t = 1 of T_max = 2
    cfg = search.cfg
    assert records[0]["lr"] == pytest.approx(cfg.w_lr)
    assert records[1]["lr"] == pytest.approx((cfg.w_lr + cfg.w_lr_min) / 2)
    state = load_checkpoint(folder / "checkpoint.npz")
    assert_same_state(search.state_dict(), state)


def test_resume_after_epoch_1_is_bitwise_identical(full_run, tmp_path):
    reference, _ = full_run
    folder = tmp_path / "run"
    search = Search(tiny(), folder=str(folder), log=_quiet)
    interrupt_after_epoch(search, 1)
    with pytest.raises(KeyboardInterrupt):
        search.run()
    assert load_checkpoint(folder / "checkpoint.npz")["epoch"] == 1
    resumed = Search.resume(str(folder), log=_quiet)
    assert resumed.epoch == 1
    resumed.run()
    assert resumed.epoch == 2
    assert_same_state(reference.state_dict(), resumed.state_dict())
    # spelled out: alphas, weights and BN buffers, both optimisers' states
    for kind, a in reference.model.alphas.items():
        assert np.array_equal(a.data, resumed.model.alphas[kind].data)
    ref_model, res_model = reference.model.state_dict(), resumed.model.state_dict()
    assert any(k.endswith("running_var") for k in ref_model)
    for name, value in ref_model.items():
        assert np.array_equal(value, res_model[name]), name
    for opt in ("w_optimizer", "a_optimizer"):
        ref_opt = getattr(reference, opt).state_dict()
        assert len(ref_opt["state"]) > 0
        assert_same_state(ref_opt, getattr(resumed, opt).state_dict(), opt)


@pytest.mark.gpu
def test_gpu_search_resumes_bitwise_and_agrees_with_the_cpu(tmp_path):
    """On the GPU (CuPy): an interrupted and resumed run equals an uninterrupted one bit
    for bit, and both follow the CPU run up to float32 rounding."""
    if not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    reference = Search(tiny(device="gpu"), folder=str(tmp_path / "ref"), log=_quiet)
    reference.run()
    assert backend.device_of(reference.model.stem[0].weight.data) == "gpu"
    folder = tmp_path / "run"
    search = Search(tiny(device="gpu"), folder=str(folder), log=_quiet)
    interrupt_after_epoch(search, 1)
    with pytest.raises(KeyboardInterrupt):
        search.run()
    resumed = Search.resume(str(folder), log=_quiet)
    resumed.run()
    assert_same_state(reference.state_dict(), resumed.state_dict())
    # CPU against GPU at DARTS's optimiser values: Adam divides by the running RMS of
    # the gradient, so at the default alpha_lr 0.05 a float32 rounding difference in a
    # near-zero gradient becomes a full step of either sign, and the two runs part by
    # design, not by a bug (seen on an H200: at the defaults the alphas part by more
    # than this tolerance)
    darts = dict(w_lr=0.025, w_lr_min=0.001, alpha_lr=3e-4)
    runs = {}
    for device in ("cpu", "gpu"):
        runs[device] = Search(
            tiny(device=device, **darts), folder=str(tmp_path / device), log=_quiet
        )
        runs[device].run()
    for gpu, cpu in zip(runs["gpu"].history, runs["cpu"].history):
        for key in ("train_loss", "arch_loss", "val_loss"):
            assert gpu[key] == pytest.approx(cpu[key], rel=1e-3), key
    for kind, a in runs["cpu"].model.alphas.items():
        np.testing.assert_allclose(
            backend.to_numpy(runs["gpu"].model.alphas[kind].data), a.data, rtol=1e-3, atol=1e-5
        )


def test_resume_after_interruption_mid_epoch_via_cli(full_run, tmp_path, capsys):
    """Ctrl-C during epoch 2: the checkpoint holds epoch 1, and `--resume` redoes epoch 2
    from there, ending exactly where the uninterrupted run ended."""
    reference, reference_folder = full_run
    folder = tmp_path / "run"
    search = Search(tiny(), folder=str(folder), log=_quiet)
    interrupt_at_weight_step(search, 6)  # epoch 2, step 2 of 4
    with pytest.raises(KeyboardInterrupt):
        search.run()
    assert load_checkpoint(folder / "checkpoint.npz")["epoch"] == 1
    assert main(["search", "--resume", str(folder)]) == 0
    capsys.readouterr()
    assert_same_state(
        load_checkpoint(reference_folder / "checkpoint.npz"),
        load_checkpoint(folder / "checkpoint.npz"),
    )
    for name in ("genotype.json", "genotype.txt", "genotypes/epoch_002.json"):
        assert (folder / name).read_text() == (reference_folder / name).read_text(), name
    strip = [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]
    expected = [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (reference_folder / "metrics.jsonl").read_text().splitlines()
    ]
    assert strip == expected


def test_same_seed_twice_gives_identical_runs(full_run, tmp_path, capsys):
    """The same configuration through the command line reproduces the reference run."""
    _, reference_folder = full_run
    argv = ["search", "--preset", "tiny", "--epochs", "2", "--no-plots"]
    assert main(argv + ["--out", str(tmp_path), "--name", "again"]) == 0
    capsys.readouterr()
    assert_same_state(
        load_checkpoint(reference_folder / "checkpoint.npz"),
        load_checkpoint(tmp_path / "again" / "checkpoint.npz"),
    )


def test_cli_search_end_to_end(tmp_path, capsys):
    code = main(["search", "--preset", "tiny", "--out", str(tmp_path), "--name", "t"])
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "t"
    for name in (
        "config.json",
        "metrics.jsonl",
        "genotype.json",
        "genotype.txt",
        "genotypes/epoch_001.json",
        "checkpoint.npz",
        "plots/curves.png",
        "plots/alpha_reduce.png",  # one cell, a reduction cell: no normal alphas to plot
        "plots/genotype.png",
    ):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    for png in (run / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    config = json.loads((run / "config.json").read_text())
    assert config.pop("produced_by")["python"]  # and what produced the run (provenance.py)
    assert config.pop("format").startswith("minidarts-")  # of its checkpoints
    assert config == make_config("tiny", {"out": str(tmp_path), "name": "t"}).to_dict()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    genotype = load_genotype(run / "genotype.json")
    assert load_genotype(run / "genotypes/epoch_001.json") == genotype
    assert len(genotype.reduce) == 4 and genotype.reduce_concat == [2, 3]
    DartsGenotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    text = (run / "genotype.txt").read_text().strip()
    assert tuple(eval(text, {"Genotype": DartsGenotype})) == tuple(genotype)
    # printed at the end of the epoch: the reduction cell; the one-cell network's
    # normal half (an untrained alpha) is named as unused, not printed as a result
    assert describe_genotype(genotype, ("reduce",)) in out and "normal: untrained" in out
    assert load_checkpoint(run / "checkpoint.npz")["epoch"] == 1


def test_resume_of_a_finished_run_to_more_epochs(tmp_path, capsys):
    argv = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "r"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["search", "--resume", str(tmp_path / "r")]) == 0  # finished: says so
    out = capsys.readouterr().out
    assert f"finished (1/1 epochs); to run longer, --resume {tmp_path / 'r'} --epochs N" in out
    assert main(["search", "--resume", str(tmp_path / "r"), "--epochs", "2"]) == 0
    assert "finished (" not in capsys.readouterr().out
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert load_checkpoint(tmp_path / "r" / "checkpoint.npz")["epoch"] == 2


def test_extending_a_run_stretches_the_cosine_schedule(tmp_path, capsys):
    """--resume --epochs N continues the cosine over N epochs from where it was: the
    learning rate never rises again (it would climb back up after the old T_max)."""
    argv = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "r"]
    assert main([*argv, "--epochs", "2"]) == 0
    assert main(["search", "--resume", str(tmp_path / "r"), "--epochs", "4"]) == 0
    capsys.readouterr()
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    lrs = [json.loads(line)["lr"] for line in lines]
    assert len(lrs) == 4
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), lrs
    cfg = make_config("tiny")
    # epochs 3 and 4 follow the 4-epoch cosine: eta_min + (lr - eta_min)(1 + cos(pi t / 4)) / 2
    for t in (2, 3):
        c = (1 + np.cos(np.pi * t / 4)) / 2
        assert lrs[t] == pytest.approx(cfg.w_lr_min + (cfg.w_lr - cfg.w_lr_min) * c, rel=1e-12)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (["--preset", "tiny", "--epochs", "0"], "epochs must be at least 1"),
    ],
)
def test_cli_errors_in_a_subprocess_have_no_traceback(tmp_path, argv, message):
    proc = subprocess.run(
        [sys.executable, "-m", "minidarts", "search", *argv, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert os.listdir(tmp_path) == []


def _cli_error(argv, capsys):
    """Run main(argv), expecting failure; (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors and the --resume misuse message
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
        (["--batch-size", "-4"], "batch_size must be at least 1"),
        (["--subset", "1"], "subset must be between 2 and 60000"),
        (["--channels", "4", "--nodes", "1"], r"multiplier \(4\) cannot exceed nodes \(1\)"),
        (["--device", "tpu"], "device must be 'cpu' or 'gpu'"),
        (["--seed", "-3"], "seed must be >= 0"),
        (["--preset", "tiny", "--data", "no/such/folder"], "MNIST file not found"),
        (["--config", "absent.toml"], "config file absent.toml does not exist"),
        (["--resume", "no/such/run"], "no checkpoint.npz"),
        (["--resume", "somewhere", "--seed", "2"], "only --epochs may be given"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_cli_errors_are_clear(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = [] if "--resume" in argv else ["--out", str(tmp_path / "runs")]
    code, err = _cli_error(["search", *argv, *out], capsys)
    assert code not in (0, None)
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()


def test_cli_bad_toml_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    code, err = _cli_error(["search", "--config", str(bad)], capsys)
    assert code == 1 and "bad.toml is not valid TOML" in err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epochs = 1\nlearning_rate = 0.1\n")
    code, err = _cli_error(["search", "--config", str(unknown)], capsys)
    assert code == 1 and "unknown config key 'learning_rate'" in err and "valid keys" in err


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "search" in capsys.readouterr().out


def test_resume_to_no_more_epochs_is_refused(tmp_path, capsys):
    argv = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "r"]
    assert main([*argv, "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["search", "--resume", str(tmp_path / "r"), "--epochs", "2"]) == 1
    assert "has done 2 epochs already" in capsys.readouterr().err


@pytest.mark.parametrize("checkpointed", [False, True])
def test_ctrl_c_says_how_to_go_on(tmp_path, monkeypatch, capsys, checkpointed):
    """After Ctrl-C the command names the run folder: --resume it where a checkpoint was
    written, start again (--overwrite) where none was (Ctrl-C in the first epoch)."""

    def run(self):
        if checkpointed:
            Path(self.folder, "checkpoint.npz").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "_run", run)
    args = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "r"]
    assert main(args) == 130
    err = capsys.readouterr().err
    folder = str(tmp_path / "r")
    if checkpointed:
        assert f"continue with --resume {folder}" in err, err
    else:
        assert f"interrupted before the first epoch ended: {folder} has no checkpoint" in err
        assert "--overwrite" in err


def test_an_unknown_option_names_its_command_and_the_nearest_option(capsys):
    """argparse reported a subcommand's unknown option with the top level's usage."""
    with pytest.raises(SystemExit) as stop:
        main(["search", "--lr", "0.1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m minidarts search" in err
    assert "unrecognized arguments: --lr 0.1 (did you mean --w-lr?)" in err
    with pytest.raises(SystemExit):
        main(["train", "--epochz=3"])
    assert "(did you mean --epochs?)" in capsys.readouterr().err


def test_a_value_that_begins_with_a_dash_is_told_to_follow_an_equals_sign(capsys):
    """`--lambdas -1,1` reads as an option: argparse said only 'expected one argument'."""
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "some-run", "--lambdas", "-1,1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --lambdas: expected one argument (a value that begins with '-' is " in err
    assert "written after '=': --lambdas=VALUE)" in err
    with pytest.raises(SystemExit):
        main(["sweep", "some-run", "--lambdas"])  # no value at all: no such hint
    err = capsys.readouterr().err
    assert err.rstrip().endswith("argument --lambdas: expected one argument"), err


def test_ctrl_c_before_a_run_folder_is_taken_names_none(tmp_path, monkeypatch, capsys):
    """An interrupt before this command locked its folder does not name the folder an
    earlier command of the same process locked."""
    from minidarts.jobs.runfolder import LAST_LOCKED

    LAST_LOCKED[:] = [str(tmp_path / "earlier")]

    def run(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "run", run)
    args = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "r"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "earlier" not in err, err
