"""Hypernetworks: the architecture as a function of the complexity knob lambda.

Three of them: LinearHypernet (eq. 5), PiecewiseHypernet (the authors' follow-up:
alpha piecewise linear in log lambda) and MLPHypernet.

Equation (4) of the paper: a hypernetwork G maps a complexity parameter lambda
(and its own parameters u) to the architecture parameters,

    G : Lambda x U -> A,        alpha = G(lambda; u).

Equation (5), the linear hypernetwork used in the paper:

    alpha(lambda) = lambda * b1 + b2,      u = (b1, b2), each shaped like alpha,

one (b1, b2) pair per cell type. The search trains u on
L_val(w, alpha(lambda)) + lambda * complexity(alpha(lambda)) with lambda drawn
afresh at every step, so that afterwards any lambda gives an architecture of the
matching complexity without further training.

The input of G is configurable: lambda itself (eq. 5, the default) or
t = (log10 lambda - log10 lambda_min) / (log10 lambda_max - log10 lambda_min) in
[0, 1], which spreads the small lambdas out (with lambda itself, b1 only matters
once lambda is large).
"""

import math

from .. import nn
from ..engine import backend
from ..engine.autograd import Tensor
from .cell import num_edges

KINDS = ("normal", "reduce")


class LambdaInput:
    """The input of a hypernetwork: lambda itself, or log10(lambda) rescaled to [0, 1]."""

    def __init__(self, mode="lambda", lambda_min=1e-5, lambda_max=1.0):
        if mode not in ("lambda", "log"):
            raise ValueError(f"hypernet input must be 'lambda' or 'log', got {mode!r}")
        if not 0 < lambda_min < lambda_max:
            raise ValueError(f"need 0 < lambda_min < lambda_max, got {lambda_min} and {lambda_max}")
        self.mode, self.lambda_min, self.lambda_max = mode, lambda_min, lambda_max

    def __call__(self, lam):
        # a string or None would fail deep in a comparison, and an infinite lambda
        # would turn alpha into inf / NaN: say so here, naming the caller
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise TypeError(f"hypernet: lambda must be a number, got {lam!r}")
        if not 0 < lam < math.inf:
            raise ValueError(f"hypernet: lambda must be positive and finite, got {lam}")
        if self.mode == "lambda":
            return float(lam)
        lo, hi = math.log10(self.lambda_min), math.log10(self.lambda_max)
        return (math.log10(lam) - lo) / (hi - lo)


def sample_lambda(rng, lambda_min, lambda_max):
    """lambda drawn log-uniformly from [lambda_min, lambda_max] (the authors' choice:
    log10 lambda uniform in [-5, 0])."""
    if not 0 < lambda_min < lambda_max:
        raise ValueError(
            f"sample_lambda: need 0 < lambda_min < lambda_max, got {lambda_min} and {lambda_max}"
        )
    return float(10 ** rng.uniform(math.log10(lambda_min), math.log10(lambda_max)))


def _arch_parameter(shape, rng, scale, device):
    data = backend.asarray(scale * rng.standard_normal(shape), dtype=backend.float32, device=device)
    return nn.Parameter(data)


class LinearHypernet(nn.Module):
    """alpha_kind(lambda) = t(lambda) * b1_kind + b2_kind  (eq. 5), t the input map.

    b2 starts as DARTS's alpha (1e-3 * randn); b1 as 1e-3 * randn too. A Module:
    b1 and b2 are ParameterDicts keyed by cell type, so parameters(), state_dict()
    (keys b1.normal, b1.reduce, b2.normal, b2.reduce), to() and requires_grad_()
    work as for any layer."""

    def __init__(self, steps, n_ops, rng, lambda_input=None, scale=1e-3, device=None):
        super().__init__()
        self.input = lambda_input or LambdaInput()
        shape = (num_edges(steps), n_ops)
        # the draw order (b1 normal, b1 reduce, b2 normal, b2 reduce) fixes the numbers
        # a seed gives: keep it
        self.b1 = nn.ParameterDict({k: _arch_parameter(shape, rng, scale, device) for k in KINDS})
        self.b2 = nn.ParameterDict({k: _arch_parameter(shape, rng, scale, device) for k in KINDS})

    def forward(self, lam):
        # BEGIN SOLUTION hypernet: eq. (5): {kind: alpha} for this lam, both kinds, from b1, b2
        # HINT: alpha_kind = b1[kind] * t + b2[kind], t the hypernetwork's input self.input(lam)
        t = self.input(lam)
        return {k: self.b1[k] * t + self.b2[k] for k in ("normal", "reduce")}
        # END SOLUTION

    def extra_repr(self):
        return f"input={self.input.mode!r}"


class PiecewiseHypernet(nn.Module):
    """alpha_kind(lambda) piecewise linear in normalised log lambda (the authors'
    follow-up, DARTS-CC): K learned alpha matrices A_0 .. A_{K-1} per cell type sit at
    the pivots u_j = j / (K - 1) of

        t = (log10 lambda - log10 lambda_min) / (log10 lambda_max - log10 lambda_min),

    and alpha(lambda) interpolates the two pivots around t:

        j = min(floor(t (K - 1)), K - 2),   s = t (K - 1) - j,
        alpha(lambda) = (1 - s) A_j + s A_{j+1}.

    t is clipped to [0, 1]: outside the searched range alpha stays at the end pivot.
    Each lambda trains only its two pivots, so a low lambda and a high one learn
    different architectures, which eq. 5's single direction b1 cannot. All pivots
    start at one draw of DARTS's alpha (1e-3 * randn)."""

    def __init__(
        self, steps, n_ops, rng, pivots=5, lambda_min=1e-5, lambda_max=1.0, scale=1e-3, device=None
    ):
        super().__init__()
        if isinstance(pivots, bool) or not isinstance(pivots, int) or pivots < 2:
            raise ValueError(f"piecewise hypernet: pivots must be an integer >= 2, got {pivots!r}")
        self.input = LambdaInput("log", lambda_min, lambda_max)
        self.K = pivots
        shape = (num_edges(steps), n_ops)
        start = {k: _arch_parameter(shape, rng, scale, device) for k in KINDS}
        # pivot j is the sub-module A{j}, a ParameterDict keyed by cell type: state_dict
        # keys A0.normal, A0.reduce, ..., as the search's checkpoints have them
        for j in range(pivots):
            self.add_module(
                f"A{j}",
                nn.ParameterDict({k: nn.Parameter(start[k].data.copy()) for k in KINDS}),
            )

    @property
    def A(self):
        """The pivots by cell type: A[kind][j] is the Parameter of pivot j (a fresh dict
        of lists on each read: to replace a pivot, assign into the ParameterDict A{j})."""
        return {k: [self._modules[f"A{j}"][k] for j in range(self.K)] for k in KINDS}

    def named_parameters(self, recurse=True):
        """The pivots by cell type, A0.normal ... A{K-1}.normal, then the reduce ones:
        the order the architecture optimiser's state was saved in before the pivots
        became sub-modules, so older search checkpoints resume with each pivot's Adam
        moments on that pivot."""
        for k in KINDS:
            for j in range(self.K):
                yield f"A{j}.{k}", self._modules[f"A{j}"][k]

    def segment(self, lam):
        """(j, s): alpha(lambda) = (1 - s) A_j + s A_{j+1}."""
        t = min(max(self.input(lam), 0.0), 1.0)
        j = min(int(math.floor(t * (self.K - 1))), self.K - 2)
        return j, t * (self.K - 1) - j

    def forward(self, lam):
        j, s = self.segment(lam)
        A = self.A
        return {k: A[k][j] * (1.0 - s) + A[k][j + 1] * s for k in KINDS}

    def extra_repr(self):
        return f"pivots={self.K}"


class MLPHypernet(nn.Module):
    """alpha(lambda) = W_out relu(... relu(W_1 t + c_1) ...) + c_out, reshaped into both
    cell types' alphas: a small MLP on the scalar input t(lambda).

    hidden: sizes of the hidden layers, e.g. (16,). The output layer starts at
    weight 0 and bias 1e-3 * randn, so alpha(lambda) starts as DARTS's alpha."""

    def __init__(self, steps, n_ops, rng, hidden=(16,), lambda_input=None, scale=1e-3, device=None):
        super().__init__()
        self.input = lambda_input or LambdaInput()
        self.shape = (num_edges(steps), n_ops)
        sizes = [1, *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            # the hidden layers draw from `rng` too, not the global generator: the same
            # rng gives the same hypernet whatever was built before it
            layers += [nn.Linear(a, b, rng=rng, device=device), nn.ReLU()]
        out = nn.Linear(sizes[-1], 2 * self.shape[0] * self.shape[1], rng=rng, device=device)
        out.weight.data[...] = 0
        out.bias.data[...] = backend.asarray(
            scale * rng.standard_normal(out.bias.shape),
            dtype=backend.float32,
            device=out.bias.device,
        )
        self.mlp = nn.Sequential(*layers, out)

    def forward(self, lam):
        weight = self.mlp[0].weight  # t in the weights' dtype: float64 for gradient checks
        t = Tensor(backend.asarray([[self.input(lam)]], dtype=weight.dtype, device=weight.device))
        flat = self.mlp(t).reshape(2, *self.shape)
        return {"normal": flat[0], "reduce": flat[1]}


def make_hypernet(cfg, network):
    """The hypernetwork a search config asks for (None for plain DARTS), shaped for
    `network`'s alphas, on the default device."""
    if cfg.hypernet is None:
        return None
    rng = backend.default_rng([cfg.seed, 5])
    lambda_input = LambdaInput(cfg.hypernet_input, cfg.lambda_min, cfg.lambda_max)
    n_ops = len(network.primitives)
    if cfg.hypernet == "linear":
        return LinearHypernet(network.steps, n_ops, rng, lambda_input)
    if cfg.hypernet == "mlp":
        return MLPHypernet(network.steps, n_ops, rng, (cfg.hypernet_hidden,), lambda_input)
    if cfg.hypernet == "piecewise":
        return PiecewiseHypernet(
            network.steps, n_ops, rng, cfg.hypernet_pivots, cfg.lambda_min, cfg.lambda_max
        )
    raise ValueError(f"unknown hypernet {cfg.hypernet!r}: expected 'linear', 'piecewise' or 'mlp'")
