"""The fast path of the search cell: eq. (1) with independent edges run side by side.

cell.py's Cell.forward is eq. (1) as a reader should meet it, one edge after another.
That leaves a core idle: NumPy computes on one core, and the 14 edges of a cell, each
a mixed operation (eq. 2) of 7 candidates, are independent of each other as long as
they read states already known. This computes the very same numbers:

- the same operations (the cell's own, with their weights and BN statistics) run on
  the same inputs, their ReLU - depthwise - 1x1 - BN stages as one Function each
  (fast_ops.py: the same kernels in the same order);
- each node is summed over its incoming edges in Cell.forward's order, so every
  rounding is the same;
- each edge's mixing (eq. 2) is one Function, MixedSum, instead of MixedOp's 21
  (weights, products and sums one by one): the same arithmetic in the same order,
  with a fraction of the Python time, which every step pays whatever the batch;

and each edge is handed to engine/parallel.py's threads as soon as the state it reads
is known (the 2 * steps edges leaving the two inputs at once, those leaving node 0 once
node 0 is summed, and so on), the edges into earlier nodes first. The forward and every
gradient equal the readable path's to the bit (tests/test_fast_cell.py); the backward
runs on the threads too (engine/parallel.py).

Network uses it by default on the CPU when more than one thread is set
(minidarts.set_num_threads, MINIDARTS_THREADS) and the cell has only DARTS's own
operations (usable below). A cell too small for the threads to pay (pays below: under
about batch 12 in the search network) runs its jobs in order on the calling thread.
`Network(..., fast=False)` or
`network.fast = False` takes the readable path, and so does every network while the
environment variable MINIDARTS_FAST_CELL is 0: the tests of the classroom tasks set it
(tests/conftest.py), as they must exercise the student's Cell.forward. The student
copy leaves this file out (classroom/assign.py, TEACHER_ONLY): it computes eq. (1)
and eq. (2).
"""

import os

from ..engine import backend, parallel
from ..engine.arithmetic import unbroadcast
from ..engine.autograd import Function
from ..engine.ops import cat
from . import fast_ops
from .cell import num_edges
from .operations import is_darts_operation


def usable(primitives, device):
    """Whether the network may take the fast path: on the CPU with several threads,
    unless MINIDARTS_FAST_CELL is 0, and for DARTS's own operations only (each cell
    then takes it where it pays, `pays`). An operation registered by a user keeps to
    the readable path: it might not be safe on threads (e.g. one drawing from the
    global random generator would draw in the order the threads happen to run)."""
    return (
        os.environ.get("MINIDARTS_FAST_CELL", "1") != "0"
        and device == "cpu"
        and parallel.num_threads() > 1
        and all(is_darts_operation(name) for name in primitives)
    )


def pays(cell, s1):
    """Whether the cell's operations are large enough for the threads to pay
    (parallel.worth_threads): its nodes hold N x C x H x W elements (H, W halved in
    a reduction cell), the tensors of its graph about half that on average (2,700
    against 6,300 per image in the search network)."""
    n, _, h, w = s1.shape
    if cell.reduction:
        h, w = (h + 1) // 2, (w + 1) // 2
    return parallel.worth_threads(n * cell.C * h * w / 2)


class MixedSum(Function):
    """Eq. (2) on one edge as one Function: out = sum over k of w[k] * o_k, for the
    operations k that run (not 'none'). MixedOp.forward builds it from 21 Functions
    (the weight row, 7 weights, 7 products, 6 sums); with 14 edges a cell, that was
    most of the graph, and each Function costs Python time whatever the batch. The
    arithmetic is MixedOp's, step by step, so every rounding is the same:

        forward   term_k = w[k] * o_k, added left to right as MixedOp adds them
        backward  d o_k = gy * w[k]                    (Mul's backward)
                  d w[k] = unbroadcast(gy * o_k, ())    (Mul's, summed to a scalar;
                                                         0 for the 'none' weights)"""

    def forward(self, w, *outs, ks):
        self.w, self.outs, self.ks = w, outs, ks
        out = None
        for k, o in zip(ks, outs):
            term = w[k] * o
            out = term if out is None else out + term
        return out

    def backward(self, gy):
        w = self.w
        gw = None
        if self.needs_input_grad[0]:
            gw = backend.get_array_module(gy).zeros(w.shape, dtype=gy.dtype)
            for k, o in zip(self.ks, self.outs):
                gw[k] = unbroadcast(gy * o, ())
        return (gw,) + tuple(gy * w[k] for k in self.ks)


class _Pass(Function):
    """y = x, the same array; gx = gy. Stands where an operation returns its input
    (skip_connect on a normal edge): in MixedOp's graph that input is read by the
    operation's own product w[k] * x, which the serial loop reaches between the
    operations before and after it; here too, so x's gradient is summed in the same
    order (the backward sums a tensor's parts in the order it reaches their makers)."""

    def forward(self, x):
        return x

    def backward(self, gy):
        return (gy,)


def mixed_op_forward(op, x, weights):
    """op(x, weights) (eq. 2, as MixedOp.forward) with the mixing as one Function."""
    ks = [k for k, name in enumerate(op.primitives) if name != "none"]
    outs = []
    shared = fast_ops.SharedMask(x)  # one x > 0 for the stages that start with relu(x)
    for k in ks:
        out = fast_ops.run(op._ops[k], x, shared)  # the conv stages as one Function each
        outs.append(_Pass.apply(out) if out is x else out)
    return MixedSum.apply(weights, *outs, ks=tuple(ks))


def cell_forward(cell, s0, s1, weights):
    """cell(s0, s1, weights) (eq. 1, as Cell.forward), the edges run on several threads.

    Edge (i, j), from state i into node j, is cell._ops[num_edges(j) + i]: node j's edges
    come after those of all earlier nodes, in the order of the states they read. Each
    edge waits only for its own input state, and each node for its own edges, so the
    edges into later nodes fill the time the chain node 0 -> node 1 -> ... leaves."""
    jobs = [(lambda: cell.preprocess0(s0), ()), (lambda: cell.preprocess1(s1), ())]
    state_job = [0, 1]  # the job whose result is state i

    def edge(k):
        return lambda h: mixed_op_forward(cell._ops[k], h, weights[k])

    def node_sum(*terms):  # in Cell.forward's order, so every rounding is the same
        node = None
        for term in terms:
            node = term if node is None else node + term
        return node

    for j in range(cell.steps):  # the jobs of node j: its edges, then their sum
        first = len(jobs)
        for i in range(len(state_job)):
            jobs.append((edge(num_edges(j) + i), (state_job[i],)))
        jobs.append((node_sum, tuple(range(first, len(jobs)))))
        state_job.append(len(jobs) - 1)
    # too small for the threads to pay: the same jobs in order on this thread
    results = parallel.run_graph(jobs, on_threads=pays(cell, s1))
    return cat([results[k] for k in state_job[-cell.multiplier :]], dim=1)
