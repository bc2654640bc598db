"""A cell of the search network: a small DAG of mixed operations.

Equation (1) of the paper: a cell has two input nodes x^(0), x^(1) (the outputs
of the two previous cells) and N intermediate nodes, each the sum of an
operation applied to every earlier node,

    x^(j) = sum_{i < j} o^(i,j)(x^(i)),

where in the search every o^(i,j) is a MixedOp (eq. 2). The cell's output is the
channel concatenation of the N intermediate nodes. With N = 4 there are
2 + 3 + 4 + 5 = 14 edges; edge k of node j comes after all edges of nodes < j.

In a reduction cell the edges leaving the two input nodes have stride 2, so the
cell halves height and width (and the network doubles the channels there).
"""

from .. import nn
from ..engine.ops import cat
from .mixed_op import MixedOp
from .operations import PRIMITIVES, FactorizedReduce, ReLUConvBN


def cell_kinds(cells):
    """The cell types among `cells`, in the order ('normal', 'reduce'): ('reduce',)
    alone for the paper's one-cell network (its normal alpha is then never used)."""
    present = {"reduce" if c.reduction else "normal" for c in cells}
    return tuple(k for k in ("normal", "reduce") if k in present)


def num_edges(steps):
    """Edges of a cell with `steps` intermediate nodes: 2 + 3 + ... + (steps + 1)."""
    return sum(2 + i for i in range(steps))


class Cell(nn.Module):
    """One search cell (eq. 1) with `steps` intermediate nodes.

    C_prev_prev, C_prev: channels of the two inputs; C: channels of each node.
    reduction_prev: the previous cell halved H and W, so input 0 (from two cells
    back) is twice as large and must be reduced too (FactorizedReduce)."""

    def __init__(
        self,
        steps,
        multiplier,
        C_prev_prev,
        C_prev,
        C,
        reduction,
        reduction_prev,
        primitives=PRIMITIVES,
    ):
        super().__init__()
        self.reduction = reduction
        self.C = C
        self.steps = steps
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        ops = []
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                ops.append(MixedOp(C, stride, primitives))
        self._ops = nn.ModuleList(ops)

    def forward(self, s0, s1, weights):
        """The cell's output from the outputs s0, s1 of the two previous cells (eq. 1).

        weights: softmax(alpha) of this cell type, shape (num_edges, num_ops), one row
        per edge in the order __init__ built self._ops. Returns the last self.multiplier
        intermediate nodes side by side on the channel axis."""
        # BEGIN SOLUTION cell: eq. (1): the intermediate nodes, then the cell's output
        # HINT: states = [preprocess0(s0), preprocess1(s1)]; each new node is the sum over
        # HINT: all earlier states h of self._ops[edge](h, weights[edge]), edges in order;
        # HINT: append it to states; the output is cat(last multiplier states, dim=1)
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                term = self._ops[offset + j](h, weights[offset + j])
                node = term if node is None else node + term
            offset += len(states)
            states.append(node)
        return cat(states[-self.multiplier :], dim=1)
        # END SOLUTION
