"""`python -m minidarts train`: its flags and what it runs."""

from .cli import add_run_arguments, check_resume_arguments, config_from_arguments
from .train import Train
from .train_config import PRESETS, TrainConfig, make_train_config

# --- command line ----------------------------------------------------------------

# flag -> (config key, type, help)
_TRAIN_FLAGS = {
    "--genotype": (
        "genotype",
        str,
        "genotype JSON file to train (or a search run folder: its genotype.json)",
    ),
    "--ops-module": (
        "ops_module",
        str,
        "a module name or .py file imported first, that registers the genotype's custom operations",
    ),
    "--layers": ("layers", int, "number of cells (cells L//3 and 2L//3 reduce)"),
    "--channels": ("channels", int, "C, channels of the first cell"),
    "--epochs": ("epochs", int, "training epochs"),
    "--batch-size": ("batch_size", int, "images per training batch"),
    "--lr": ("lr", float, "initial SGD learning rate (cosine-annealed to --lr-min)"),
    "--lr-min": ("lr_min", float, "final learning rate of the cosine"),
    "--seed": ("seed", int, "random seed: same seed, same numbers"),
    "--device": ("device", str, "cpu or gpu (gpu needs CuPy)"),
    "--subset": ("subset", int, "train on N of the 60000 training images; 0 = all (default: all)"),
    "--test-subset": (
        "test_subset",
        int,
        "evaluate the first N test images; 0 = all (default: all 10000)",
    ),
    "--out": ("out", str, "folder for run folders"),
    "--name": ("name", str, "run folder name (default: train-DATE-TIME)"),
    "--data": ("data_root", str, "folder with the MNIST IDX files (default: data/mnist)"),
    "--data-mean": ("data_mean", float, "mean of the data's pixels in [0, 1] (default: MNIST's)"),
    "--data-std": ("data_std", float, "their standard deviation (default: MNIST's)"),
    "--log-every": ("log_every", int, "print a progress line every N steps"),
}


def add_train_parser(subparsers):
    """Add the `train` subcommand to an argparse subparsers object; returns its parser."""
    defaults = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="retrain a found architecture (genotype) from scratch on MNIST",
        description="Build the discrete network of a genotype (DARTS's evaluation network) "
        "and train it from scratch on the 60000 MNIST training images, reporting the test "
        f"accuracy each epoch. Without flags: {defaults.layers} cells, C={defaults.channels}, "
        f"{defaults.epochs} epochs (99.1-99.2% test accuracy in about 6 minutes on a 2-core "
        "CPU, measured). "
        "Writes a run folder with metrics, plots, summary and a checkpoint per epoch.",
    )
    add_run_arguments(
        p,
        _TRAIN_FLAGS,
        defaults,
        PRESETS,
        "tiny: a smoke test; large: 3 cells, C=16, 10 epochs (for a GPU)",
    )
    return p


def run_train(args):
    """Carry out `python -m minidarts train` from its parsed arguments."""
    if args.resume:
        check_resume_arguments(args, _TRAIN_FLAGS)
        Train.resume(args.resume, epochs=args.epochs).run()
        return
    cfg = config_from_arguments(
        args, _TRAIN_FLAGS, make_train_config, zero_means_all=("subset", "test_subset")
    )
    Train(cfg, overwrite=args.overwrite).run()


__all__ = ["Train", "TrainConfig", "add_train_parser", "make_train_config", "run_train"]
