"""Tests of config.py: defaults, presets, overrides, validation messages, TOML files."""

import dataclasses
import math
from types import SimpleNamespace

import pytest

from minidarts.__main__ import main
from minidarts.jobs import search as search_module
from minidarts.jobs.config import PRESETS, SearchConfig, load_toml, make_config, validate
from minidarts.jobs.search import PROGRESS_EVAL_BATCHES, Search

KEYS = [f.name for f in dataclasses.fields(SearchConfig)]


def test_defaults_are_valid_and_the_papers_search_space():
    cfg = make_config()
    validate(cfg)
    # validation resolves the budget rule's warm-up (None: a quarter of the epochs)
    assert SearchConfig().warmup_epochs is None and cfg.warmup_epochs == cfg.epochs // 4 == 1
    # and the lambdas recorded per epoch besides lambda_min (None: none)
    assert SearchConfig().eval_lambdas is None
    assert cfg.eval_lambdas == []
    assert make_config(None, {"eval_lambdas": [3]}).eval_lambdas == [3.0]
    assert cfg == dataclasses.replace(
        SearchConfig(), warmup_epochs=1, eval_lambdas=cfg.eval_lambdas
    )
    assert (cfg.lambda_min, cfg.lambda_max) == (1e-2, 10.0)
    assert make_config(None, {"epochs": 1}).warmup_epochs == 0
    assert make_config(None, {"epochs": 8}).warmup_epochs == 2
    assert (cfg.channels, cfg.layers, cfg.nodes, cfg.stem_multiplier) == (8, 1, 4, 3)
    assert (cfg.w_lr, cfg.w_lr_min, cfg.w_momentum, cfg.w_weight_decay) == (
        0.2,
        0.001,
        0.9,
        3e-4,
    )
    assert (cfg.alpha_beta1, cfg.alpha_beta2, cfg.alpha_weight_decay) == (0.5, 0.999, 1e-3)
    assert cfg.grad_clip == 5.0 and cfg.batch_size == 64


def test_unknown_key_is_rejected_listing_the_valid_keys():
    with pytest.raises(ValueError, match="unknown config key 'epoch'") as info:
        make_config(None, {"epoch": 3})
    message = str(info.value)
    for key in KEYS:
        assert key in message
    with pytest.raises(ValueError, match=r"^my.toml: unknown config key 'lr'"):
        make_config(None, {"lr": 0.1}, source="my.toml")


def test_dashes_in_keys_mean_underscores():
    cfg = make_config(None, {"batch-size": 16, "w-lr": 0.1})
    assert cfg.batch_size == 16 and cfg.w_lr == 0.1


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", "3", "epochs must be an integer, got '3'"),
        ("epochs", 2.0, "epochs must be an integer"),
        ("epochs", True, "epochs must be an integer"),
        ("epochs", 0, "epochs must be at least 1, got 0"),
        ("channels", -2, "channels must be at least 1"),
        ("batch_size", None, "batch_size cannot be empty"),
        ("subset", "all", "subset must be an integer"),
        ("subset", 1, "subset must be between 2 and 60000"),
        ("subset", 60001, "subset must be between 2 and 60000"),
        ("w_lr", "fast", "w_lr must be a number"),
        ("w_lr", math.inf, "w_lr must be finite"),
        ("w_lr", math.nan, "w_lr must be finite"),
        ("w_lr", -0.1, "w_lr must be >= 0"),
        ("grad_clip", False, "grad_clip must be a number"),
        ("alpha_weight_decay", -1e-3, "alpha_weight_decay must be >= 0"),
        ("alpha_beta1", 1.0, "alpha_beta1 and alpha_beta2 must be in"),
        ("alpha_beta2", -0.5, "alpha_beta1 and alpha_beta2 must be in"),
        ("w_lr_min", 0.5, r"w_lr_min \(0.5\) exceeds w_lr \(0.2\)"),
        ("multiplier", 5, r"multiplier \(5\) cannot exceed nodes \(4\)"),
        ("nodes", 200, r"layers \(1\) x nodes \(200\) make 20300 mixed edges .*at most 1000"),
        ("layers", 72, r"layers \(72\) x nodes \(4\) make 1008 mixed edges"),
        (
            "lambda_min",
            0.1,
            "lambda_min set for a search without a hypernet, which would ignore it",
        ),
        ("hypernet_input", "log", "hypernet_input set for a search without a hypernet"),
        ("hypernet_pivots", 3, "hypernet_pivots set .* ignore it: give hypernet = piecewise"),
        ("hypernet_hidden", 8, "hypernet_hidden set .* ignore it: give hypernet = mlp"),
        ("device", "tpu", "device must be 'cpu' or 'gpu'"),
        ("device", 0, "device must be a string"),
        ("eval_batches", -1, r"eval_batches must be 0 \(the whole split\) or more"),
        ("w_momentum", 1.0, r"w_momentum must be in \[0, 1\), got 1.0"),
        ("plots", "yes", "plots must be true or false"),
        ("name", 5, "name must be a string"),
        ("data_root", ["data"], "data_root must be a string"),
        ("seed", -1, "seed must be"),
        ("seed", 1.5, "seed must be an integer"),
        pytest.param("w_lr", 10**400, "w_lr must be", id="w_lr-huge-int"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(key, value, message):
    with pytest.raises(ValueError, match=f"^options: {message}"):
        make_config(None, {key: value}, source="options")


def test_integers_are_accepted_for_floats_and_stored_as_floats():
    cfg = make_config(None, {"w_lr": 1, "grad_clip": 0})
    assert cfg.w_lr == 1.0 and type(cfg.w_lr) is float and type(cfg.grad_clip) is float


def test_optional_values_may_be_none():
    cfg = make_config(None, {"subset": None, "eval_batches": None, "name": None})
    assert cfg.subset is None and cfg.eval_batches is None


def test_presets():
    tiny = make_config("tiny")
    for key, value in PRESETS["tiny"].items():
        assert getattr(tiny, key) == value
    assert tiny.channels <= 4 and tiny.epochs == 1 and tiny.subset <= 256
    paper = make_config("paper")
    assert paper.subset is None and paper.epochs == 50
    # the paper's optimisers: DARTS's weight settings, the authors' alpha lr 1e-3
    assert (paper.w_lr, paper.alpha_lr, paper.warmup_epochs) == (0.025, 1e-3, 0)
    darts = make_config("darts")
    assert (darts.w_lr, darts.w_lr_min, darts.alpha_lr, darts.warmup_epochs) == (
        0.025,
        0.001,
        3e-4,
        0,
    )
    # the defaults are the CPU budget's, not DARTS's
    default = make_config()
    assert (default.w_lr, default.alpha_lr, default.warmup_epochs) == (0.2, 0.05, 1)
    assert (paper.channels, paper.layers, paper.nodes, paper.batch_size) == (8, 1, 4, 64)
    # overrides win over the preset, which wins over the defaults
    cfg = make_config("tiny", {"epochs": 3})
    assert cfg.epochs == 3 and cfg.channels == tiny.channels


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*\['darts', 'paper', 'tiny'\]"):
        make_config("huge")


def test_preset_override_is_still_validated():
    with pytest.raises(ValueError, match="multiplier .* cannot exceed nodes"):
        make_config("tiny", {"multiplier": 3})  # tiny has 2 nodes


def test_to_dict_round_trip():
    cfg = make_config("tiny", {"seed": 7, "name": "x"})
    d = cfg.to_dict()
    assert set(d) == set(KEYS)
    assert make_config(None, d) == cfg


def test_toml_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        "# a search\n"
        "epochs = 7\n"
        "w_lr = 0.05\n"
        'name = "toml-run"\n'
        "plots = false\n"
        "[network]\n"
        "channels = 6\n"
        "nodes = 3\n"
        "multiplier = 3\n"
    )
    values = load_toml(path)
    assert values == {
        "epochs": 7,
        "w_lr": 0.05,
        "name": "toml-run",
        "plots": False,
        "channels": 6,
        "nodes": 3,
        "multiplier": 3,
    }
    cfg = make_config("tiny", values, source=f"config {path}")
    assert (cfg.epochs, cfg.w_lr, cfg.name, cfg.plots) == (7, 0.05, "toml-run", False)
    assert (cfg.channels, cfg.nodes, cfg.multiplier, cfg.subset) == (6, 3, 3, 256)


def test_toml_unknown_key_names_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = 2\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match=r"run\.toml: unknown config key 'learning_rate'"):
        make_config(None, load_toml(path), source=f"config {path}")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[search]\nepochs = 1\n[train]\nepochs = 3\n", r"epochs is given twice \(section"),
        ("epochs = 1\n[network]\nepochs = 2\n", "given twice .the top level and section"),
        ("[a.b]\nepochs = 1\n", r"b in section \[a\] is a table"),
    ],
)
def test_toml_sections_only_group_keys(tmp_path, text, message):
    """A key in two sections (or at the top and in a section) would let the later one
    win without a word: refused; so are sections within sections."""
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_toml(path)


def test_toml_wrong_type_names_the_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = "ten"\n')
    with pytest.raises(ValueError, match=r"run\.toml: epochs must be an integer"):
        make_config(None, load_toml(path), source=f"config {path}")


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("epochs = \nw_lr = [1,\n")
    with pytest.raises(ValueError, match=r"config file .*broken\.toml is not valid TOML"):
        load_toml(path)
    path.write_bytes(b"\xff\xfe epochs = 1")  # not text at all
    with pytest.raises(ValueError, match=r"broken\.toml is not valid TOML: not UTF-8 text"):
        load_toml(path)


def test_missing_toml_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file .*absent\.toml does not exist"):
        load_toml(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "eval_batches, epoch, limit",
    [(0, 0, None), (0, 3, None), (5, 0, 5), (None, 0, PROGRESS_EVAL_BATCHES), (None, 3, None)],
)
def test_eval_batches_zero_is_the_whole_split_every_epoch(eval_batches, epoch, limit, monkeypatch):
    """--eval-batches 0 (and eval_batches = 0 in a config) evaluates the whole validation
    split after every epoch; unset, the earlier epochs read PROGRESS_EVAL_BATCHES."""
    made = []

    class Recorded:  # search's command line builds the config; the run is not needed
        def __init__(self, cfg, **_):
            made.append(cfg)

        def run(self):
            pass

    monkeypatch.setattr(search_module, "Search", Recorded)
    flag = [] if eval_batches is None else ["--eval-batches", str(eval_batches)]
    assert main(["search", *flag]) == 0
    (cfg,) = made
    assert cfg.eval_batches == eval_batches
    run = SimpleNamespace(cfg=dataclasses.replace(cfg, epochs=3), epoch=epoch)
    assert Search.eval_limit(run) == limit


def test_a_hypernets_settings_go_with_a_hypernet():
    # with one they are taken; the pivots with the piecewise one only
    cfg = make_config(None, {"hypernet": "linear", "lambda_min": 0.1, "hypernet_input": "log"})
    assert (cfg.lambda_min, cfg.hypernet_input) == (0.1, "log")
    assert make_config(None, {"hypernet": "piecewise", "hypernet_pivots": 3}).hypernet_pivots == 3
    with pytest.raises(ValueError, match="hypernet_pivots set for a search with the linear hyp"):
        make_config(None, {"hypernet": "linear", "hypernet_pivots": 3})
    with pytest.raises(ValueError, match="lambda_max, hypernet_input set .* ignore them"):
        make_config(None, {"lambda_max": 5.0, "hypernet_input": "log"})
    # a run's own config, read back to continue it, keeps what it was made with
    saved = {"lambda_min": 0.1, "name": "", "data_std": 0.9, "nodes": 200}
    assert make_config(None, saved, saved=True).lambda_min == 0.1
