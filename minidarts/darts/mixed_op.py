"""The mixed operation: DARTS's continuous relaxation of the choice of an operation.

Equation (2) of the paper: on the edge (i, j) of a cell, every candidate
operation o runs, and their outputs are mixed with the softmax of the edge's
architecture parameters alpha^(i,j):

    o_bar(x) = sum_o  exp(alpha_o) / sum_o' exp(alpha_o')  *  o(x)

The softmax weights are computed once per cell type by the network and passed
in as `weights` (one row of softmax(alpha)).
"""

from .. import nn
from .operations import PRIMITIVES, build_operation


class MixedOp(nn.Module):
    """All candidate operations of one edge, mixed by `weights` (eq. 2)."""

    def __init__(self, C, stride, primitives=PRIMITIVES):
        super().__init__()
        self.primitives = tuple(primitives)
        if all(name == "none" for name in self.primitives):
            raise ValueError(
                f"MixedOp: primitives {self.primitives} hold no operation but 'none': the "
                "edge would have no output"
            )
        ops = []
        for name in self.primitives:
            op = build_operation(name, C, stride, False)
            if "pool" in name:
                # DARTS: a BN after each pool brings its output to the scale of the
                # conv outputs, which end in BN, so the weights compare like with like.
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self._ops = nn.ModuleList(ops)

    def forward(self, x, weights):
        """The mixed output of eq. (2) on this edge, shaped like each operation's output.

        weights: this edge's row of softmax(alpha), a Tensor of shape (num_ops,), in the
        order of self.primitives. Gradients must reach both the operations' parameters
        and `weights` (alpha learns from them). The 'none' operation outputs zeros: it
        adds nothing, so it need not run (its weight still takes part in the softmax
        that produced `weights`)."""
        # BEGIN SOLUTION mixed_op: eq. (2): the candidates' outputs on x, mixed by weights
        # HINT: out = sum over o (not 'none') of weights[o] * op_o(x); self._ops follows
        # HINT: self.primitives. Index weights as a Tensor: a float would cut alpha's graph
        out = None
        for k, (name, op) in enumerate(zip(self.primitives, self._ops)):
            if name == "none":
                continue
            term = weights[k] * op(x)
            out = term if out is None else out + term
        return out
        # END SOLUTION
