"""The complexity of an architecture: its expected number of weights.

The relaxed architecture (eq. 2) uses operation o on edge e with probability
p_{e,o} = softmax(alpha_e)_o. Its complexity is the expected number of weights of
the cells under these probabilities, normalised by the richest architecture of
the space (every edge taking its largest operation), so that it lies in [0, 1]:

    complexity(alpha) = sum_cells sum_e sum_o p_{e,o} * params(o, C_cell, stride_e)
                        / sum_cells sum_e max_o params(o, C_cell, stride_e)

With the sigmoid relaxation (every operation on independently with probability
sigmoid(alpha_{e,o})) the same sum is again the expected weight count, but the
richest architecture then has every operation on, so the normaliser is
sum_o params(o) instead of max_o params(o).

It is bounded and smooth, and its gradient says "move probability from the
heavy operations to the light ones". (The authors' code multiplied parameter
norms by raw, unbounded alphas, and their penalty ran off to -5e5.)

The same cost table gives the weight count of a derived, discrete genotype.
"""

from ..engine import backend
from . import operations
from .cell import num_edges
from .genotype import derive_genotype, edge_index
from .network import relax


def cell_plan(network):
    """(kind, C, stride of each edge) for every cell of a search network."""
    plan = []
    for cell in network.cells:
        kind = "reduce" if cell.reduction else "normal"
        strides = [
            2 if cell.reduction and j < 2 else 1 for i in range(cell.steps) for j in range(2 + i)
        ]
        plan.append((kind, cell.C, strides))
    return plan


class Complexity:
    """Expected parameter count of a network's cells, normalised to [0, 1].

    cost[kind] is an (edges, ops) table: the weights of operation o on edge e,
    summed over all cells of that kind; `norm` is the weight count of the richest
    architecture. Call it with alphas ({'normal', 'reduce'} Tensors) to get a
    differentiable scalar Tensor."""

    def __init__(self, network):
        self.primitives = network.primitives
        self.steps = network.steps
        self.multiplier = network.multiplier
        self.relaxation = network.relaxation
        n_ops, n_edges = len(self.primitives), num_edges(network.steps)
        costs = {k: [[0.0] * n_ops for _ in range(n_edges)] for k in ("normal", "reduce")}
        self.norm = 0.0
        plan = cell_plan(network)
        # cell types the network has: the paper's one-cell network has no normal cell,
        # and its normal alpha must get no gradient at all (not even a zero one, on
        # which Adam's weight decay would still move it)
        self.kinds = tuple(k for k in ("normal", "reduce") if any(p[0] == k for p in plan))
        for kind, C, strides in plan:
            for e, stride in enumerate(strides):
                # looked up at call time: a registered or swapped operation counts
                row = [operations.op_param_count(o, C, stride) for o in self.primitives]
                for o, n in enumerate(row):
                    costs[kind][e][o] += n
                # the richest architecture: the heaviest op (softmax), or all ops (sigmoid)
                self.norm += sum(row) if self.relaxation == "sigmoid" else max(row)
        self.cost_table = costs  # plain lists: exact integers, for reports and tests
        device = network.alphas["normal"].device
        dtype = network.alphas["normal"].dtype
        self.cost = {k: backend.asarray(v, dtype=dtype, device=device) for k, v in costs.items()}

    def __call__(self, alphas):
        """The expected parameter count of the architecture that `alphas` ({kind:
        alpha}) relaxes, over the cell types the network has, divided by self.norm: a
        scalar Tensor that alpha gets gradients from (the penalty of the search)."""
        # BEGIN SOLUTION complexity: total, the expected count (None if no kind in self.kinds)
        # HINT: relax(alpha, self.relaxation) gives each op's probability on each edge and
        # HINT: self.cost[kind] its count: total = sum over kinds of sum(probability * cost)
        total = None
        for kind, alpha in alphas.items():
            if kind not in self.kinds:
                continue
            term = (relax(alpha, self.relaxation) * self.cost[kind].astype(alpha.dtype)).sum()
            total = term if total is None else total + term
        # END SOLUTION
        if total is None:
            raise ValueError(
                f"Complexity: alphas has the cell types {sorted(alphas)}, the network "
                f"{list(self.kinds)}"
            )
        return total * (1.0 / self.norm)

    def expected_params(self, alphas):
        """The un-normalised expected weight count (a float)."""
        return float(self(alphas).item()) * self.norm

    def genotype_params(self, genotype):
        """Weights of the cells of a discrete genotype: the kept operations only."""
        index = {name: i for i, name in enumerate(self.primitives)}
        total = 0.0
        for kind, gene in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            table = self.cost_table[kind]
            edge_of = edge_index(self.steps)
            for pos, (op, i) in enumerate(gene):
                total += table[edge_of[(pos // 2, i)]][index[op]]
        return int(total)

    def genotype_of(self, alphas, rule="darts"):
        """The genotype that `rule` derives from `alphas`: DARTS's rule, or the
        expected-cost rule (genotype.py) on this network's weight counts."""
        w = {k: relax(a.detach(), self.relaxation).numpy() for k, a in alphas.items()}
        return derive_genotype(
            w["normal"],
            w["reduce"],
            self.steps,
            self.multiplier,
            self.primitives,
            rule=rule,
            costs=self.cost_table,
        )
