"""The backward pass over several CPU threads, with the serial result to the bit.

NumPy runs every operation on one core. A search network's backward is a wide graph:
the 14 edges of a cell, 7 operations on each, are independent until their gradients
meet at the nodes. Two threads can each run the backward of a different operation at
the same time, since NumPy releases Python's lock (the GIL) inside its array loops
and matrix products: where PyTorch splits each operation over the cores, minidarts
runs independent operations side by side.

The result is the serial one exactly, not just up to rounding, because the schedule
changes only *when* a Function's backward runs, never what it computes:

- a tensor's backward runs once all of its consumers have reported their gradient
  for it (the serial loop's reverse topological order guarantees the same);
- the gradients a tensor receives are summed in the serial loop's order, by the
  position of the consumer in that order (then by input slot), whatever order the
  threads finished in: floating-point addition is not associative, so the order
  of the sum is what makes the two bit-identical;
- each tensor's summed gradient is handed on once, by the thread that takes it, so a
  leaf (or a retained tensor) adds to its `.grad` once per backward, as in the loop.

`run_graph` runs other work on the same threads: jobs that wait for each other's
results (the search cell's forward, darts/fast_cell.py).

tests/test_parallel.py checks every gradient of a search step against the serial loop
with `array_equal`. The serial loop in autograd.py stays the reference a reader
learns from; this module only schedules it. GPU arrays always take the serial loop
(CuPy queues its kernels on one stream: threads would add nothing but overhead).

Threads: `set_num_threads(n)` or the environment variable MINIDARTS_THREADS; the
default is the number of cores, at most 4 (a cell has too little independent work
for more to pay). 1 turns the threads off. They are used only where the operations
are large enough to pay for them (`pays`, `set_min_elements`). In such a region
OpenBLAS keeps each matrix product on the thread that calls it, whatever the thread
count (backend.set_blas_threads; a product it splits over its own threads may round
otherwise, and 1 thread would not give the bits of 2); outside them it has its own
threads back. A parallel region started from inside another runs on its calling
thread (the others are busy with the outer one). An error in any thread, or Ctrl-C,
stops every thread after its current job and is raised once they have all stopped.
"""

import contextlib
import heapq
import os
import queue
import threading

from . import backend

_MAX_DEFAULT = 4
# Below this many elements per operation the threads cost more than they save: both
# run Python between short NumPy calls and hand the GIL to and fro. Measured on 2 cores,
# the search network's forward+backward (1 thread against 2): batch 1 49 vs 98 ms,
# 8: 125 vs 148, 16: 209 vs 189, 32: 374 vs 284. They cross near batch 12, where the
# backward's tensors hold 32K elements on average (the no_grad forward alone crosses
# there too). Lower bars were measured and not kept: the mean size does not weigh the
# graphs' work alike. At 24,000 the fast path's forward+backward took 0.73-0.90 of the
# time at batch 12-20, but the readable path's backward 1.15 at batch 9 (many small
# elementwise jobs); at 18,000 a first-order step at batch 4 took 1.12-1.23 (the
# architecture step's backward, 4,670 elements per image on average against the full
# backward's 2,050: its frozen weights are not in its graph).
_MIN_ELEMENTS_DEFAULT = 1 << 15
_min_elements = _MIN_ELEMENTS_DEFAULT

_threads = None
_workers = None  # (pid, task queue, [threads]) of the running pool
_inside = threading.local()  # .active: this thread runs a job of a parallel region


def _threads_from_env():
    value = os.environ.get("MINIDARTS_THREADS", "").strip()
    if not value:
        try:
            cores = len(os.sched_getaffinity(0))  # the cores this process may use
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(1, min(_MAX_DEFAULT, cores))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"MINIDARTS_THREADS must be a positive integer (1 turns the threads off), got {value!r}"
        )
    return int(value)


def num_threads():
    """How many threads a CPU backward (and the search cell's fast forward) uses:
    set_num_threads, else MINIDARTS_THREADS, else the number of cores, at most 4."""
    global _threads
    if _threads is None:
        _threads = _threads_from_env()
    return _threads


def set_num_threads(n):
    """Use `n` threads for CPU backward passes and the search cell's fast forward (1:
    the serial loop, and the fast cell's jobs in order). Returns the old value. The
    numbers are the same to the bit for every n: where the threads would pay, OpenBLAS
    keeps each product to its calling thread on one thread too (`pays`), so 1 does not
    hand the cores to OpenBLAS there."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    old = num_threads()
    global _threads
    _threads = n
    return old


def min_elements():
    """Elements per operation from which the threads are used (pays)."""
    return _min_elements


def set_min_elements(n):
    """Use the threads only for operations of at least `n` elements on average (0: for
    any size, as the tests of the threads do). Returns the old value."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"set_min_elements: n must be a non-negative integer, got {n!r}")
    global _min_elements
    old, _min_elements = _min_elements, n
    return old


def pays(elements):
    """Whether a region's operations, `elements` elements on average, are large enough
    for the threads (at least min_elements()): it then runs on num_threads() threads,
    each matrix product on the thread that calls it (`products_on_calling_thread`)
    whatever the thread count, so that every count gives the same bits (where
    minidarts can set NumPy's OpenBLAS: backend.set_blas_threads, on Linux)."""
    return elements >= _min_elements


# the regions that keep OpenBLAS to one thread now, and its count before the first
_blas_lock = threading.Lock()
_blas_pins = {"regions": 0, "count": None}


@contextlib.contextmanager
def products_on_calling_thread():
    """OpenBLAS keeps each matrix product on the thread that calls it meanwhile
    (backend.set_blas_threads(1)): its own threads would compete with ours, and a
    product it splits over its threads may round otherwise than one it does not, so a
    region on one thread would not give the bits of the same region on two. The count
    is process-wide: where regions of several of the caller's threads overlap, the
    first in sets it and the last out gives OpenBLAS its count back."""
    with _blas_lock:
        if _blas_pins["regions"] == 0:
            _blas_pins["count"] = backend.set_blas_threads(1)
        _blas_pins["regions"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_pins["regions"] -= 1
            if _blas_pins["regions"] == 0 and _blas_pins["count"]:
                backend.set_blas_threads(_blas_pins["count"])


def _work(tasks):
    while True:
        job = tasks.get()
        if job is None:
            return
        job()
        # the region's closures reach its whole graph: let go of them now, not when
        # the next region comes (a backward's graph would stay alive through the next
        # forward, doubling the peak)
        del job


def _pool(n):
    """The task queue of the n - 1 worker threads that join the calling thread, started
    on first use, and again where a thread died or in a forked child (which inherits
    the queue but not the threads)."""
    global _workers
    pid = os.getpid()
    if _workers is not None and (
        _workers[0] != pid
        or len(_workers[2]) != n - 1
        or not all(t.is_alive() for t in _workers[2])
    ):
        if _workers[0] == pid:
            for _ in _workers[2]:
                _workers[1].put(None)
        _workers = None
    if _workers is None:
        tasks = queue.SimpleQueue()
        threads = [
            threading.Thread(target=_work, args=(tasks,), name=f"minidarts-{k}", daemon=True)
            for k in range(n - 1)
        ]
        for t in threads:
            t.start()
        _workers = (pid, tasks, threads)
    return _workers[1]


def _threads_for(jobs):
    """How many threads a parallel region of `jobs` jobs gets: 1 inside another region
    (its threads are all busy with the outer one: waiting for them would deadlock)."""
    if getattr(_inside, "active", False):
        return 1
    return max(1, min(num_threads(), jobs))


def _run_ready(n, ready, take, work, report):
    """Run a parallel region on n threads (the calling one included): each thread takes
    the first entry of the heap `ready` (under the lock: take(entry) -> job), runs
    work(job) outside it, and hands the result to report(job, result) under the lock,
    which pushes the entries it makes ready. It ends when nothing is ready or running.
    The first exception of any thread (a KeyboardInterrupt of the calling one included)
    stops every thread after its current job and is raised here once all have stopped.
    OpenBLAS keeps each product on the thread that calls it meanwhile
    (backend.set_blas_threads): its own threads would compete with these."""
    lock = threading.Condition()
    state = {"running": 0, "error": None}

    def fail(error):
        with lock:
            state["error"] = state["error"] or error
            lock.notify_all()

    def loop():
        outer = getattr(_inside, "active", False)
        _inside.active = True
        try:
            while True:
                with lock:
                    while not ready and state["running"] and state["error"] is None:
                        lock.wait()
                    if state["error"] is not None or not ready:
                        lock.notify_all()
                        return
                    job = take(heapq.heappop(ready))
                    state["running"] += 1
                try:
                    result = work(job)
                    with lock:
                        if state["error"] is None:
                            report(job, result)
                finally:
                    with lock:
                        state["running"] -= 1
                        lock.notify_all()
        except BaseException as error:
            fail(error)
        finally:
            _inside.active = outer

    done = queue.SimpleQueue()

    def worker_loop():
        try:
            loop()
        finally:
            done.put(None)

    with products_on_calling_thread():
        tasks = _pool(num_threads())
        for _ in range(n - 1):
            tasks.put(worker_loop)
        loop()
        waiting, interrupted = n - 1, None
        while waiting:  # the workers stop after their current job once an error is set
            try:
                done.get()
                waiting -= 1
            except BaseException as error:  # a second Ctrl-C: stop them, keep waiting
                interrupted = interrupted or error
                fail(error)
    if state["error"] is not None:
        raise state["error"]
    if interrupted is not None:
        raise interrupted


class _Sum:
    """A tensor's gradient, summed in the serial loop's order while its parts arrive in
    any order: `keys`, the (consumer position, input slot) of every part, sorted; a part
    waits only while an earlier one is missing, so what is held is about the serial
    loop's running sum, not every part until the last (90 MB more at batch 64)."""

    __slots__ = ("keys", "next", "early", "total", "owned")

    def __init__(self, keys=None):
        self.keys = keys or []  # filled in the serial loop's order: already sorted
        self.next = 0
        self.early = {}  # parts that came before an earlier one
        self.total = None
        self.owned = False  # total is an array of our own, which may be added into

    def add(self, key, part):
        """The part of consumer `key` (None: it gave no gradient)."""
        self.early[key] = part
        while self.next < len(self.keys) and self.keys[self.next] in self.early:
            part = self.early.pop(self.keys[self.next])
            self.next += 1
            if part is None:
                continue
            if self.total is None:
                self.total = part  # the serial loop's _sum_grads(None, part)
            elif self.owned and part.dtype == self.total.dtype:
                self.total += part  # in place: the same sums as total + part
            else:
                self.total = self.total + part
                self.owned = True

    def complete(self):
        return self.next == len(self.keys)


def run_backward(reverse_order, root, grad, deliver, run_function):
    """Backpropagate `grad` from `root` over `reverse_order` (the serial loop's order:
    every tensor before its inputs) on num_threads() threads, the calling one included.

    deliver(t, g): what the serial loop does with a tensor's summed gradient before its
    Function runs (the leaf and retain_grad bookkeeping).
    run_function(fn, g): fn.backward(g), checked; returns one gradient per fn.inputs."""
    n = _threads_for(len(reverse_order))
    position = {id(t): k for k, t in enumerate(reverse_order)}
    # sums[id(x)]: x's gradient, from the (consumer position, input slot) that feed it
    sums = {id(root): _Sum([(-1, 0)])}
    for k, t in enumerate(reverse_order):
        if t._ctx is not None:
            for slot, inp in enumerate(t._ctx.inputs):
                if inp.requires_grad:
                    sums.setdefault(id(inp), _Sum()).keys.append((k, slot))
    sums[id(root)].add((-1, 0), grad)
    tensors = {id(t): t for t in reverse_order}

    def take(entry):  # under the lock: the tensor and its summed gradient
        t = tensors[entry[1]]
        return t, sums.pop(id(t)).total

    def work(job):  # outside the lock: the arithmetic
        t, g = job
        if g is None:  # no gradient reached t: its inputs hear nothing from it
            return None if t._ctx is None else [None] * len(t._ctx.inputs)
        deliver(t, g)
        return None if t._ctx is None else run_function(t._ctx, g)

    def report(job, in_grads):  # under the lock
        t = job[0]
        if in_grads is None:
            return
        k = position[id(t)]
        for slot, (inp, ig) in enumerate(zip(t._ctx.inputs, in_grads)):
            if inp.requires_grad:
                total = sums[id(inp)]
                total.add((k, slot), ig)
                if total.complete():
                    heapq.heappush(ready, (position[id(inp)], id(inp)))

    # a heap by position: the serial loop's order, where the threads keep up with it
    ready = [(0, id(root))]
    try:
        _run_ready(n, ready, take, work, report)
    finally:
        tensors.clear()


def run_graph(jobs, on_threads=True):
    """Run jobs that wait for each other on num_threads() threads (the calling one
    included; on_threads=False: all on the calling one, in the order listed) and
    return their results, in the order of `jobs`. on_threads: whether the region pays
    (`pays`); on one thread its jobs then run in order, their products kept to it.

    jobs: a list of (fn, deps), deps the indices of earlier jobs whose results fn takes
    as arguments, in that order: job k runs as fn(*[result of d for d in deps]) once all
    of them are done. Where several jobs are ready, the one listed first runs first: list
    the jobs of the longest chain early. The first exception is raised once every
    started job has ended."""
    dependents = [[] for _ in jobs]
    for k, (_, deps) in enumerate(jobs):
        for d in deps:
            if not 0 <= d < k:
                raise ValueError(f"run_graph: job {k} depends on job {d}, which is not earlier")
            dependents[d].append(k)
    n = _threads_for(len(jobs)) if on_threads else 1
    results = [None] * len(jobs)
    if n <= 1:
        # a region that pays keeps its products on this thread as on several (pays)
        with products_on_calling_thread() if on_threads else contextlib.nullcontext():
            for k, (fn, deps) in enumerate(jobs):
                results[k] = fn(*[results[d] for d in deps])
        return results
    waiting = [len(deps) for _, deps in jobs]
    ready = [k for k in range(len(jobs)) if not waiting[k]]
    heapq.heapify(ready)

    def work(k):
        fn, deps = jobs[k]
        results[k] = fn(*[results[d] for d in deps])

    def report(k, _):  # under the lock
        for m in dependents[k]:
            waiting[m] -= 1
            if not waiting[m]:
                heapq.heappush(ready, m)

    _run_ready(n, ready, lambda k: k, work, report)
    return results
