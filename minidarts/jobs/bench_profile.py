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
    if kernel is not None:  # a Conv2d: which of its kernels (nn/conv.py, nn/depthwise.py)
        name += "/" + type(kernel).__name__.strip("_").lower()
    return name


# The kernels a fused Function (darts/fast_ops.py) calls without a Function of their
# own: timed too, so the fast path's profile still splits its time by kernel.
def _kernels():
    from ..nn import batchnorm, conv, depthwise

    return [
        (depthwise._Depthwise, "Conv2d/depthwise"),
        (conv._Pointwise, "Conv2d/pointwise"),
        (conv._Im2col, "Conv2d/im2col"),
        (batchnorm.BatchNormTrain, "BatchNormTrain"),
        (batchnorm.BatchNormEval, "BatchNormEval"),
    ]


@contextmanager
def _timing(busy):
    """Add every Function's forward (apply) and backward seconds to busy[(phase, kind)]
    while the context lasts (a benchmark's instrument: it wraps the engine's two entry
    points, and the kernels' forward and backward methods, and puts them back).

    Timed calls nest (a Function's apply calls its kernel's forward): each adds only
    its own time, what its nested calls took being theirs, so the parts sum to the
    busy time once."""
    lock = threading.Lock()
    local = threading.local()  # .children: seconds of nested calls, one per open call
    apply, run_backward = autograd.Function.apply.__func__, autograd._run_backward

    def timed(phase, call, kind_of):
        stack = local.__dict__.setdefault("children", [])
        stack.append(0.0)
        start = time.perf_counter()
        try:
            result = call()
        finally:
            seconds = time.perf_counter() - start
            own = seconds - stack.pop()
            if stack:
                stack[-1] += seconds
        with lock:
            busy[(phase, kind_of(result))] += own
        return result

    def timed_apply(cls, *inputs, **options):
        return timed(
            "forward",
            lambda: apply(cls, *inputs, **options),
            lambda out: _kind(out._ctx) if out._ctx is not None else cls.__name__,
        )

    def timed_backward(fn, g):
        return timed("backward", lambda: run_backward(fn, g), lambda _: _kind(fn))

    def wrap(method, phase, kind):
        def timed_method(self, *args, **kwargs):
            return timed(phase, lambda: method(self, *args, **kwargs), lambda _: kind)

        return timed_method

    kernels = _kernels()
    originals = [(k, k.forward, k.backward) for k, _ in kernels]
    autograd.Function.apply = classmethod(timed_apply)
    autograd._run_backward = timed_backward
    for k, kind in kernels:
        k.forward, k.backward = wrap(k.forward, "forward", kind), wrap(k.backward, "backward", kind)
    try:
        yield
    finally:
        autograd.Function.apply = classmethod(apply)
        autograd._run_backward = run_backward
        for k, forward, backward in originals:
            k.forward, k.backward = forward, backward


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
