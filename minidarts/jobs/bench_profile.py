"""Where a step's time goes: `python -m minidarts bench --profile [--batch 64] [--path fast]`.

Times every Function's forward and backward during forward + backward passes of the
paper's search network and prints the busy time per kind of operation, summed over
the threads that ran them (engine/parallel.py), with its share. A profiler such as
cProfile sees the calling thread only; this sees them all. Depthwise, 1x1 and im2col
convolutions are told apart by the kernel the Conv2d chose.

Profile before and after a change, and keep the change only if the figures move.
"""

import statistics
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

from ..engine import autograd, parallel


def _kind(fn):
    name = type(fn).__name__
    kernel = getattr(fn, "kernel", None)
    if kernel is not None:  # a Conv2d: which of its kernels (nn/conv.py)
        name += "/" + type(kernel).__name__.strip("_").lower()
    return name


@contextmanager
def _timing(busy):
    """Add every Function's forward (apply) and backward seconds to busy[(phase, kind)]
    while the context lasts (a benchmark's instrument: it wraps the engine's two entry
    points and puts them back)."""
    lock = threading.Lock()
    apply, run_backward = autograd.Function.apply.__func__, autograd._run_backward

    def timed_apply(cls, *inputs, **options):
        start = time.perf_counter()
        out = apply(cls, *inputs, **options)
        seconds = time.perf_counter() - start
        kind = _kind(out._ctx) if out._ctx is not None else cls.__name__
        with lock:
            busy[("forward", kind)] += seconds
        return out

    def timed_backward(fn, g):
        start = time.perf_counter()
        grads = run_backward(fn, g)
        seconds = time.perf_counter() - start
        with lock:
            busy[("backward", _kind(fn))] += seconds
        return grads

    autograd.Function.apply = classmethod(timed_apply)
    autograd._run_backward = timed_backward
    try:
        yield
    finally:
        autograd.Function.apply = classmethod(apply)
        autograd._run_backward = run_backward


def profile(batch=64, path="fast", steps=4, warmup=2):
    """(median wall seconds of a forward + backward, {(phase, kind): busy seconds per
    step}) on the paper's search network, on the CPU, along `path` (bench_cases.PATHS)."""
    from ..nn import functional as F
    from .bench import _search_parts

    threads = parallel.set_num_threads(1) if path == "serial" else None
    busy, walls = defaultdict(float), []
    try:
        net, _, _, batches = _search_parts(batch, "cpu", fast=path == "fast")
        x, y = batches[0]
        for _ in range(warmup):
            F.cross_entropy(net(x), y).backward()
        with _timing(busy):
            for _ in range(steps):
                start = time.perf_counter()
                F.cross_entropy(net(x), y).backward()
                walls.append(time.perf_counter() - start)
    finally:
        if threads is not None:
            parallel.set_num_threads(threads)
    return statistics.median(walls), {k: v / steps for k, v in busy.items()}


def profile_main(args):
    """The --profile form: the table of busy time per kind of operation."""
    wall, busy = profile(args.batch, args.path, steps=args.iters)
    total = sum(busy.values())
    print(
        f"bench --profile: forward + backward, batch {args.batch}, path {args.path}, "
        f"{parallel.num_threads()} thread(s): {wall * 1e3:.0f} ms of wall time, "
        f"{total * 1e3:.0f} ms busy (summed over the threads)"
    )
    print(f"{'phase':9s} {'operation':24s} {'busy ms':>8s} {'share':>6s}")
    for (phase, kind), seconds in sorted(busy.items(), key=lambda kv: -kv[1]):
        if seconds / total < 0.002:
            continue
        print(f"{phase:9s} {kind:24s} {seconds * 1e3:8.1f} {100 * seconds / total:5.1f}%")
