"""The evaluation network: the discrete architecture of a genotype, trained from scratch.

After the search, DARTS throws the supernetwork away and builds a plain network
from the genotype (DARTS's model.py, NetworkCIFAR): every edge holds exactly one
operation, there are no mixing weights and no alpha. A cell with N = len(gene)/2
intermediate nodes computes

    s0, s1      = preprocess0(c_{k-2}), preprocess1(c_{k-1})     (1x1 ReLU-conv-BN)
    x^(j)       = op_{2j}(x^(i_{2j})) + op_{2j+1}(x^(i_{2j+1})),   j = 0 .. N-1
    cell output = concat over channels of x^(c) for c in *_concat

where (op_k, i_k) are the kept pairs of the genotype (node j keeps two inputs,
states 0 and 1 being s0 and s1 and state 2 + j being x^(j)). The network is

    image -> stem (3x3 conv to stem_multiplier*C channels, BN)
          -> cell_0 -> ... -> cell_{L-1}   (each takes the outputs of the two before it)
          -> global average pool -> linear -> logits

with cells L//3 and 2L//3 reducing (stride 2 on the edges leaving s0 and s1, channels
doubled), as in the search network (network.py). Unlike the search, every BN layer
has a learned scale and shift (affine=True) and pools have no BN after them: there
is no alpha for a learned scale to interfere with.

Left out of DARTS's evaluation network, on purpose: the auxiliary classifier head
and drop-path. Both are regularisers for DARTS's 600-epoch CIFAR-10 training of a
20-cell network; MNIST at a few epochs with one to three cells does not overfit
enough to need them, and drop-path would add a random stream that a resumable run
would have to checkpoint.
"""

from .. import nn
from ..engine import random
from ..engine.ops import cat
from ..nn import functional as F
from .cell import cell_kinds
from .operations import FactorizedReduce, ReLUConvBN, build_operation, operation_names


def check_gene(gene, concat, where):
    """The (op, input) list of one cell type: an even, non-empty list of valid pairs,
    and a concat list of distinct existing states. Returns the number of nodes."""
    if not isinstance(gene, (list, tuple)) or not gene or len(gene) % 2:
        raise ValueError(
            f"{where}: the gene must be a non-empty list of (op, input) pairs, two per "
            f"node, got {gene!r}"
        )
    steps = len(gene) // 2
    for pos, entry in enumerate(gene):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError(f"{where}: gene[{pos}] must be an (op, input) pair, got {entry!r}")
        op, i = entry
        if op not in operation_names() or op == "none":
            raise ValueError(
                f"{where}: gene[{pos}] has unknown operation {op!r}; expected one of the "
                f"registered operations {[p for p in operation_names() if p != 'none']} "
                "(add one with register_operation)"
            )
        node = pos // 2
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < node + 2:
            raise ValueError(
                f"{where}: gene[{pos}] ({op!r}, {i!r}): node {node} can take inputs 0..{node + 1}"
            )
    concat = list(concat)
    if (
        not concat
        or len(set(concat)) != len(concat)
        or any(isinstance(c, bool) or not isinstance(c, int) for c in concat)
        or not all(0 <= c < steps + 2 for c in concat)
    ):
        raise ValueError(
            f"{where}: concat must list distinct states in 0..{steps + 1}, got {concat!r}"
        )
    return steps


class EvalCell(nn.Module):
    """One discrete cell of a genotype (see the module docstring).

    C_prev_prev, C_prev: channels of the two inputs; C: channels of each node;
    reduction: use the genotype's reduce cell and stride 2 on edges leaving s0, s1;
    reduction_prev: the previous cell halved H and W, so input 0 (from two cells
    back) is twice as large and is reduced with FactorizedReduce."""

    def __init__(self, genotype, C_prev_prev, C_prev, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = bool(reduction)
        if reduction:
            gene, concat, kind = genotype.reduce, genotype.reduce_concat, "reduce"
        else:
            gene, concat, kind = genotype.normal, genotype.normal_concat, "normal"
        self.steps = check_gene(gene, concat, f"EvalCell ({kind} cell)")
        self.concat = [int(c) for c in concat]
        self.multiplier = len(self.concat)
        self.C = C
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=True)
        self.op_names = [op for op, _ in gene]
        self.indices = [int(i) for _, i in gene]
        self._ops = nn.ModuleList(
            [
                build_operation(name, C, 2 if reduction and index < 2 else 1, True)
                for name, index in zip(self.op_names, self.indices)
            ]
        )

    def forward(self, s0, s1):
        """x^(j) = op_{2j}(state[i_{2j}]) + op_{2j+1}(state[i_{2j+1}]); the output
        concatenates the states in `concat` along the channels."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for j in range(self.steps):
            a, b = 2 * j, 2 * j + 1
            h1 = self._ops[a](states[self.indices[a]])
            h2 = self._ops[b](states[self.indices[b]])
            states.append(h1 + h2)
        return cat([states[c] for c in self.concat], dim=1)


class EvalNetwork(nn.Module):
    """The evaluation network of a genotype: stem, `layers` EvalCells, classifier.

    C: channels of the first cell (doubled at each reduction cell); num_classes: 10
    for MNIST; in_channels: 1 for MNIST, 3 for CIFAR; stem_multiplier: the stem has
    stem_multiplier * C channels. `seed` seeds the initial weights through a generator
    of their own, so the same seed builds the same network."""

    def __init__(
        self, genotype, C=16, num_classes=10, layers=1, in_channels=1, stem_multiplier=3, seed=0
    ):
        super().__init__()
        for name, value in dict(
            C=C,
            num_classes=num_classes,
            layers=layers,
            in_channels=in_channels,
            stem_multiplier=stem_multiplier,
        ).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EvalNetwork: {name} must be a positive integer, got {value!r}")
        if not all(hasattr(genotype, k) for k in ("normal", "reduce")):
            raise TypeError(
                f"EvalNetwork: genotype must be a Genotype (normal, normal_concat, reduce, "
                f"reduce_concat), got {type(genotype).__name__}"
            )
        self.genotype = genotype
        # the weights come from a generator of their own (the global one is left as it
        # was), so the same seed builds the same network whatever ran before
        with random.seeded(seed):
            C_curr = stem_multiplier * C
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
            )
            C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
            self.reduction_layers = sorted({layers // 3, 2 * layers // 3})
            cells, reduction_prev = [], False
            for i in range(layers):
                reduction = i in self.reduction_layers
                if reduction:
                    C_curr *= 2
                cell = EvalCell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
                cells.append(cell)
                reduction_prev = reduction
                C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            self.cells = nn.ModuleList(cells)
            self.classifier = nn.Linear(C_prev, num_classes)

    def cell_kinds(self):
        """The cell types this network has (see cell.cell_kinds)."""
        return cell_kinds(self.cells)

    def forward(self, x):
        """Logits (N, num_classes) of images x (N, in_channels, H, W)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        out = F.adaptive_avg_pool2d(s1, 1)
        return self.classifier(out.reshape(out.shape[0], -1))


def genotype_param_count(genotype, C, layers, in_channels=1, num_classes=10, stem_multiplier=3):
    """Number of learned weights of EvalNetwork(genotype, C, num_classes, layers,
    in_channels, stem_multiplier), counted by building it (from a generator of its own:
    callers' random streams are unchanged)."""
    model = EvalNetwork(genotype, C, num_classes, layers, in_channels, stem_multiplier)
    return nn.count_parameters(model)
