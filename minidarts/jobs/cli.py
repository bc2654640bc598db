"""What the `search` and `train` commands share: a run's settings from flags, a TOML
file and a preset, and continuing a stopped run with --resume."""

import argparse
import re
import sys

from .config import load_toml


class Parser(argparse.ArgumentParser):
    """argparse's parser, its error for an option's missing value made clearer: a value
    that begins with '-' (`--lambdas -1,1`) reads as another option, and is written
    after '=' instead (`--lambdas=-1,1`)."""

    def parse_known_args(self, args=None, namespace=None):
        self.given = list(sys.argv[1:] if args is None else args)  # for error()
        return super().parse_known_args(args, namespace)

    def error(self, message):
        missing = re.match(r"argument (-\S+?)(?:/\S+)?: expected one argument$", message)
        given = getattr(self, "given", [])
        after = [given[i + 1] for i, a in enumerate(given[:-1]) if missing and a == missing[1]]
        if missing and any(a.startswith("-") for a in after):
            message += f" (a value that begins with '-' is written after '=': {missing[1]}=VALUE)"
        super().error(message)


def add_run_arguments(parser, flags, defaults, presets, preset_help):
    """--config, --preset, --resume, one flag per config key in `flags`
    ({'--flag': (key, type, help)}) and --no-plots. Flags default to None, so that
    only the ones given override the TOML file and the preset."""
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="read settings from a TOML file (key = value, keys as in config.json); "
        "flags override it",
    )
    parser.add_argument("--preset", choices=sorted(presets), help=preset_help)
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in folder RUN from its last checkpoint (only --epochs may change)",
    )
    for flag, (key, typ, text) in flags.items():
        default = getattr(defaults, key)
        # texts that name their own default (e.g. --name) get no second one, nor do
        # settings that are off by default (None)
        shown = "default" in text or default is None
        parser.add_argument(
            flag,
            dest=key,  # '--data' lands in args.data_root, the config key
            type=typ,
            default=None,
            help=text if shown else f"{text} (default: {default})",
        )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="a new run into a folder that holds one: move the old folder aside to "
        "FOLDER.old-N first (without it such a folder is refused)",
    )


def check_resume_arguments(args, flags):
    """--resume continues with the saved settings: refuse any other setting but --epochs."""
    others = [
        f
        for f, (key, _, _) in flags.items()
        if getattr(args, key, None) is not None and key != "epochs"
    ]
    if args.config or args.preset or args.no_plots or args.overwrite:
        others.append("--config/--preset/--no-plots/--overwrite")
    if others:
        raise ValueError(
            "--resume continues a run with its saved settings; only --epochs may be given "
            f"with it (got {' '.join(others)})"
        )


def config_from_arguments(args, flags, make_config, zero_means_all=()):
    """The validated config of a new run: the preset, then the TOML file, then the
    flags given. For keys in `zero_means_all` a 0 means 'all' (None)."""
    overrides = load_toml(args.config) if args.config else {}
    for key, _, _ in flags.values():
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    for key in zero_means_all:
        if overrides.get(key) == 0:
            overrides[key] = None
    if args.no_plots:
        overrides["plots"] = False
    source = f"config {args.config}" if args.config else "options"
    return make_config(args.preset, overrides, source=source)
