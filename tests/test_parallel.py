"""Tests of engine/parallel.py: the backward on several threads gives the serial loop's
gradients to the bit, in the graph shapes where the two could part: a tensor used twice
by one Function, gradients that stop (None) on one path, retain_grad, leaves that
accumulate over two backward calls, and an error raised inside a backward."""

import numpy as np
import pytest

from minidarts.darts.network import Network
from minidarts.engine import backend, parallel
from minidarts.engine.autograd import Function, Tensor, _topological_order
from minidarts.nn import functional as F


@pytest.fixture
def threads():
    """set_num_threads for one test, restored after it."""
    old, smallest = parallel.num_threads(), parallel.set_min_elements(0)  # tiny graphs too
    yield parallel.set_num_threads
    parallel.set_num_threads(old)
    parallel.set_min_elements(smallest)


def _wide_graph(seed=0, big=64):
    """Leaves and a loss with many independent branches of large arrays (so they go to the
    workers), shared inputs, a tensor used twice by one op, and a retained tensor."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((big, big)), requires_grad=True)
    ws = [Tensor(rng.standard_normal((big, big)), requires_grad=True) for _ in range(6)]
    h = (x @ ws[0]).relu()
    h.retain_grad()
    branches = [((h @ w).tanh() * (h @ w).sigmoid() + x * x).exp().mean() for w in ws[1:]]
    loss = branches[0]
    for b in branches[1:]:
        loss = loss + b
    return [x, *ws], h, loss


def _grads(n, threads, seed=0):
    threads(n)
    leaves, h, loss = _wide_graph(seed)
    loss.backward()
    return [t.grad for t in leaves] + [h.grad]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_threads_give_the_serial_gradients_to_the_bit(threads, n):
    serial = _grads(1, threads)
    for a, b in zip(serial, _grads(n, threads)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_the_check_above_sees_a_scheduler_that_sums_in_another_order(threads, monkeypatch):
    """The check above can fail: the same scheduler summing each gradient's parts in the
    reverse of the serial loop's order gives gradients that differ in the last bits."""
    serial = _grads(1, threads)
    add = parallel._Sum.add

    def reversed_add(self, key, part):
        if self.next == 0 and not self.early:  # first part: sum the others backwards
            self.keys.reverse()
        return add(self, key, part)

    monkeypatch.setattr(parallel._Sum, "add", reversed_add)
    other = _grads(2, threads)
    assert all(np.allclose(a, b, rtol=1e-12) for a, b in zip(serial, other))
    assert not all(np.array_equal(a, b) for a, b in zip(serial, other))


def test_leaves_accumulate_over_two_backward_calls(threads):
    threads(1)
    leaves, _, loss = _wide_graph(2)
    loss.backward()
    loss.backward()
    serial = [t.grad for t in leaves]
    threads(2)
    leaves, _, loss = _wide_graph(2)
    loss.backward()
    loss.backward()
    assert all(np.array_equal(a, t.grad) for a, t in zip(serial, leaves))


class _Stop(Function):
    """Passes x through in the forward and gives it no gradient (None) in the backward."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return (None,)


class _Boom(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        raise FloatingPointError("boom in a backward")


def test_a_gradient_that_stops_on_one_path_reaches_by_the_other(threads):
    for n in (1, 2):
        threads(n)
        x = Tensor(np.full((200, 200), 2.0), requires_grad=True)
        y = Tensor(np.full((200, 200), 3.0), requires_grad=True)
        (_Stop.apply(x * y).sum() + (x * 5.0).sum()).backward()
        assert np.array_equal(x.grad, np.full((200, 200), 5.0))
        assert y.grad is None  # its only path stopped


def test_an_error_in_a_backward_is_raised_and_the_threads_stay_usable(threads):
    threads(2)
    x = Tensor(np.ones((200, 200)), requires_grad=True)
    loss = _Boom.apply(x * 2.0).sum() + (x * x).sum() + (x * 3.0).sum()
    with pytest.raises(FloatingPointError, match="boom in a backward"):
        loss.backward()
    serial = _grads(1, threads)
    assert all(np.array_equal(a, b) for a, b in zip(serial, _grads(2, threads)))


def test_a_wrong_gradient_shape_is_named_on_threads_too(threads):
    class Wrong(Function):
        def forward(self, x):
            return x.copy()

        def backward(self, gy):
            return (gy[:1],)

    threads(2)
    x = Tensor(np.ones((200, 200)), requires_grad=True)
    with pytest.raises(RuntimeError, match="Wrong.backward returned a gradient of shape"):
        (Wrong.apply(x) * 2.0).sum().backward()


@pytest.mark.parametrize("fast", [False, True])
def test_search_network_gradients_to_the_bit(threads, fast):
    """A search network's weights, alpha and BN statistics after a backward: the same on 1,
    2 and 4 threads, on the readable path (the serial loop its reference) and on the fast
    path (darts/fast_cell.py)."""
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((6, 1, 12, 12)).astype(np.float32))
    y = rng.integers(0, 10, 6)
    results = []
    for n in (1, 2, 4):
        threads(n)
        net = Network(C=4, layers=3, steps=3, multiplier=2, seed=1, fast=fast)
        F.cross_entropy(net(x), y).backward()
        grads = [p.grad for p in net.parameters()] + [a.grad for a in net.arch_parameters()]
        results.append((grads, net.state_dict()))
    for grads, state in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0][0], grads))
        assert all(np.array_equal(results[0][1][k], v) for k, v in state.items())


def test_run_graph_passes_results_along_and_raises(threads):
    threads(3)
    log = []

    def job(name, value):
        def run(*args):
            log.append(name)
            return value + sum(args)

        return run

    # a diamond: 0 -> (1, 2) -> 3, and 4 alone
    jobs = [(job("a", 1), ()), (job("b", 10), (0,)), (job("c", 100), (0,)), (job("d", 0), (1, 2))]
    jobs.append((job("e", 7), ()))
    assert parallel.run_graph(jobs) == [1, 11, 101, 112, 7]
    assert log.index("a") < log.index("b") < log.index("d") and log.index("c") < log.index("d")
    threads(1)
    assert parallel.run_graph(jobs) == [1, 11, 101, 112, 7]
    threads(2)

    def fail():
        raise KeyError("job 1")

    with pytest.raises(KeyError, match="job 1"):
        parallel.run_graph([(job("a", 1), ()), (fail, ()), (job("c", 1), (1,))])
    with pytest.raises(ValueError, match="job 0 depends on job 1, which is not earlier"):
        parallel.run_graph([(job("a", 1), (1,)), (job("b", 1), ())])


def test_thread_count_is_checked(threads, monkeypatch):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            parallel.set_num_threads(bad)
    monkeypatch.setattr(parallel, "_threads", None)
    monkeypatch.setenv("MINIDARTS_THREADS", "two")
    with pytest.raises(ValueError, match="MINIDARTS_THREADS must be a positive integer"):
        parallel.num_threads()
    monkeypatch.setenv("MINIDARTS_THREADS", "3")
    assert parallel.num_threads() == 3
    monkeypatch.setattr(parallel, "_threads", None)
    monkeypatch.delenv("MINIDARTS_THREADS")
    assert 1 <= parallel.num_threads() <= 4


def test_openblas_keeps_to_one_thread_while_the_threads_run(threads, monkeypatch):
    """OpenBLAS splitting a product over the cores the threads use made a step at batch
    128 slower on two threads than on one: during a parallel region OpenBLAS runs each
    product on its caller's thread, and it gets its own count back after."""
    calls = []
    monkeypatch.setattr(backend, "set_blas_threads", lambda n: calls.append(n) or 6)
    threads(2)
    leaves, _, loss = _wide_graph()
    loss.backward()
    assert calls == [1, 6]
    threads(1)  # the serial loop of a graph that pays too: the bits of two threads
    loss.backward()
    assert calls == [1, 6, 1, 6]
    parallel.set_min_elements(10**9)  # a graph too small to pay: OpenBLAS left alone
    loss.backward()
    threads(2)
    loss.backward()
    assert calls == [1, 6, 1, 6]


def test_overlapping_regions_of_two_caller_threads_keep_openblas_pinned(monkeypatch):
    """Two threads of the caller's own, each in a region: the first in pins OpenBLAS,
    the last out gives it its count back (the first out must not un-pin the other)."""
    import threading

    count = [6]

    def set_blas(n):
        old, count[0] = count[0], n
        return old

    monkeypatch.setattr(backend, "set_blas_threads", set_blas)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with parallel.products_on_calling_thread():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with parallel.products_on_calling_thread():
            second_in.set()
            first_out.wait(5)
            seen.append(count[0])  # the first has left: still pinned for this one

    threads_ = [threading.Thread(target=f) for f in (first, second)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join(10)
    assert seen == [1] and count[0] == 6


def test_an_interrupt_stops_every_thread_and_the_next_call_runs(threads):
    """Ctrl-C (KeyboardInterrupt) on the calling thread, or an error on any, stops the
    other threads after their current job and is raised once they have stopped: no job
    runs after the call returned, and the next call finds its threads."""
    threads(2)
    started, ran_after = [], []
    import threading
    import time

    finished = threading.Event()

    def job(k):
        def run(*_):
            started.append(k)
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt  # Ctrl-C while the calling thread runs a job
            time.sleep(0.05)
            if finished.is_set():
                ran_after.append(k)
            return k

        return run

    jobs = [(job(k), ()) for k in range(6)] + [(job(6), (1, 2, 3, 4, 5))]
    with pytest.raises(KeyboardInterrupt):
        try:
            parallel.run_graph(jobs)
        finally:
            finished.set()
    time.sleep(0.2)
    assert ran_after == [] and 6 not in started
    assert parallel.run_graph([((lambda k=k: k + 10), ()) for k in range(4)]) == [10, 11, 12, 13]


def test_a_region_inside_a_region_runs_on_its_own_thread(threads):
    threads(2)

    def inner(k):
        return parallel.run_graph([(lambda: k, ()), (lambda a: a + 1, (0,))])[1]

    jobs = [((lambda k=k: inner(k)), ()) for k in range(4)]
    assert parallel.run_graph(jobs) == [1, 2, 3, 4]  # and no deadlock


def test_set_blas_threads_sets_numpys_openblas():
    old = backend.set_blas_threads(1)
    if old is None:  # NumPy built with another BLAS: nothing to set, and it says so
        assert backend._openblas() is None
        return
    try:
        assert backend.set_blas_threads(3) == 1
        assert backend.set_blas_threads(old) == 3
    finally:
        backend.set_blas_threads(old)


def test_a_backward_on_threads_lets_go_of_its_graph(threads):
    """Once backward() returns and the loss is dropped, nothing of the graph stays alive:
    a worker holding the last region's closures kept a whole graph through the next
    forward (double the peak memory)."""
    import gc
    import weakref

    threads(2)
    gc.collect()
    leaves, h, loss = _wide_graph(4)
    inner = weakref.ref(loss._ctx.inputs[0])  # an intermediate tensor of the graph
    loss.backward()
    del loss, h
    assert inner() is None


def test_small_graphs_keep_to_the_serial_loop(threads, monkeypatch):
    """The threads run a backward only where its tensors hold at least
    parallel.min_elements() elements on average: below, the serial loop."""
    threads(2)
    regions = []
    real = parallel.run_backward
    monkeypatch.setattr(parallel, "run_backward", lambda *a: regions.append(1) or real(*a))
    _, _, loss = _wide_graph(big=8)
    sizes = [t.data.size for t in _topological_order(loss)]
    mean = sum(sizes) / len(sizes)
    grads = []
    for smallest, expected_regions in ((int(mean) + 1, 0), (int(mean), 1)):
        parallel.set_min_elements(smallest)
        leaves, _, loss = _wide_graph(big=8)
        loss.backward()
        assert len(regions) == expected_regions
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):  # the same numbers either way
        assert np.array_equal(a, b)


def test_set_min_elements_checks_its_argument(threads):
    assert parallel.set_min_elements(12345) == 0  # the fixture set 0
    assert parallel.min_elements() == 12345
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="set_min_elements: n must be a non-negative"):
            parallel.set_min_elements(bad)


def test_one_thread_gives_the_bits_of_two_where_openblas_splits_products(threads):
    """With one thread the search network's cell and backward keep every matrix product
    on the calling thread, as on two: OpenBLAS allowed two threads of its own splits the
    larger products of a forward and backward at batch 24, and a split
    product may round otherwise, so one thread gave other bits than two before."""
    from minidarts.jobs.bench import _search_parts, _step_functions

    blas = backend.set_blas_threads(2)  # as on a machine of two cores or more
    if blas is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose threads can be set")
    try:
        parallel.set_min_elements(parallel._MIN_ELEMENTS_DEFAULT)  # the default regions
        grads = []
        for n in (1, 2):
            threads(n)
            net, w_opt, architect, batches = _search_parts(24, "cpu")
            _step_functions(net, w_opt, architect, batches)["network fwd+bwd"]()
            params = list(net.parameters()) + list(net.arch_parameters())
            grads.append([p.grad for p in params if p.grad is not None])
        assert len(grads[0]) == len(grads[1]) > 10
        assert all(np.array_equal(a, b) for a, b in zip(*grads))
        assert backend.set_blas_threads(blas) == 2  # the regions gave OpenBLAS its threads back
    finally:
        backend.set_blas_threads(blas)
