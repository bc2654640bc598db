"""The search network (DARTS's 'supernetwork'): a stem, a stack of cells, a classifier.

    image -> stem (3x3 conv, stem_multiplier*C channels, BN)
          -> cell_0 -> cell_1 -> ... -> cell_{L-1}      (each takes the two previous outputs)
          -> global average pool -> linear -> logits

Cells at positions L//3 and 2L//3 are reduction cells (stride 2, channels
doubled); the others are normal cells. All normal cells share one alpha of shape
(num_edges, num_ops), all reduction cells another: the architecture is two
small matrices, kept apart from the network's weights (`arch_parameters()` vs
`parameters()`), since the bilevel problem (eq. 3) optimises them on different
data with different optimisers.

With the paper's MNIST setting (L = 1) the only cell is a reduction cell.
"""

import importlib.util
from collections import OrderedDict
from contextlib import nullcontext

from .. import nn
from ..engine import backend, random
from ..engine.autograd import Tensor
from ..nn import functional as F
from .cell import Cell, cell_kinds, num_edges
from .operations import PRIMITIVES

# The fast path, where there is one: the classroom's student copy leaves it out (it
# computes eq. 1, the cell task's answer). Looked up rather than caught, so that an
# error inside it is never taken for its absence.
if importlib.util.find_spec(f"{__package__}.fast_cell") is not None:
    from . import fast_cell
else:
    fast_cell = None


def init_alphas(steps, primitives, rng, scale=1e-3):
    """alpha for both cell types, drawn as scale * N(0, 1) (DARTS: 1e-3 * randn), so
    every operation starts with nearly the same weight 1/|O|."""
    shape = (num_edges(steps), len(primitives))
    return {
        kind: Tensor(
            backend.asarray(scale * rng.standard_normal(shape), dtype=backend.float32),
            requires_grad=True,
        )
        for kind in ("normal", "reduce")
    }


def relax(alpha, relaxation="softmax"):
    """The mixing weights of eq. (2): softmax over the operations of each edge."""
    if relaxation == "softmax":
        return F.softmax(alpha, dim=-1)
    if relaxation == "sigmoid":
        return F.sigmoid(alpha)
    raise ValueError(f"unknown relaxation {relaxation!r}: expected 'softmax' or 'sigmoid'")


class Network(nn.Module):
    """The DARTS search network.

    C: channels of the first cell; layers: number of cells; steps: intermediate
    nodes per cell; multiplier: how many of them the cell output concatenates;
    in_channels: 1 for MNIST, 3 for CIFAR; seed: the initial weights and alpha come
    from generators seeded with it (the global one is left alone), or with None from
    the global generator of minidarts.manual_seed. fast: on the CPU, run each cell's
    edges batched and on threads (darts/fast_cell.py: the same numbers up to rounding);
    False keeps to the readable Cell.forward."""

    def __init__(
        self,
        C=8,
        num_classes=10,
        layers=1,
        steps=4,
        multiplier=4,
        stem_multiplier=3,
        in_channels=1,
        primitives=PRIMITIVES,
        relaxation="softmax",
        seed=0,
        fast=True,
    ):
        super().__init__()
        self.fast = bool(fast)
        for name, value in dict(
            C=C,
            num_classes=num_classes,
            layers=layers,
            steps=steps,
            multiplier=multiplier,
            stem_multiplier=stem_multiplier,
            in_channels=in_channels,
        ).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Network: {name} must be a positive integer, got {value!r}")
        if multiplier > steps:
            raise ValueError(f"Network: multiplier ({multiplier}) cannot exceed steps ({steps})")
        self.steps, self.multiplier = steps, multiplier
        self.primitives = tuple(primitives)
        if relaxation not in ("softmax", "sigmoid"):
            raise ValueError(
                f"Network: unknown relaxation {relaxation!r}: expected 'softmax' or 'sigmoid'"
            )
        self.relaxation = relaxation
        # seed=None: weights and alpha from the global generator (minidarts.manual_seed);
        # a seed: from generators of their own, leaving the global one untouched
        with random.seeded(seed) if seed is not None else nullcontext():
            self._build(C, num_classes, layers, steps, multiplier, stem_multiplier, in_channels)
        rng = random.get_rng() if seed is None else backend.default_rng(seed)
        self.alphas = init_alphas(steps, self.primitives, rng)

    def _build(self, C, num_classes, layers, steps, multiplier, stem_multiplier, in_channels):
        """The stem, the cells (reductions at layers//3 and 2*layers//3), the classifier."""

        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        cells, reduction_prev = [], False
        self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                C_curr *= 2
            cells.append(
                Cell(
                    steps,
                    multiplier,
                    C_prev_prev,
                    C_prev,
                    C_curr,
                    reduction,
                    reduction_prev,
                    self.primitives,
                )
            )
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(C_prev, num_classes)

    def cell_kinds(self):
        """The cell types this network has (see cell.cell_kinds)."""
        return cell_kinds(self.cells)

    def to(self, device):
        """Move the weights, buffers and alpha to `device`."""
        super().to(device)
        for a in self.alphas.values():
            a.data = backend.to_device(a.data, device)
            if a.grad is not None:
                a.grad = backend.to_device(a.grad, device)
        return self

    def arch_parameters(self):
        """[alpha_normal, alpha_reduce]: the architecture, not part of parameters()."""
        return [self.alphas["normal"], self.alphas["reduce"]]

    def _state_tensors(self):
        """Module's weights and buffers, then alpha as 'alphas.normal' and 'alphas.reduce':
        state_dict() holds the architecture too, so saving it keeps what was searched."""
        yield from super()._state_tensors()
        for kind, alpha in self.alphas.items():
            yield f"alphas.{kind}", alpha

    def load_state_dict(self, state_dict, strict=True):
        """Module.load_state_dict, alpha included. A weights-only state (neither alpha key,
        as state_dict() wrote before alpha was part of it) loads the weights and leaves
        alpha as it is; one alpha without the other is a missing key."""
        own = OrderedDict(self._state_tensors())
        if not any(f"alphas.{kind}" in state_dict for kind in self.alphas):
            for kind in self.alphas:
                del own[f"alphas.{kind}"]
        return self._load_tensors(own, state_dict, strict)

    def forward(self, x, alphas=None):
        """Logits of images x (N, in_channels, H, W). `alphas` ({'normal', 'reduce'})
        replaces the network's own, e.g. with the output of a hypernetwork (eq. 5)."""
        alphas = self.alphas if alphas is None else alphas
        weights = {kind: relax(a, self.relaxation) for kind, a in alphas.items()}
        s0 = s1 = self.stem(x)
        device = backend.device_of(s0.data)
        fast = self.fast and fast_cell is not None and fast_cell.usable(self.primitives, device)
        for cell in self.cells:
            w = weights["reduce"] if cell.reduction else weights["normal"]
            s0, s1 = s1, fast_cell.cell_forward(cell, s0, s1, w) if fast else cell(s0, s1, w)
        out = F.adaptive_avg_pool2d(s1, 1)
        return self.classifier(out.reshape(out.shape[0], -1))

    def relaxed_weights(self, alphas=None):
        """softmax(alpha) of both cell types as NumPy arrays (for genotype and plots)."""
        alphas = self.alphas if alphas is None else alphas
        return {k: relax(a.detach(), self.relaxation).numpy() for k, a in alphas.items()}

    def decidedness(self, alphas=None):
        """How decided the relaxed architecture is: the mean, over the edges of the
        cell types this network has, of the edge's largest relaxed weight
        (softmax(alpha) as the search uses it, no temperature). 1/len(primitives) is
        uniform (0.125 for DARTS's 8 operations), 1 is one operation per edge."""
        weights = self.relaxed_weights(alphas)
        rows = [w.max(axis=1) for k, w in weights.items() if k in self.cell_kinds()]
        return float(sum(r.sum() for r in rows) / sum(len(r) for r in rows))
