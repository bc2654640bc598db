"""Tests of darts/fast_cell.py, the search network's fast path: the edges that read one
state run as one call per operation, on several threads, and the forward, every
gradient (weights and alpha) and the BN running statistics equal those of the readable
Cell.forward up to rounding (float64: relative 1e-11), on random networks of both cell
types, on the CPU and (where there is one) the GPU; and they are the same to the bit on
every thread count. Leaving the student copy is tested in test_assign.py
(TEACHER_ONLY)."""

import math

import numpy as np
import pytest

from minidarts.darts import fast_cell, operations
from minidarts.darts.network import Network
from minidarts.engine import backend, parallel
from minidarts.engine.autograd import Tensor
from minidarts.nn import functional as F


@pytest.fixture
def threads():
    old, smallest = parallel.num_threads(), parallel.set_min_elements(0)  # tiny graphs too
    yield parallel.set_num_threads
    parallel.set_num_threads(old)
    parallel.set_min_elements(smallest)


def _run(net, x, y, alphas=None):
    """Output, loss gradients of every weight and alpha, and the state after one step."""
    out = net(x, alphas)
    F.cross_entropy(out, y).backward()
    params = [p.grad for p in net.parameters()]
    arch = [a.grad for a in (alphas or net.alphas).values()]
    return out.data, params, arch, net.state_dict()


def _same(a, b):
    xp_a, xp_b = (backend.to_numpy(v) if v is not None else None for v in (a, b))
    if xp_a is None or xp_b is None:
        return xp_a is None and xp_b is None
    return xp_a.dtype == xp_b.dtype and np.array_equal(xp_a, xp_b)


def _close(a, b, rtol):
    """a and b within rtol of the larger magnitude in a (gradients pass through zero)."""
    if a is None or b is None:  # no gradient (an alpha of a cell type not in the network)
        return a is None and b is None
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    return a.dtype == b.dtype and np.allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max())


def _to64(net):
    for t in list(net.parameters()) + list(net.buffers()) + list(net.alphas.values()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)


def _paths(runs_of, layers, steps, multiplier, dtype, seed=None, evaluate=False):
    """{name: _run(...)} for each (name, threads, fast) of runs_of, on the same network."""
    rng = np.random.default_rng(layers * 10 + steps if seed is None else seed)
    x = Tensor(rng.standard_normal((5, 1, 12, 12)).astype(dtype))
    y = rng.integers(0, 10, 5)
    runs, alpha = {}, None
    for name, n, fast in runs_of:
        parallel.set_num_threads(n)
        net = Network(C=4, layers=layers, steps=steps, multiplier=multiplier, seed=layers)
        if dtype == "float64":
            _to64(net)
        if alpha is None:  # alpha away from uniform, so every weight matters
            alpha = {k: rng.standard_normal(a.shape) for k, a in net.alphas.items()}
        for k, a in net.alphas.items():
            a.data[...] = alpha[k].astype(a.data.dtype)
        net.fast = fast
        if evaluate:  # running statistics of one batch, then the network evaluated
            net(x)
            net.eval()
        runs[name] = _run(net, x, y)
    return list(runs.values())


READABLE, FAST = ("readable, 1 thread", 1, False), ("fast, 3 threads", 3, True)


def _agree(runs, same):
    (o1, p1, a1, s1), (o2, p2, a2, s2) = runs
    return (
        same(o1, o2)
        and len(p1) == len(p2)
        and all(same(a, b) for a, b in zip(p1, p2))
        and all(same(a, b) for a, b in zip(a1, a2))
        and all(same(s1[k], s2[k]) for k in s1)
    )


@pytest.mark.parametrize(
    "layers, steps, multiplier, evaluate",
    [(1, 4, 4, False), (3, 3, 2, False), (4, 2, 2, True), (2, 4, 3, False)],
)
def test_fast_path_equals_the_readable_path(threads, layers, steps, multiplier, evaluate):
    runs = _paths([READABLE, FAST], layers, steps, multiplier, "float64", evaluate=evaluate)
    assert runs[0][0].dtype == np.float64
    assert _agree(runs, lambda a, b: _close(a, b, 1e-11))


def test_float32_fast_path_is_close_to_the_readable_path(threads):
    runs = _paths([READABLE, FAST], 1, 4, 4, "float32")
    assert runs[0][0].dtype == np.float32
    assert _agree(runs, lambda a, b: _close(a, b, 1e-4))


def test_fast_path_is_the_same_to_the_bit_on_every_thread_count(threads):
    """Determinism: one thread runs the fast path's jobs in order, two and four side by
    side; the backward sums each gradient in the serial loop's order."""
    runs_of = [("1", 1, True), ("2", 2, True), ("4", 4, True)]
    runs = _paths(runs_of, 3, 3, 2, "float32")
    assert _agree(runs[:2], _same) and _agree(runs[1:], _same)


def test_the_check_above_can_fail(threads, monkeypatch):
    """A fast path that mixed each edge with the weights of the edge beside it (rows
    shifted by one: a plausible slip in the batched eq. (2)) is caught by the tolerance."""
    mix = fast_cell._mix

    def shifted(weights, rows, ks, *outs):
        return mix(weights, rows[1:] + rows[:1], ks, *outs)

    monkeypatch.setattr(fast_cell, "_mix", shifted)
    runs = _paths([READABLE, FAST], 1, 3, 2, "float64")
    assert not _agree(runs, lambda a, b: _close(a, b, 1e-11))


def test_fast_path_is_taken_only_where_it_pays(threads, monkeypatch):
    calls = []
    real = fast_cell.cell_forward
    monkeypatch.setattr(fast_cell, "cell_forward", lambda *a: calls.append(1) or real(*a))
    x = Tensor(np.zeros((2, 1, 12, 12), np.float32))
    net = Network(C=4, layers=1, steps=2, multiplier=2)
    threads(2)
    net(x)
    assert calls == [1]
    threads(1)  # one thread: the same path, its jobs in order
    net(x)
    assert calls == [1, 1]
    threads(2)
    net.fast = False
    net(x)
    net.fast = True
    monkeypatch.setenv("MINIDARTS_FAST_CELL", "0")
    net(x)
    assert calls == [1, 1]
    monkeypatch.delenv("MINIDARTS_FAST_CELL")
    # too small for the threads to pay: the same jobs on the calling thread. The cell's
    # nodes hold N x C x H x W elements, its tensors about two thirds of that
    # (fast_cell.pays)
    regions = []
    run_graph = parallel.run_graph
    monkeypatch.setattr(
        parallel,
        "run_graph",
        lambda jobs, on_threads: regions.append(on_threads) or run_graph(jobs, on_threads),
    )
    cell = net.cells[0]
    side = 6 if cell.reduction else 12
    two_thirds = 2 * cell.C * side * side * 2 / 3
    parallel.set_min_elements(math.floor(two_thirds) + 1)
    net(x)
    parallel.set_min_elements(math.floor(two_thirds))
    net(x)
    assert calls == [1, 1, 1, 1] and regions == [False, True]
    assert fast_cell.usable(("none", "skip_connect"), "cpu")
    assert not fast_cell.usable(("none", "skip_connect"), "gpu")
    # a user's operation keeps the readable path: it may not be safe on threads
    monkeypatch.setitem(operations.OPS, "noisy_op", lambda C, stride, affine: None)
    assert not fast_cell.usable(("none", "noisy_op"), "cpu")
    monkeypatch.setitem(operations.OPS, "skip_connect", lambda C, stride, affine: None)
    assert not fast_cell.usable(("none", "skip_connect"), "cpu")
    assert Network(C=4, layers=1, steps=2, multiplier=2, fast=False).fast is False


@pytest.mark.gpu
def test_fast_path_equals_the_readable_path_on_the_gpu(threads):
    """On a GPU the network keeps to the readable path (usable() is False there); called
    directly, the fast cell computes the same numbers there too."""
    if not backend.gpu_available():
        pytest.skip("no GPU / CuPy")
    threads(2)
    rng = np.random.default_rng(0)
    net = Network(C=4, layers=1, steps=3, multiplier=2, seed=0).to("gpu")
    assert not fast_cell.usable(net.primitives, "gpu")
    x = Tensor(backend.asarray(rng.standard_normal((4, 1, 12, 12)), np.float32, device="gpu"))
    s = net.stem(x)
    w = F.softmax(net.alphas["reduce"], dim=-1)
    cell = net.cells[0]
    assert _close(cell(s, s, w).data, fast_cell.cell_forward(cell, s, s, w).data, 1e-5)


def test_mixed_sum_edges_gradients_against_central_differences():
    """MixedSumEdges (eq. 2 for the edges that read one state), float64: the rows of
    weights its edges own (the rest, and the 'none' column 2, get no gradient), an
    output of each edge's own and one the edges share (a pool's)."""
    import minidarts as md

    rng = np.random.default_rng(3)
    w = md.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    own = md.tensor(rng.standard_normal((2, 3 * 2, 4, 4)), requires_grad=True)
    shared = md.tensor(rng.standard_normal((2, 2, 4, 4)), requires_grad=True)
    own2 = md.tensor(rng.standard_normal((2, 3 * 2, 4, 4)), requires_grad=True)
    rows, ks = (4, 1, 2), (0, 1, 3)

    def mixed(w, *outs):
        return fast_cell.MixedSumEdges.apply(
            w, *outs, rows=rows, ks=ks, shared=(False, True, False)
        )

    assert md.gradcheck(mixed, w, own, shared, own2).max_rel_error <= 1e-6
    y = mixed(w, own, shared, own2)
    for e, row in enumerate(rows):  # eq. (2) edge by edge
        part = slice(2 * e, 2 * e + 2)
        terms = [own.data[:, part], shared.data, own2.data[:, part]]
        expected = sum(w.data[row, k] * t for k, t in zip(ks, terms))
        np.testing.assert_allclose(y.data[:, part], expected, rtol=1e-12)
    y.backward(np.ones_like(y.data))
    assert (w.grad[[0, 3, 5]] == 0).all() and (w.grad[:, 2] == 0).all()


def test_node_sum_gradients_against_central_differences():
    """NodeSum (eq. 1 for one node): edge 1 of a group of 3, edge 0 of a group of 1."""
    import minidarts as md

    rng = np.random.default_rng(4)
    a = md.tensor(rng.standard_normal((2, 3 * 2, 3, 3)), requires_grad=True)
    b = md.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)

    def node(a, b):
        return fast_cell.NodeSum.apply(a, b, picks=((3, 1), (1, 0)))

    assert md.gradcheck(node, a, b).max_rel_error <= 1e-6
    np.testing.assert_array_equal(node(a, b).data, a.data[:, 2:4] + b.data)
