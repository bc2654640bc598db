"""Search configuration: every knob of a run in one dataclass, with presets.

Values come, later ones winning, from: the defaults below, a preset
(`--preset paper`), a TOML file (`--config FILE.toml`, flat `key = value`),
and command-line flags. Unknown keys and bad values are rejected with a message
that names the key and what was expected.
"""

import dataclasses
import math
from dataclasses import dataclass, fields

from ..engine import backend
from .runfolder import check_folder_name
from .search_space import check_primitives, import_ops_module

# the largest float32: a setting beyond it is finite in Python and inf in training
FLOAT32_MAX = float(backend.numpy.finfo(backend.numpy.float32).max)


@dataclass
class SearchConfig:
    """A search run. Defaults: the paper's search space on a subset of MNIST sized to
    finish in a few minutes on a 2-core CPU (188 steps), with learning rates and a
    warm-up chosen for that budget by measurement (BUDGET_RULE below); DARTS's own
    optimiser values, tuned for ~23,000 steps, are the `darts` preset."""

    # data
    subset: int | None = 6000  # training images used (split 50/50); None = all 60k
    data_root: str | None = None  # folder with the four MNIST IDX files; None = data/mnist
    # per-channel statistics of the IDX images' pixels in [0, 1] (None: MNIST's 0.1307
    # and 0.3081; Fashion-MNIST: 0.2860 and 0.3530)
    data_mean: float | None = None
    data_std: float | None = None
    # validation batches per epoch-end evaluation; 0: all; None: all after the last
    # epoch, 16 (1024 images) after the earlier ones
    eval_batches: int | None = None
    # network (the paper: C=8, one cell, 4 nodes, stem multiplier 3)
    channels: int = 8
    layers: int = 1
    nodes: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    # schedule
    epochs: int = 4
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    # weights w: SGD, cosine-annealed learning rate, gradient-norm clip
    w_lr: float = 0.2  # DARTS: 0.025 (see BUDGET_RULE)
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # the architecture gradient: 1 (first-order DARTS) or 2 (through one virtual weight step)
    order: int = 1
    # the mixing weights: "softmax" over each edge's operations (DARTS, eq. 2) or
    # "sigmoid", every operation weighted independently (Fair DARTS)
    relaxation: str = "softmax"
    # w01 of Fair DARTS's zero-one loss (sigmoid only); None: 10 with sigmoid (Fair
    # DARTS's value), 0 with softmax; 0 disables it
    zero_one_weight: float | None = None
    # architecture alpha: Adam
    # epochs at the start that train only the weights (alpha frozen), so that the
    # parametric operations have learned something before alpha compares them with
    # the parameter-free ones (a warm-up as in PC-DARTS / P-DARTS; DARTS: 0)
    warmup_epochs: int | None = None  # None: a quarter of the epochs (1 of 4); DARTS: 0
    alpha_lr: float = 0.05  # DARTS: 3e-4, the paper's authors: 1e-3
    alpha_beta1: float = 0.5
    alpha_beta2: float = 0.999
    alpha_weight_decay: float = 1e-3
    # complexity control (section 2.2 of the paper)
    penalty: float = 0.0  # baseline: a fixed lambda in L_val + lambda * complexity
    hypernet: str | None = None  # None (plain DARTS), "linear" (eq. 5), "piecewise" or "mlp"
    hypernet_input: str = "lambda"  # "lambda" (eq. 5) or "log": log10(lambda) scaled to [0, 1]
    hypernet_hidden: int = 16  # hidden units of the MLP hypernet (one layer)
    hypernet_pivots: int = 5  # K, alpha matrices of the piecewise hypernet
    # the search space: the candidate operations of every edge (None: DARTS's 8),
    # names registered with darts.operations.register_operation, e.g. by ops_module:
    # a module name or .py file imported first (see jobs/search_space.py)
    primitives: list | None = None
    ops_module: str | None = None
    # a hypernet search evaluates alpha(lambda) after recomputing the batch-norm
    # statistics at it on this many search-train batches (0: the running statistics,
    # an average over every lambda trained; see jobs/evaluate.py)
    bn_recalibration_batches: int = 10  # 5 / 10 / 20 / 40 agree within 0.3 points
    # lambda is drawn log-uniformly from [lambda_min, lambda_max]: from a penalty too
    # small to matter (complexity in [0, 1] against a validation loss of ~0.15) to one
    # that empties the cell (measured: the complexity of alpha(10) is ~0; see README)
    lambda_min: float = 1e-2
    lambda_max: float = 10.0
    # how the discrete cell is read off softmax(alpha): "darts" (DARTS's rule) or
    # "expected-cost" (darts/genotype.py); None: DARTS's rule for plain DARTS, the
    # expected-cost rule for complexity-controlled searches (hypernet or penalty)
    genotype_rule: str | None = None
    # lambdas recorded every epoch besides lambda_min (each costs an evaluation with
    # its batch-norm recalibration, ~9 s a lambda and epoch at the defaults); None:
    # none, the sweep afterwards walks the whole range. e.g. [10.0] shows the top.
    eval_lambdas: list | None = None
    # output
    out: str = "runs"
    name: str | None = None
    log_every: int = 10
    plots: bool = True

    def to_dict(self):
        return dataclasses.asdict(self)


# How the defaults follow from the budget. DARTS's settings (w_lr 0.025, alpha_lr
# 3e-4, no warm-up) were tuned for 50 epochs of 469 steps; at the CPU default of
# 188 steps they leave the supernetwork at 61% validation accuracy and alpha at
# uniform +- 0.006. Measured on the search-validation split only (README, "Choosing
# the defaults"): at a few hundred steps the weights need w_lr 0.2 (75% -> 97% after
# 300 weight-only steps), and alpha needs ~100x DARTS's rate to move at all; one
# warm-up epoch (weights only) keeps the parameter-free operations from taking the
# edges before the convolutions have learned anything. So:
#     budget of a few hundred steps (the defaults):  w_lr 0.2, alpha_lr 0.05, warm-up a
#         quarter of the epochs (1 of the default 4)
#     budget of ~23,000 steps (50 epochs, presets darts / paper): DARTS's values
BUDGET_RULE = (
    "a few hundred steps: w_lr 0.2, alpha_lr 0.05, warm-up epochs // 4; "
    "50 epochs (presets darts, paper): DARTS's values"
)

_DARTS_OPTIMISERS = dict(w_lr=0.025, w_lr_min=0.001, alpha_lr=3e-4, warmup_epochs=0)

PRESETS = {
    # DARTS's exact optimiser settings (Liu et al., 2019), on the default data budget
    "darts": dict(_DARTS_OPTIMISERS),
    # The paper's full search: 60k images (30k + 30k), 50 epochs, DARTS's weight
    # optimiser and the authors' architecture learning rate (1e-3). Meant for a GPU.
    "paper": dict(_DARTS_OPTIMISERS, subset=None, epochs=50, alpha_lr=1e-3),
    # Tiny: a few steps, for tests and smoke runs.
    "tiny": dict(
        subset=256,
        epochs=1,
        batch_size=32,
        channels=4,
        nodes=2,
        multiplier=2,
        eval_batches=2,
        log_every=1,
    ),
}

_POSITIVE_INT = {
    "hypernet_hidden",
    "hypernet_pivots",
    "channels",
    "layers",
    "nodes",
    "multiplier",
    "stem_multiplier",
    "epochs",
    "batch_size",
    "log_every",
}
_NONNEG_FLOAT = {
    "penalty",
    "zero_one_weight",
    "w_lr",
    "w_lr_min",
    "w_momentum",
    "w_weight_decay",
    "grad_clip",
    "alpha_lr",
    "alpha_weight_decay",
}


def build_config(cls, presets, preset=None, overrides=None, source="arguments"):
    """An (unvalidated) config dataclass `cls` from a preset name and overrides,
    rejecting unknown keys with the list of valid ones."""
    values = {}
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(presets)}")
        values.update(presets[preset])
    known = {f.name for f in fields(cls)}
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if key not in known:
            raise ValueError(
                f"{source}: unknown config key {key!r}; valid keys: {', '.join(sorted(known))}"
            )
        values[key] = value
    return cls(**values)


def check_request(cfg, source):
    """What a new run is asked for, checked where a search and a retraining share it
    (a run continued from its checkpoint keeps the settings it was made with: it skips
    these, and the cells' checks of search_request). data_mean and data_std describe
    the IDX images' pixels scaled to [0, 1]: a mean outside [0, 1] (a sign or a scale
    typed wrong) or a std outside [0.01, 0.5] (the std of values in [0, 1] is at most
    0.5; below 0.01 the inputs pass 100 and a step overflows) is refused, not a silently
    shifted or degenerate input. A run's name is a folder of its own inside --out (not
    empty, ".", or ".." and above, which would move --out or a folder above it aside);
    it is kept normalised ("a/" is "a")."""
    if cfg.data_mean is not None and not 0.0 <= cfg.data_mean <= 1.0:
        raise ValueError(
            f"{source}: data_mean must be in [0, 1] (the mean of the pixels scaled to "
            f"[0, 1]; MNIST's is 0.1307), got {cfg.data_mean}"
        )
    if cfg.data_std is not None and not 0.01 <= cfg.data_std <= 0.5:
        raise ValueError(
            f"{source}: data_std must be in [0.01, 0.5] (the std of the pixels scaled to "
            f"[0, 1] is at most 0.5; MNIST's is 0.3081), got {cfg.data_std}"
        )
    if cfg.name is not None:
        cfg.name = check_folder_name(cfg.name, source)


def check_fields(cfg, source, positive_int=(), nonneg_float=()):
    """Check every field of a config dataclass against its annotated type (int, float,
    str, bool, optional with None), and the ranges named: keys in `positive_int` must
    be >= 1, keys in `nonneg_float` >= 0. Floats are normalised to float."""
    for f in fields(cfg):
        key, value, typ = f.name, getattr(cfg, f.name), f.type
        args = getattr(typ, "__args__", ())
        optional = type(None) in args
        base = (args[0] if args else typ).__name__
        if value is None:
            if not optional:
                raise ValueError(f"{source}: {key} cannot be empty")
            continue
        if base == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{source}: {key} must be an integer, got {value!r}")
        if base == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{source}: {key} must be a number, got {value!r}")
            try:
                value = float(value)
            except OverflowError:  # an int beyond the float range
                value = math.inf
            if not math.isfinite(value):
                raise ValueError(f"{source}: {key} must be finite, got {getattr(cfg, key)!r}")
            if abs(value) > FLOAT32_MAX:  # finite in float64, inf in the float32 of training
                raise ValueError(
                    f"{source}: {key} = {value:g} overflows float32, the dtype training "
                    f"computes in (|value| <= {FLOAT32_MAX:.3g})"
                )
            setattr(cfg, key, value)
        if base == "str" and not isinstance(value, str):
            raise ValueError(f"{source}: {key} must be a string, got {value!r}")
        if base == "bool" and not isinstance(value, bool):
            raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
        if key in positive_int and value < 1:
            raise ValueError(f"{source}: {key} must be at least 1, got {value}")
        if key in nonneg_float and value < 0:
            raise ValueError(f"{source}: {key} must be >= 0, got {value}")
    if getattr(cfg, "seed", 0) < 0:  # numpy's generators take only non-negative seeds
        raise ValueError(f"{source}: seed must be >= 0, got {cfg.seed}")
    if getattr(cfg, "device", "cpu") not in ("cpu", "gpu"):
        raise ValueError(f"{source}: device must be 'cpu' or 'gpu', got {cfg.device!r}")


def make_config(preset=None, overrides=None, source="arguments", saved=False):
    """A validated SearchConfig from a preset name and a dict of overrides (saved: a
    run's own config, read back to continue it; see validate)."""
    cfg = build_config(SearchConfig, PRESETS, preset, overrides, source)
    validate(cfg, source, saved)
    return cfg


MAX_MIXED_EDGES = 1000  # the search network's mixed edges, over all cells (search_request)
# a hypernet's settings, and the hypernet they need (None: any)
_HYPERNET_SETTINGS = {
    "lambda_min": None,
    "lambda_max": None,
    "hypernet_input": None,
    "hypernet_pivots": "piecewise",
    "hypernet_hidden": "mlp",
}


def search_request(cfg, source):
    """A new search's request beyond check_request: a network that builds in seconds,
    and no hypernet setting that the run would ignore."""
    # node i of a cell reads the two inputs and the i nodes before it: nodes (nodes + 3)
    # / 2 mixed edges a cell. --nodes 200 spent minutes building 20,300 of them before
    # a word; 1,000 (DARTS's CIFAR search has 112) build in a few seconds
    edges = cfg.layers * cfg.nodes * (cfg.nodes + 3) // 2
    if edges > MAX_MIXED_EDGES:
        raise ValueError(
            f"{source}: layers ({cfg.layers}) x nodes ({cfg.nodes}) make {edges} mixed edges "
            f"(layers x nodes (nodes + 3) / 2); at most {MAX_MIXED_EDGES} are built (DARTS's "
            "search: 8 x 14 = 112)"
        )
    default = SearchConfig()
    unused = [
        key
        for key, needs in _HYPERNET_SETTINGS.items()
        if getattr(cfg, key) != getattr(default, key)
        and (not cfg.hypernet or needs not in (None, cfg.hypernet))
    ]
    if unused:
        them = "it" if len(unused) == 1 else "them"
        kind = f"with the {cfg.hypernet} hypernet" if cfg.hypernet else "without a hypernet"
        needs = sorted({_HYPERNET_SETTINGS[k] for k in unused} - {None})
        wanted = " or ".join(needs) if needs else "linear, piecewise or mlp"
        raise ValueError(
            f"{source}: {', '.join(unused)} set for a search {kind}, which would ignore "
            f"{them}: give hypernet = {wanted} (--hypernet), or leave {them} out"
        )


def validate(cfg, source="config", saved=False):
    """Reject values of the wrong type or range, naming the key. saved: the config of
    a run being continued (its checkpoint's), which skips the checks of a new run's
    request (check_request, search_request): it was made with them, or before them."""
    check_fields(cfg, source, _POSITIVE_INT, _NONNEG_FLOAT)
    if cfg.subset is not None and not 2 <= cfg.subset <= 60000:
        raise ValueError(f"{source}: subset must be between 2 and 60000 images, got {cfg.subset}")
    if cfg.multiplier > cfg.nodes:
        raise ValueError(
            f"{source}: multiplier ({cfg.multiplier}) cannot exceed nodes ({cfg.nodes})"
        )
    if not 0 <= cfg.alpha_beta1 < 1 or not 0 <= cfg.alpha_beta2 < 1:
        raise ValueError(f"{source}: alpha_beta1 and alpha_beta2 must be in [0, 1)")
    if not cfg.w_momentum < 1:  # at 1 or more the momentum grows without bound
        raise ValueError(f"{source}: w_momentum must be in [0, 1), got {cfg.w_momentum}")
    if cfg.w_lr_min > cfg.w_lr:
        raise ValueError(f"{source}: w_lr_min ({cfg.w_lr_min}) exceeds w_lr ({cfg.w_lr})")
    if cfg.order not in (1, 2):
        raise ValueError(f"{source}: order must be 1 or 2, got {cfg.order}")
    if cfg.relaxation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"{source}: relaxation must be 'softmax' or 'sigmoid', got {cfg.relaxation!r}"
        )
    if cfg.relaxation == "softmax" and cfg.zero_one_weight:
        raise ValueError(
            f"{source}: zero_one_weight is Fair DARTS's loss on sigmoid weights; it needs "
            "relaxation = 'sigmoid'"
        )
    if cfg.hypernet not in (None, "linear", "piecewise", "mlp"):
        raise ValueError(
            f"{source}: hypernet must be 'linear', 'piecewise' or 'mlp' (or absent), got "
            f"{cfg.hypernet!r}"
        )
    if cfg.ops_module is not None:
        import_ops_module(cfg.ops_module, source)
    if cfg.primitives is not None:
        cfg.primitives = list(check_primitives(cfg.primitives, source))
    if cfg.hypernet_pivots < 2:
        raise ValueError(f"{source}: hypernet_pivots must be at least 2, got {cfg.hypernet_pivots}")
    if cfg.hypernet and cfg.penalty:
        raise ValueError(
            f"{source}: penalty is the fixed-lambda baseline; a hypernet search draws lambda "
            "itself from [lambda_min, lambda_max], so give one or the other"
        )
    if cfg.genotype_rule not in (None, "darts", "expected-cost"):
        raise ValueError(
            f"{source}: genotype_rule must be 'darts' or 'expected-cost' (or absent), got "
            f"{cfg.genotype_rule!r}"
        )
    if cfg.hypernet_input not in ("lambda", "log"):
        raise ValueError(
            f"{source}: hypernet_input must be 'lambda' or 'log', got {cfg.hypernet_input!r}"
        )
    if not 0 < cfg.lambda_min < cfg.lambda_max:
        raise ValueError(
            f"{source}: need 0 < lambda_min < lambda_max, got {cfg.lambda_min} and {cfg.lambda_max}"
        )
    if cfg.eval_lambdas is None:
        cfg.eval_lambdas = []
    lams = cfg.eval_lambdas
    if not isinstance(lams, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= FLOAT32_MAX
        for v in lams
    ):
        raise ValueError(
            f"{source}: eval_lambdas must be a list of positive numbers finite in float32, "
            f"got {lams!r}"
        )
    cfg.eval_lambdas = [float(v) for v in lams]
    if cfg.warmup_epochs is None:  # the budget rule: a quarter of the epochs
        cfg.warmup_epochs = cfg.epochs // 4
    if cfg.warmup_epochs < 0 or cfg.warmup_epochs >= cfg.epochs:
        raise ValueError(
            f"{source}: warmup_epochs must be in [0, epochs - 1] = [0, {cfg.epochs - 1}], "
            f"got {cfg.warmup_epochs}"
        )
    if cfg.bn_recalibration_batches < 0:
        raise ValueError(
            f"{source}: bn_recalibration_batches must be >= 0, got {cfg.bn_recalibration_batches}"
        )
    if cfg.eval_batches is not None and cfg.eval_batches < 0:
        raise ValueError(
            f"{source}: eval_batches must be 0 (the whole split) or more, got {cfg.eval_batches}"
        )
    if not saved:  # after the ranges: a bad value is named as bad, not as unused
        check_request(cfg, source)
        search_request(cfg, source)


def resolved_genotype_rule(cfg):
    """The derivation rule a config asks for: its genotype_rule, or by default DARTS's
    rule for plain DARTS and the expected-cost rule when the complexity is controlled."""
    if cfg.genotype_rule is not None:
        return cfg.genotype_rule
    return "expected-cost" if (cfg.hypernet or cfg.penalty) else "darts"


def resolved_zero_one_weight(cfg):
    """w01 of the zero-one loss a config asks for: its zero_one_weight, or by default
    10 with the sigmoid relaxation (Fair DARTS) and 0 with softmax."""
    if cfg.zero_one_weight is not None:
        return cfg.zero_one_weight
    return 10.0 if cfg.relaxation == "sigmoid" else 0.0


def load_toml(path):
    """The key = value pairs of a TOML config file (sections are flattened: they only
    group keys, so a key given in two of them is refused)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not valid TOML: not UTF-8 text") from None
    # sections ([network], ...) only group keys: one level, and each key given once
    flat, where = {}, {}
    for key, value in data.items():
        section = f"section [{key}]" if isinstance(value, dict) else "the top level"
        for name, item in value.items() if isinstance(value, dict) else [(key, value)]:
            if isinstance(item, dict):
                raise ValueError(
                    f"config file {path}: {name} in {section} is a table; a section holds "
                    "key = value pairs only (no sections within sections)"
                )
            if name in flat:
                raise ValueError(
                    f"config file {path}: {name} is given twice ({where[name]} and {section}); "
                    "sections only group the keys, so give each once"
                )
            flat[name], where[name] = item, section
    return flat
