"""Memory: refuse a batch the machine cannot hold, before allocating it.

Linux may kill a process that asks for more memory than it can have, without a
word. So a run first estimates the peak memory of one training step and compares
it with what the machine can give (MemAvailable in /proc/meminfo, and the cgroup
limit of a container, whichever is smaller).

The estimate is measured, not modelled: one forward and backward pass at batch 1
and at batch 4 under tracemalloc (NumPy reports its allocations to it) give the
memory per image and the fixed part, and the peak at batch B is

    peak(B) = fixed + B * per_image,   per_image = (peak(4) - peak(1)) / 3.

A peak moves a little from pass to pass: on threads it depends on which operations
happen to overlap, and a garbage collection may or may not have run. Batches 1 and 2
gave a per_image that moved by up to 18% between estimates; the slope over 1 to 4,
each pass after a collection, by up to 7%, and by 15% once with other tests
running beside it (tests/test_faults.py allows 10% on one thread).

The probe leaves the model as it found it (weights, batch-norm statistics and
gradients restored), so a run's numbers do not change. CPU only: on a GPU, CuPy's
own out-of-memory error names the allocation.
"""

import gc
import tracemalloc

from ..engine import backend, parallel


class MemoryTooSmall(RuntimeError):
    """The step asked for would not fit in the memory the machine can give."""


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def available_memory():
    """Bytes this process can still allocate: MemAvailable, capped by the cgroup
    limit minus its usage (cgroup v2 or v1). None when neither can be read."""
    limits = []
    meminfo = _read("/proc/meminfo")
    if meminfo:
        for line in meminfo.splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read(limit_file), _read(usage_file)
        if limit and limit.isdigit() and int(limit) < 1 << 60:
            limits.append(int(limit) - (int(usage) if usage and usage.isdigit() else 0))
    return min(limits) if limits else None


_PROBE_BATCHES = (1, 4)  # the two batches whose peaks give the slope


def _step_peak(model, x, forward):
    gc.collect()  # the last step's cyclic garbage is not this one's memory
    tracemalloc.start()
    try:
        forward(x).sum().backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def estimate_step_peak(model, image_shape, batch_size, forward=None):
    """Peak bytes of one forward + backward pass at `batch_size` (module docstring).
    forward(x) -> the output Tensor (default: model(x))."""
    from ..engine.autograd import Tensor

    forward = forward or model
    saved = {k: backend.to_numpy(v).copy() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    if hasattr(model, "arch_parameters"):
        params += [p for p in model.arch_parameters() if all(p is not q for q in params)]
    grads = [p.grad for p in params]
    was_training = model.training
    model.train()
    # at batch 1 and 4 the threads would not pay and stay off (parallel.min_elements);
    # probe the way the real batch runs, where two operations' temporaries live at once
    smallest = parallel.set_min_elements(0)
    try:
        peaks = []
        for b in _PROBE_BATCHES:
            x = Tensor(backend.numpy.zeros((b, *image_shape), dtype=backend.numpy.float32))
            peaks.append(_step_peak(model, x, forward))
            for p in params:
                p.grad = None
    finally:
        parallel.set_min_elements(smallest)
        model.load_state_dict(saved)
        for p, g in zip(params, grads):
            p.grad = g
        model.train(was_training)
    (b1, b2), (p1, p2) = _PROBE_BATCHES, peaks
    per_image = max(0, (p2 - p1) / (b2 - b1))
    return p1 + (batch_size - b1) * per_image, per_image


def check_memory(model, image_shape, batch_size, device, forward=None, available=None):
    """Raise MemoryTooSmall, naming the batch size that would fit, when the step's
    estimated peak exceeds the memory the machine can give. Returns the estimate
    (None on a GPU or where the free memory cannot be read)."""
    if device != "cpu":
        return None
    available = available_memory() if available is None else available
    if available is None:
        return None
    peak, per_image = estimate_step_peak(model, image_shape, batch_size, forward)
    if peak > available:
        fits = int((available - (peak - batch_size * per_image)) // max(per_image, 1))
        raise MemoryTooSmall(
            f"a training step at batch_size {batch_size} needs about {peak / 2**30:.2f} GiB, "
            f"the machine can give {available / 2**30:.2f} GiB (MemAvailable and the "
            f"cgroup limit): lower --batch-size to {max(fits, 0)} or less, or free memory"
        )
    return peak


__all__ = ["MemoryTooSmall", "available_memory", "check_memory", "estimate_step_peak"]
