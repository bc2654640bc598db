"""Tests of darts/fast_cell.py, the search network's fast path: the edges of a cell run
on several threads, and the forward, every gradient (weights and alpha) and the BN
running statistics equal those of the readable Cell.forward to the bit, on random
networks of both cell types, in float64 and float32, on the CPU and (where there is
one) the GPU. Leaving the student copy is tested in test_assign.py (TEACHER_ONLY)."""

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


@pytest.mark.parametrize(
    "layers, steps, multiplier, dtype",
    [(1, 4, 4, "float32"), (3, 3, 2, "float64"), (4, 2, 2, "float32"), (2, 4, 3, "float64")],
)
def test_fast_path_equals_the_readable_path_to_the_bit(threads, layers, steps, multiplier, dtype):
    rng = np.random.default_rng(layers * 10 + steps)
    x = Tensor(rng.standard_normal((5, 1, 12, 12)).astype(dtype))
    y = rng.integers(0, 10, 5)
    runs, alpha = {}, None
    for name, n, fast in (("readable, 1 thread", 1, False), ("fast, 3 threads", 3, True)):
        threads(n)
        net = Network(C=4, layers=layers, steps=steps, multiplier=multiplier, seed=layers)
        if dtype == "float64":
            _to64(net)
        if alpha is None:  # alpha away from uniform, so every weight matters
            alpha = {k: rng.standard_normal(a.shape) for k, a in net.alphas.items()}
        for k, a in net.alphas.items():
            a.data[...] = alpha[k].astype(a.data.dtype)
        net.fast = fast
        runs[name] = _run(net, x, y)
    (o1, p1, a1, s1), (o2, p2, a2, s2) = runs.values()
    assert o1.dtype == np.dtype(dtype)
    assert _same(o1, o2)
    assert len(p1) == len(p2) and all(_same(a, b) for a, b in zip(p1, p2))
    assert all(_same(a, b) for a, b in zip(a1, a2))
    assert all(_same(s1[k], s2[k]) for k in s1)


def _to64(net):
    for t in list(net.parameters()) + list(net.buffers()) + list(net.alphas.values()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)


def test_the_check_above_can_fail():
    """A fast path that summed a node's incoming edges in another order than Cell.forward
    would differ in the last bits: the comparison above is strict enough to see it."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 1, 12, 12)).astype(np.float32))
    net = Network(C=4, layers=1, steps=3, multiplier=2, seed=0)
    cell, w = net.cells[0], F.softmax(net.alphas["reduce"], dim=-1)
    s = net.stem(x)
    states = [cell.preprocess0(s), cell.preprocess1(s)]
    terms = [cell._ops[k](h, w[k]) for k, h in enumerate(states)]
    states.append(terms[0] + terms[1])
    k = fast_cell.num_edges(1)
    terms = [cell._ops[k + i](h, w[k + i]).data for i, h in enumerate(states)]
    in_order, reversed_order = (terms[0] + terms[1]) + terms[2], (terms[2] + terms[1]) + terms[0]
    np.testing.assert_allclose(in_order, reversed_order, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(in_order, reversed_order)


def test_fast_path_is_taken_only_where_it_pays(threads, monkeypatch):
    calls = []
    real = fast_cell.cell_forward
    monkeypatch.setattr(fast_cell, "cell_forward", lambda *a: calls.append(1) or real(*a))
    x = Tensor(np.zeros((2, 1, 12, 12), np.float32))
    net = Network(C=4, layers=1, steps=2, multiplier=2)
    threads(2)
    net(x)
    assert calls == [1]
    threads(1)  # one thread: nothing to run side by side
    net(x)
    threads(2)
    net.fast = False
    net(x)
    net.fast = True
    monkeypatch.setenv("MINIDARTS_FAST_CELL", "0")
    net(x)
    assert calls == [1]
    monkeypatch.delenv("MINIDARTS_FAST_CELL")
    # too small for the threads to pay: the same jobs on the calling thread. The cell's
    # nodes hold N x C x H x W elements, its tensors about half that (fast_cell.pays)
    regions = []
    run_graph = parallel.run_graph
    monkeypatch.setattr(
        parallel,
        "run_graph",
        lambda jobs, on_threads: regions.append(on_threads) or run_graph(jobs, on_threads),
    )
    cell = net.cells[0]
    side = 6 if cell.reduction else 12
    half_node = 2 * cell.C * side * side // 2
    parallel.set_min_elements(half_node + 1)
    net(x)
    parallel.set_min_elements(half_node)
    net(x)
    assert calls == [1, 1, 1] and regions == [False, True]
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
    assert _same(fast_cell.cell_forward(cell, s, s, w).data, cell(s, s, w).data)


def test_mixed_sum_gradients_against_central_differences():
    """MixedSum (eq. 2 as one Function), float64: the weight row (a 'none' entry, 2,
    gets no gradient: it does not run) and every operation's output."""
    import minidarts as md

    rng = np.random.default_rng(3)
    w = md.tensor(rng.standard_normal(4), requires_grad=True)
    outs = [md.tensor(rng.standard_normal((2, 3, 4, 4)), requires_grad=True) for _ in range(3)]
    ks = (0, 1, 3)

    def mixed(w, *outs):
        return fast_cell.MixedSum.apply(w, *outs, ks=ks)

    assert md.gradcheck(mixed, w, *outs).max_rel_error <= 1e-6
    y = mixed(w, *outs)
    expected = sum(w.data[k] * o.data for k, o in zip(ks, outs))
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)
    y.backward(np.ones_like(y.data))
    assert w.grad[2] == 0
    x = md.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    assert md.gradcheck(lambda t: fast_cell._Pass.apply(t) * 2.0, x).max_rel_error <= 1e-6
