"""Command line: `python -m minidarts search [options]` (see `--help`)."""

import os
import sys
import warnings

from .jobs.cli import add_run_arguments, check_resume_arguments, config_from_arguments
from .jobs.config import FLOAT32_MAX, PRESETS, SearchConfig, make_config
from .jobs.errors import describe_error
from .jobs.search_space import parse_list

# flag -> (config key, type, help)
_SEARCH_FLAGS = {
    "--epochs": ("epochs", int, "search epochs"),
    "--batch-size": ("batch_size", int, "images per batch (train and val batches alike)"),
    "--subset": (
        "subset",
        int,
        "use N training images (split 50/50 into search-train and search-val); 0 = all 60000",
    ),
    "--channels": ("channels", int, "C, channels of the first cell (the paper: 8)"),
    "--layers": ("layers", int, "number of cells (the paper: 1, a reduction cell)"),
    "--nodes": ("nodes", int, "intermediate nodes per cell (the paper: 4)"),
    "--seed": ("seed", int, "random seed: same seed, same numbers"),
    "--device": ("device", str, "cpu or gpu (gpu needs CuPy)"),
    "--out": ("out", str, "folder for run folders"),
    "--name": ("name", str, "run folder name (default: search-DATE-TIME)"),
    "--data": ("data_root", str, "folder with the MNIST IDX files (default: data/mnist)"),
    "--data-mean": (
        "data_mean",
        float,
        "mean of the data's pixels in [0, 1] (default: MNIST's 0.1307; Fashion-MNIST 0.2860)",
    ),
    "--data-std": (
        "data_std",
        float,
        "their standard deviation (default: MNIST's 0.3081; Fashion-MNIST 0.3530)",
    ),
    "--eval-batches": (
        "eval_batches",
        int,
        "validation batches evaluated per epoch; 0 = all (default: all after the last "
        "epoch, 16 after the others)",
    ),
    "--log-every": ("log_every", int, "print a progress line every N steps"),
    "--w-lr": ("w_lr", float, "initial SGD learning rate of the weights (DARTS: 0.025)"),
    "--alpha-lr": ("alpha_lr", float, "Adam learning rate of the architecture (DARTS: 3e-4)"),
    "--warmup-epochs": (
        "warmup_epochs",
        int,
        "first epochs train only the weights, alpha frozen (DARTS: 0)",
    ),
    "--penalty": (
        "penalty",
        float,
        "the baseline: a fixed lambda, minimising L_val + lambda * complexity(alpha)",
    ),
    "--hypernet": (
        "hypernet",
        str,
        "linear (eq. 5: alpha = lambda b1 + b2), piecewise (alpha piecewise linear in log "
        "lambda, K pivots: the authors' follow-up) or mlp: search a whole family of "
        "architectures over lambda",
    ),
    "--hypernet-pivots": ("hypernet_pivots", int, "K, the pivots of the piecewise hypernet"),
    "--hypernet-input": (
        "hypernet_input",
        str,
        "what the hypernet sees: lambda (eq. 5) or log (log10 lambda scaled to [0, 1])",
    ),
    "--order": (
        "order",
        int,
        "1: first-order DARTS; 2: the architecture gradient through one virtual weight step",
    ),
    "--relaxation": (
        "relaxation",
        str,
        "softmax (DARTS) or sigmoid (Fair DARTS: independent weights, zero-one loss)",
    ),
    "--zero-one-weight": (
        "zero_one_weight",
        float,
        "weight of Fair DARTS's zero-one loss (sigmoid only; default: 10 with sigmoid, "
        "0 with softmax)",
    ),
    "--primitives": (
        "primitives",
        parse_list,
        "the candidate operations, comma-separated (default: DARTS's 8); custom ones are "
        "registered by --ops-module",
    ),
    "--ops-module": (
        "ops_module",
        str,
        "a module name or .py file imported first, that registers operations "
        "(darts.operations.register_operation)",
    ),
    "--lambda-min": ("lambda_min", float, "smallest lambda drawn by a hypernet search"),
    "--lambda-max": ("lambda_max", float, "largest lambda drawn by a hypernet search"),
}


def _search_parser(sub):
    defaults = SearchConfig()
    p = sub.add_parser(
        "search",
        help="search an architecture on MNIST (DARTS, first or second order)",
        description="DARTS search on the shipped MNIST. Without flags: the paper's search "
        f"space on {defaults.subset} training images for {defaults.epochs} epochs (a few "
        "minutes on a 2-core CPU). Writes a run folder with the genotype, metrics, plots "
        "and a checkpoint per epoch.",
    )
    add_run_arguments(
        p,
        _SEARCH_FLAGS,
        defaults,
        PRESETS,
        "darts: DARTS's optimiser settings (w_lr 0.025, alpha_lr 3e-4, no warm-up); paper: "
        "the paper's full search (60k images, 50 epochs, DARTS's weight optimiser, alpha_lr "
        "1e-3; for a GPU); tiny: a smoke test",
    )
    return p


def _cmd_search(args):
    from .jobs.search import Search

    if args.resume:
        check_resume_arguments(args, _SEARCH_FLAGS)
        Search.resume(args.resume, epochs=args.epochs).run()
        return
    Search(
        config_from_arguments(args, _SEARCH_FLAGS, make_config, ("subset",)),
        overwrite=args.overwrite,
    ).run()


def _sweep_parser(sub):
    p = sub.add_parser(
        "sweep",
        help="evaluate a finished hypernet search at many lambdas (no training)",
        description="Walk lambdas through a finished hypernet search: derived genotype, its "
        "cell weights, expected complexity and supernetwork validation accuracy at "
        "alpha(lambda). Writes RUN/sweep/ (sweep.csv, sweep.md, pareto.png, complexity.png, "
        "cells.png).",
    )
    p.add_argument("run", metavar="RUN", help="the run folder of a hypernet search")
    p.add_argument(
        "--lambdas",
        help="comma-separated lambdas, e.g. 1e-5,1e-4,1e-3 (default: 9 log-spaced values "
        "over the run's [lambda_min, lambda_max])",
    )
    p.add_argument(
        "--eval-batches",
        type=int,
        help="validation batches per lambda; 0 = the whole split (default: the run's)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="RUN/sweep exists: move it aside to RUN/sweep.old-N first (else refused)",
    )


def _parse_lambdas(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lambdas: expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= FLOAT32_MAX for v in values):
        raise ValueError(
            f"--lambdas: expected positive numbers finite in float32 (<= {FLOAT32_MAX:.3g}), "
            f"got {text!r}"
        )
    return values


def _cmd_sweep(args):
    from .jobs.sweep import run_sweep

    lambdas = _parse_lambdas(args.lambdas) if args.lambdas else None
    if args.eval_batches is not None and args.eval_batches < 0:
        raise ValueError(f"--eval-batches must be >= 0 (0: all), got {args.eval_batches}")
    run_sweep(args.run, lambdas, args.eval_batches, overwrite=args.overwrite)


def _experiment_parser(sub):
    p = sub.add_parser(
        "experiment",
        help="the experiments: pareto (the paper's claim, every cell retrained) or paper "
        "(its table of supernetwork accuracies)",
        description="pareto: per seed, one hypernet search and its sweep, K penalised DARTS "
        "searches, plain DARTS and random cells, every cell retrained with one protocol; writes "
        "the table, the Pareto figure and the hypervolumes (jobs/pareto.py). paper: plain "
        "DARTS, DARTS with a fixed penalty at lambda = 1e-4 ... 1e-1 and two hypernet searches "
        "with the same budget, and the paper's table of validation accuracy by epoch. An "
        "interrupted experiment continues where it stopped.",
    )
    p.add_argument("which", choices=["pareto", "paper"], help="the experiment to run")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="pareto: retrain on 60000 x S images (the searches stay the default ones; 0.25 "
        "is the quick version). paper: shrink data (60000 x S images) and epochs (100 x S), "
        "1 is the paper's size, for a GPU (default: 1)",
    )
    p.add_argument("--seeds", type=int, help="pareto: seeds 0..N-1 (default: 1)")
    p.add_argument(
        "--workers", type=int, help="pareto: jobs run side by side (default: one per core)"
    )
    p.add_argument("--penalties", type=int, help="pareto: K penalised searches (default: 4)")
    p.add_argument("--random-cells", type=int, help="pareto: random cells per seed (default: 10)")
    p.add_argument(
        "--long-epochs",
        type=int,
        help="pareto: epochs of the longer retraining of the best searched cell "
        "(default: 10 at scale 1, none below; 0: none)",
    )
    p.add_argument("--device", default="cpu", help="paper: cpu or gpu (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="paper: random seed (default: 0)")
    p.add_argument("--out", default="runs", help="folder for the experiment folder")
    p.add_argument(
        "--name",
        help="experiment folder name (default: experiment-pareto, experiment-paper-scaleS)",
    )


def _cmd_experiment(args):
    if args.which == "pareto":
        from .jobs.pareto import run_pareto

        # options of the other experiment would be ignored without a word: refuse them
        if args.device != "cpu":
            raise ValueError(
                "experiment pareto runs its jobs side by side on the CPU's cores; --device is "
                "an option of experiment paper"
            )
        if args.seed != 0:
            raise ValueError("experiment pareto runs seeds 0..N-1: give --seeds N, not --seed")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")

        counts = dict(seeds=args.seeds, penalties=args.penalties, random_cells=args.random_cells)
        run_pareto(  # the counts not given keep run_pareto's defaults
            args.scale,
            workers=args.workers,
            long_epochs=args.long_epochs,
            out=args.out,
            name=args.name,
            **{k: v for k, v in counts.items() if v is not None},
        )
        return
    from .jobs.experiment import run_experiment

    pareto_only = {
        "--seeds": args.seeds,
        "--workers": args.workers,
        "--penalties": args.penalties,
        "--random-cells": args.random_cells,
        "--long-epochs": args.long_epochs,
    }
    given = [option for option, value in pareto_only.items() if value is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: option(s) of experiment pareto, which experiment paper "
            "does not take"
        )
    run_experiment(args.scale, args.device, args.seed, args.out, args.name)


# commands with a command line of their own: `python -m minidarts assign ...` hands
# the rest of the line to it (and `python -m minidarts.assign ...` still works)
_DELEGATED = {
    "assign": ("classroom.assign", "write a student copy with the solution regions stubbed"),
    "grade": ("classroom.grade", "grade student copies task by task against the course's tests"),
    "bench": ("jobs.bench", "time the kernels and a search step"),
}


def _refuse_unknown(parser, unknown):
    """Exit as argparse does (status 2), but with the usage of the command that was
    given, not the top level's, and the nearest option where one is close."""
    import difflib

    options = [o for action in parser._actions for o in action.option_strings]
    hint = ""
    for arg in unknown:
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            break
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _delegate(command, argv):
    import importlib

    module = importlib.import_module(f".{_DELEGATED[command][0]}", __package__)
    return module.main(argv, prog=f"python -m minidarts {command}") or 0


def main(argv=None):
    """Run the command line; returns the exit status. Any fault is one line
    `error: ...` on stderr (status 1), and NumPy's floating-point warnings of a
    diverging run stay quiet (the run's own check names the settings); `--debug`
    anywhere on the line, or MINIDARTS_DEBUG=1, shows the traceback and the warnings
    instead. Jobs run in worker processes (`--workers`) keep NumPy's warnings."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("MINIDARTS_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if argv and argv[0] in _DELEGATED:
        if debug and os.environ.get("MINIDARTS_DEBUG") != "1":
            # --debug reaches a delegated tool as the variable it reads (jobs/errors.py)
            old = os.environ.get("MINIDARTS_DEBUG")
            os.environ["MINIDARTS_DEBUG"] = "1"
            try:
                return _delegate(argv[0], argv[1:])
            finally:
                if old is None:
                    del os.environ["MINIDARTS_DEBUG"]
                else:
                    os.environ["MINIDARTS_DEBUG"] = old
        return _delegate(argv[0], argv[1:])
    from .jobs.cli import Parser

    parser = Parser(
        prog="python -m minidarts",
        description="minidarts: differentiable architecture search with complexity control",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _search_parser(sub)
    from .jobs.train_cli import add_train_parser, run_train

    add_train_parser(sub)
    _sweep_parser(sub)
    _experiment_parser(sub)
    for command, (_, text) in _DELEGATED.items():
        sub.add_parser(command, help=text + f" (see: python -m minidarts {command} --help)")
    from .jobs.runfolder import LAST_LOCKED

    LAST_LOCKED.clear()  # an interrupt names this command's run, not an earlier one's
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse_unknown(sub.choices.get(args.command, parser), unknown)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            if not debug:
                # NumPy's overflow / invalid-value warnings of a diverging run would come
                # before the run's own check (jobs/errors.py: check_finite), the one line
                # that names the settings to lower
                warnings.filterwarnings(
                    "ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning
                )
            if args.command == "search":
                _cmd_search(args)
            elif args.command == "train":
                run_train(args)
            elif args.command == "sweep":
                _cmd_sweep(args)
            elif args.command == "experiment":
                _cmd_experiment(args)
    except KeyboardInterrupt:
        print("\n" + _interrupted(args.command), file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 1
    return 0


def _interrupted(command):
    """What to do after Ctrl-C: continue from the checkpoint, where one was written."""
    from .jobs.runfolder import LAST_LOCKED

    if command == "experiment":
        return "interrupted: run the same command again to continue where it stopped"
    if command not in ("search", "train") or not LAST_LOCKED:
        return "interrupted"
    folder = LAST_LOCKED[0]
    if os.path.exists(os.path.join(folder, "checkpoint.npz")):
        return (
            f"interrupted: the last finished epoch is in {folder}/checkpoint.npz; continue "
            f"with --resume {folder}"
        )
    return (
        f"interrupted before the first epoch ended: {folder} has no checkpoint to continue "
        "from; start again (--overwrite reuses the folder)"
    )


if __name__ == "__main__":
    sys.exit(main())
