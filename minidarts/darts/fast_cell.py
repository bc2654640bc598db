"""The fast path of the search cell: eq. (1) with independent edges run side by side.

cell.py's Cell.forward is eq. (1) as a reader should meet it, one edge after another.
That leaves a core idle: NumPy computes on one core, and the 14 edges of a cell, each
a mixed operation (eq. 2) of 7 candidates, are independent of each other as long as
they read states already known. This computes the very same graph:

- the same modules (the cell's own mixed operations, with their weights and BN
  statistics) are called on the same inputs, the edges in the same order of index;
- each node is summed over its incoming edges in Cell.forward's order, so every
  rounding is the same;

but the edges that read a state are handed together to engine/parallel.py's threads
as soon as that state is known: first the 2 * steps edges leaving the two inputs, then
the edges leaving node 0, and so on. The forward and every gradient equal the readable
path's to the bit (tests/test_fast_cell.py), and the backward runs on the threads too.

Network uses it by default on the CPU when more than one thread is set
(minidarts.set_num_threads, MINIDARTS_THREADS) and the cell has only DARTS's own
operations (usable below); `Network(..., fast=False)` or
`network.fast = False` takes the readable path. The tests of the classroom tasks switch
it off (tests/conftest.py): they must exercise the student's Cell.forward. The student
copy leaves this file out (classroom/assign.py, TEACHER_ONLY): it computes eq. (1).
"""

from ..engine import parallel
from ..engine.ops import cat
from .cell import num_edges
from .operations import is_darts_operation

# Off: Network takes the readable path whatever it was built with (tests/conftest.py
# sets it for the tests of the classroom tasks).
enabled = True


def usable(primitives, device):
    """Whether to take the fast path: on the CPU with several threads, where it pays, and
    for DARTS's own operations only. An operation registered by a user keeps to the
    readable path: it might not be safe on threads (e.g. one drawing from the global
    random generator would draw in the order the threads happen to run)."""
    return (
        enabled
        and device == "cpu"
        and parallel.num_threads() > 1
        and all(is_darts_operation(name) for name in primitives)
    )


def cell_forward(cell, s0, s1, weights):
    """cell(s0, s1, weights) (eq. 1, as Cell.forward), the edges run on several threads.

    Edge (i, j), from state i into node j, is cell._ops[num_edges(j) + i]: node j's edges
    come after those of all earlier nodes, in the order of the states they read."""
    states = parallel.map_in_threads(
        lambda pre: pre[0](pre[1]), [(cell.preprocess0, s0), (cell.preprocess1, s1)]
    )
    terms = {}

    def edge(ij):
        i, j = ij
        k = num_edges(j) + i
        return cell._ops[k](states[i], weights[k])

    sources = (0, 1)  # the states whose edges are still to run
    for j in range(cell.steps):
        todo = [(i, jj) for i in sources for jj in range(j, cell.steps)]
        terms.update(zip(todo, parallel.map_in_threads(edge, todo)))
        node = None
        for i in range(len(states)):
            term = terms.pop((i, j))
            node = term if node is None else node + term
        states.append(node)
        sources = (len(states) - 1,)
    return cat(states[-cell.multiplier :], dim=1)
