"""The fast path of the search cell: eq. (1) with independent edges run side by side.

cell.py's Cell.forward is eq. (1) as a reader should meet it, one edge after another.
That leaves a core idle: NumPy computes on one core, and the 14 edges of a cell, each
a mixed operation (eq. 2) of 7 candidates, are independent of each other as long as
they read states already known. This builds the very same graph:

- the same modules (the cell's own mixed operations, with their weights and BN
  statistics) are called on the same inputs;
- each node is summed over its incoming edges in Cell.forward's order, so every
  rounding is the same;

but each edge is handed to engine/parallel.py's threads as soon as the state it reads
is known (the 2 * steps edges leaving the two inputs at once, those leaving node 0 once
node 0 is summed, and so on), the edges into earlier nodes first. The forward and every
gradient equal the readable path's to the bit (tests/test_fast_cell.py); the backward
runs on the threads too (engine/parallel.py).

Network uses it by default on the CPU when more than one thread is set
(minidarts.set_num_threads, MINIDARTS_THREADS) and the cell has only DARTS's own
operations (usable below), for the cells whose operations are large enough for the
threads to pay (pays below: from about batch 12 in the search network; the numbers
are the same either way). `Network(..., fast=False)` or
`network.fast = False` takes the readable path, and so does every network while the
environment variable MINIDARTS_FAST_CELL is 0: the tests of the classroom tasks set it
(tests/conftest.py), as they must exercise the student's Cell.forward. The student
copy leaves this file out (classroom/assign.py, TEACHER_ONLY): it computes eq. (1).
"""

import os

from ..engine import parallel
from ..engine.ops import cat
from .cell import num_edges
from .operations import is_darts_operation


def usable(primitives, device):
    """Whether to take the fast path: on the CPU with several threads, where it pays,
    unless MINIDARTS_FAST_CELL is 0, and for DARTS's own operations only. An operation
    registered by a user keeps to the
    readable path: it might not be safe on threads (e.g. one drawing from the global
    random generator would draw in the order the threads happen to run)."""
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


def cell_forward(cell, s0, s1, weights):
    """cell(s0, s1, weights) (eq. 1, as Cell.forward), the edges run on several threads.

    Edge (i, j), from state i into node j, is cell._ops[num_edges(j) + i]: node j's edges
    come after those of all earlier nodes, in the order of the states they read. Each
    edge waits only for its own input state, and each node for its own edges, so the
    edges into later nodes fill the time the chain node 0 -> node 1 -> ... leaves."""
    jobs = [(lambda: cell.preprocess0(s0), ()), (lambda: cell.preprocess1(s1), ())]
    state_job = [0, 1]  # the job whose result is state i

    def edge(k):
        return lambda h: cell._ops[k](h, weights[k])

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
    results = parallel.run_graph(jobs)
    return cat([results[k] for k in state_job[-cell.multiplier :]], dim=1)
