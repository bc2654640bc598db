"""The settings of a retraining run (TrainConfig), its presets and checks, and
reading the genotype it trains."""

import dataclasses
import os
from dataclasses import dataclass

from ..darts.eval_network import check_gene
from ..darts.genotype import load_genotype, unused_halves
from .config import build_config, check_fields, check_request
from .search_space import import_ops_module

FORMAT = "minidarts-train-1"
EVAL_BATCH_SIZE = 256  # test-set batches: larger is faster, and eval-mode BN ignores the batch


@dataclass
class TrainConfig:
    """A retraining run. Optimiser values are DARTS's (train.py for CIFAR-10).

    Default network: 2 cells with C = 8. By DARTS's rule (cells L//3 and 2L//3 reduce)
    both are reduction cells, 28x28 -> 14x14 -> 7x7, so the network uses only the
    searched reduction cell: the only cell type the paper's one-cell search trains (its
    normal alpha never enters the loss). layers=1 sees only one cell on a 14x14 map;
    layers=3 adds a normal cell at the full 28x28 resolution, which costs more than the
    two reduction cells together (measured: 0.10 s per batch of 64 for 2 cells at C=8 on
    a 2-core CPU, 0.18 s for 3 cells, 0.46 s for 3 cells at C=16).

    Default length: 3 epochs, the fewest that reached 99% test accuracy. Measured on
    the 2-core CPU (other jobs sharing it) with the genotype of a default 4-epoch search
    (mostly pools, 13058 weights): test accuracy 97.90 / 98.59 / 99.16% after epochs
    1 / 2 / 3, 1m23s to 2m45s per epoch with the test evaluation (depending on the other
    jobs), 6m11s in all; seed 1: 97.83 / 97.19 / 99.17%; the 2-epoch cosine stopped at
    98.89%. A hand-written genotype of separable and dilated convolutions (23474
    weights) gave 97.59 / 98.63 / 99.08%. The margin over 99% is small (0.1-0.2 points):
    --epochs 4 buys more at 4/3 of the time."""

    genotype: str | None = None  # genotype JSON file (or a search run folder holding one)
    ops_module: str | None = None  # imported first: registers the genotype's custom operations
    # data
    subset: int | None = None  # training images used; None = all 60000
    test_subset: int | None = None  # test images evaluated each epoch; None = all 10000
    # training images held out and evaluated instead of the test images, which are
    # then never read (for choosing a setting, e.g. the learning rate); 0: none
    holdout: int = 0
    data_root: str | None = None  # folder with the four MNIST IDX files; None = data/mnist
    # per-channel statistics of the IDX images' pixels in [0, 1] (None: MNIST's 0.1307
    # and 0.3081; Fashion-MNIST: 0.2860 and 0.3530)
    data_mean: float | None = None
    data_std: float | None = None
    # network
    channels: int = 8
    layers: int = 2
    stem_multiplier: int = 3
    # schedule
    epochs: int = 3
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    # SGD with a cosine-annealed learning rate and a gradient-norm clip
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # output
    out: str = "runs"
    name: str | None = None
    log_every: int = 50
    plots: bool = True

    def to_dict(self):
        return dataclasses.asdict(self)


PRESETS = {
    # Tiny: a few steps on a few images, for tests and smoke runs.
    "tiny": dict(
        subset=256, test_subset=256, epochs=1, batch_size=32, channels=4, layers=1, log_every=1
    ),
    # DARTS-like size: 3 cells (normal at 28x28, then two reductions), C = 16, for a GPU.
    "large": dict(layers=3, channels=16, epochs=10),
}

_POSITIVE_INT = {"channels", "layers", "stem_multiplier", "epochs", "batch_size", "log_every"}
_NONNEG_FLOAT = {"lr", "lr_min", "momentum", "weight_decay", "grad_clip"}


def make_train_config(preset=None, overrides=None, source="arguments", saved=False):
    """A validated TrainConfig from a preset name and a dict of overrides (saved: a
    run's own config, read back to continue it; see validate_train_config)."""
    cfg = build_config(TrainConfig, PRESETS, preset, overrides, source)
    validate_train_config(cfg, source, saved)
    return cfg


def validate_train_config(cfg, source="config", saved=False):
    """Reject values of the wrong type or range, naming the key. saved: the config of
    a run being continued, which skips a new run's request (config.check_request)."""
    check_fields(cfg, source, _POSITIVE_INT, _NONNEG_FLOAT)
    if not cfg.momentum < 1:  # at 1 or more the momentum grows without bound
        raise ValueError(f"{source}: momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.genotype is None:
        raise ValueError(f"{source}: a genotype is required (--genotype FILE.json)")
    if cfg.ops_module is not None:
        import_ops_module(cfg.ops_module, source)
    if cfg.subset is not None and not 1 <= cfg.subset <= 60000:
        raise ValueError(f"{source}: subset must be between 1 and 60000 images, got {cfg.subset}")
    if cfg.test_subset is not None and not 1 <= cfg.test_subset <= 10000:
        raise ValueError(
            f"{source}: test_subset must be between 1 and 10000 images, got {cfg.test_subset}"
        )
    if isinstance(cfg.holdout, bool) or not isinstance(cfg.holdout, int):
        raise ValueError(f"{source}: holdout must be an int (images), got {cfg.holdout!r}")
    if not 0 <= cfg.holdout <= 30000:
        raise ValueError(f"{source}: holdout must be between 0 and 30000 images, got {cfg.holdout}")
    if cfg.holdout and cfg.subset is not None and cfg.subset > 60000 - cfg.holdout:
        raise ValueError(
            f"{source}: subset ({cfg.subset}) + holdout ({cfg.holdout}) exceed the 60000 "
            "training images"
        )
    if not saved:
        check_request(cfg, source)
    if cfg.lr_min > cfg.lr:
        raise ValueError(f"{source}: lr_min ({cfg.lr_min}) exceeds lr ({cfg.lr})")


def read_genotype(path):
    """The Genotype in `path`: a genotype JSON file (save_genotype's format), or a
    search run folder, whose genotype.json is read. Clear errors for a missing file
    and for a file that is not a genotype."""
    if os.path.isdir(path):
        path = os.path.join(path, "genotype.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"genotype file {path} does not exist")
    try:
        genotype = load_genotype(path)
        for kind in ("normal", "reduce"):  # the shape of each cell, named by the file
            check_gene(getattr(genotype, kind), getattr(genotype, f"{kind}_concat"), f"{kind} cell")
        return genotype
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a genotype JSON file (not UTF-8 text)") from None
    except ValueError as e:
        hint = " (train --ops-module registers it)" if "unknown operation" in str(e) else ""
        where = "" if str(e).startswith(str(path)) else f"genotype file {path}: "
        raise ValueError(f"{where}{e}{hint}") from None


def check_used_halves(path, kinds, layers):
    """Refuse to build cells from a half of the genotype that its search marked unused
    (the one-cell search's normal cell: its alpha never entered the loss)."""
    if os.path.isdir(path):
        path = os.path.join(path, "genotype.json")
    unused = [k for k in unused_halves(path) if k in kinds]
    if unused:
        raise ValueError(
            f"{path}: its {' and '.join(unused)} cell is marked unused (the search network "
            f"had no such cell, so its alpha was never trained), but a network of {layers} "
            "cells has one; retrain with --layers 2 or fewer (reduction cells only), or "
            "search with --layers 3 or more"
        )
