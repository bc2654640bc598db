"""The fast path of the search cell: eq. (1) and (2) with the edges batched and run side by side.

cell.py's Cell.forward is eq. (1) as a reader should meet it, one edge after another,
each edge a MixedOp (eq. 2) of 7 candidate operations: about 760 Functions in the
paper's network, each paying its Python time whatever the batch, and one core idle.
This computes the same numbers up to rounding:

- the E edges that read one state run each operation as one call (fast_ops.py,
  `group_op`): 78 Functions for the paper's network (249 with the edges one at a
  time, each conv stage already one Function);
- eq. (2) for those E edges is one Function, MixedSumEdges, and each node's sum over
  its incoming edges (eq. 1) one more, NodeSum, in Cell.forward's order;
- the calls run on engine/parallel.py's threads as soon as the state they read is
  known (the operations of the two input states at once, then those of node 0 once
  node 0 is summed, and so on); the backward runs on the threads too.

The forward, every gradient and the BN statistics equal the readable path's up to
rounding (tests/test_fast_cell.py: float64, relative 1e-11): the sums over edges run
in another order, so the last bits differ, and a search drifts from the readable
path's by float32 rounding (set MINIDARTS_FAST_CELL=0 to run the readable path, whose
numbers the records of earlier versions reproduce).

Network uses it by default on the CPU where the cell has only DARTS's own operations
(usable below), on every thread count: one thread (minidarts.set_num_threads,
MINIDARTS_THREADS) runs the same jobs in order, each matrix product kept to it as on
several (OpenBLAS splitting one over its own threads may round otherwise), to the same
bits. A cell too small for the threads to pay (pays below: under batch 16 in the
search network) runs its jobs in order on every thread count.
`Network(..., fast=False)` or `network.fast = False` takes the readable path, and so
does every network while the environment variable MINIDARTS_FAST_CELL is 0: the tests
of the classroom tasks set it (tests/conftest.py), as they must exercise the student's
Cell.forward. The student copy leaves this file out (classroom/assign.py,
TEACHER_ONLY): it computes eq. (1) and eq. (2).
"""

import functools
import os

from ..engine import backend, parallel
from ..engine.autograd import Function
from ..engine.ops import cat
from . import fast_ops
from .cell import num_edges
from .operations import is_darts_operation


def usable(primitives, device):
    """Whether the network may take the fast path: on the CPU, unless
    MINIDARTS_FAST_CELL is 0, and for DARTS's own operations only (each cell then runs
    its jobs on the threads where they pay, `pays`, and in order on the calling thread
    elsewhere: the same numbers either way). An operation registered by a user keeps to
    the readable path: it might not be safe on threads (e.g. one drawing from the
    global random generator would draw in the order the threads happen to run)."""
    return (
        os.environ.get("MINIDARTS_FAST_CELL", "1") != "0"
        and device == "cpu"
        and all(is_darts_operation(name) for name in primitives)
    )


def pays(cell, s1):
    """Whether the cell's operations are large enough for the threads to pay
    (parallel.pays): its nodes hold N x C x H x W elements (H, W halved in a
    reduction cell), the tensors of its graph about two thirds of that on average
    (2,050 against 3,136 per image in the search network), the size its backward is
    judged by. Half a node (the estimate before the edges were batched) kept the
    threads off to batch 20: a step at batch 16 and 20 took 0.85 of the time with
    them (21 interleaved rounds)."""
    n, _, h, w = s1.shape
    if cell.reduction:
        h, w = (h + 1) // 2, (w + 1) // 2
    return parallel.pays(n * cell.C * h * w * 2 / 3)


class MixedSumEdges(Function):
    """Eq. (2) on the E edges that read one state, as one Function:

        out_e = sum over k of w[rows[e], k] * o_k,e      (k: the operations that run)

    `weights` the cell's softmax(alpha) (edges x operations), o_k (N, E*C, H, W) with
    edge e's output in channels e*C .., or (N, C, H, W) where it is the same for every
    edge (shared[k]: a pool, the identity). Output (N, E*C, H, W). Backward:
    d o_k,e = gy_e * w[rows[e], k] (summed over e for a shared o_k),
    d w[rows[e], k] = sum(gy_e * o_k,e)."""

    def forward(self, weights, *outs, rows, ks, shared):
        self.rows, self.ks, self.shared = list(rows), ks, shared
        e = len(rows)
        self.w = weights[self.rows]  # (E, K)
        # the weights' gradient reads the outputs (none in the weight step)
        self.outs = outs if self.needs_input_grad[0] else None
        self.w_shape = weights.shape
        n, _, h, w = outs[0].shape
        c = outs[0].shape[1] // (1 if shared[0] else e)
        self.shape5 = (n, e, c, h, w)
        out = None
        for k, o, sh in zip(ks, outs, shared):
            o5 = o.reshape(n, 1 if sh else e, c, h, w)
            term = self.w[:, k].reshape(1, e, 1, 1, 1) * o5
            if out is None:
                out = term  # a fresh array (N, E, C, H, W), added into below
            else:
                out += term
        return out.reshape(n, e * c, h, w)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, e, c, h, w = self.shape5
        gy5 = gy.reshape(n, e, c, h, w)
        gw = None
        if self.needs_input_grad[0]:
            gw = xp.zeros(self.w_shape, dtype=gy.dtype)
            for k, o, sh in zip(self.ks, self.outs, self.shared):
                if sh:
                    gw[self.rows, k] = xp.einsum("nechw,nchw->e", gy5, o)
                else:
                    gw[self.rows, k] = xp.einsum("nechw,nechw->e", gy5, o.reshape(gy5.shape))
        grads = []
        for k, sh, need in zip(self.ks, self.shared, self.needs_input_grad[1:]):
            if not need:
                grads.append(None)
            elif sh:
                grads.append(xp.einsum("nechw,e->nchw", gy5, self.w[:, k]))
            else:
                grads.append((gy5 * self.w[:, k].reshape(1, e, 1, 1, 1)).reshape(gy.shape))
        return (gw, *grads)


class NodeSum(Function):
    """Eq. (1) for one node: x_j = sum over i of edge (i, j)'s output, from the
    MixedSumEdges output of each state i, in the order of the states (as Cell.forward).
    picks: for each input, (E, e): its edge count and the position of edge (i, j)."""

    def forward(self, *groups, picks):
        self.picks, self.shapes = picks, [g.shape for g in groups]
        node = None
        for g, (e, k) in zip(groups, picks):
            n, ec, h, w = g.shape
            term = g.reshape(n, e, ec // e, h, w)[:, k]
            node = term if node is None else node + term
        return node if len(groups) > 1 else node.copy()

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        grads = []
        for shape, (e, k), need in zip(self.shapes, self.picks, self.needs_input_grad):
            if not need:
                grads.append(None)
            elif e == 1:
                grads.append(gy)
            else:
                n, ec, h, w = shape
                g = xp.zeros((n, e, ec // e, h, w), dtype=gy.dtype)
                g[:, k] = gy
                grads.append(g.reshape(shape))
        return tuple(grads)


_LONGEST_FIRST = {
    name: rank
    for rank, name in enumerate(
        ("sep_conv_5x5", "sep_conv_3x3", "dil_conv_5x5", "dil_conv_3x3", "skip_connect")
    )
}


def _mask(h):
    return h.data > 0


def _mix(weights, rows, ks, *outs):
    return MixedSumEdges.apply(
        weights, *[o for o, _ in outs], rows=rows, ks=ks, shared=tuple(sh for _, sh in outs)
    )


def _node(picks, *groups):
    return NodeSum.apply(*groups, picks=picks)


def cell_forward(cell, s0, s1, weights):
    """cell(s0, s1, weights) (eq. 1 and 2, as Cell.forward) with the edges that read one
    state batched (module docstring), the batches run on engine/parallel.py's threads:
    each operation of a state's edges is one job once the state is known, then their
    mixing (eq. 2), then each node's sum (eq. 1) once the states it reads are mixed."""
    ks = tuple(k for k, name in enumerate(cell._ops[0].primitives) if name != "none")
    jobs = [(lambda: cell.preprocess0(s0), ()), (lambda: cell.preprocess1(s1), ())]
    state_job, edges_of = [0, 1], {}
    # the operations' jobs listed longest first (a SepConv is two stages): where several
    # are ready, the threads take the one listed first
    names = cell._ops[0].primitives
    listed = sorted(ks, key=lambda k: _LONGEST_FIRST.get(names[k], len(_LONGEST_FIRST)))

    def add_group(i):  # the jobs of the edges leaving state i, into nodes i - 1, i, ...
        edges = tuple(num_edges(j) + i for j in range(max(0, i - 1), cell.steps))
        if not edges:
            return
        jobs.append((_mask, (state_job[i],)))
        deps, job_of = (state_job[i], len(jobs) - 1), {}
        for k in listed:
            job_of[k] = len(jobs)
            jobs.append(
                (functools.partial(fast_ops.group_op, [cell._ops[e]._ops[k] for e in edges]), deps)
            )
        # the mixing takes the outputs in the order of the operations (MixedOp's order)
        jobs.append((functools.partial(_mix, weights, edges, ks), tuple(job_of[k] for k in ks)))
        for position, e in enumerate(edges):
            edges_of[e] = (len(jobs) - 1, len(edges), position)

    add_group(0)
    add_group(1)
    for j in range(cell.steps):
        into = [edges_of[num_edges(j) + i] for i in range(j + 2)]
        picks = tuple((e, k) for _, e, k in into)
        jobs.append((functools.partial(_node, picks), tuple(m for m, _, _ in into)))
        state_job.append(len(jobs) - 1)
        add_group(j + 2)
    results = parallel.run_graph(jobs, on_threads=pays(cell, s1))
    return cat([results[k] for k in state_job[-cell.multiplier :]], dim=1)
