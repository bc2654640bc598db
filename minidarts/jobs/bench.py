"""Kernel benchmark: `python -m minidarts.bench [--repeats N] [--device cpu|gpu] [--batch B]`.

Times every convolution of the DARTS MNIST search network at its real shapes (batch 64,
float32), plus the pooling and batch-norm kernels the cells use, and prints for each
the median forward time, the median forward+backward time and the achieved GFLOP/s,
beside the GFLOP/s of one 1024x1024 float32 matmul measured in the same run (what the
BLAS of this machine can do at best).

Operation counts (the work a kernel must do, not what an implementation happens to do):

    convolution   forward  2 * N * O * Ho * Wo * (C / groups) * kh * kw
                  backward 2x the forward (dx and dw are each a product of that size),
                           1x when the input needs no gradient (the stem)
    pooling       forward  N * C * Ho * Wo * kh * kw (one max or add per window element)
    batch norm    forward  8 per element (mean, variance, normalise, nothing affine)
    pool / BN backward counted as equal to the forward

The forward runs under no_grad; forward+backward records the graph and calls backward()
with a fixed upstream gradient. The inputs are leaves, so that time also includes copying
their gradients into .grad, as for parameters.

The variants are timed interleaved (one call of each per round, `--repeats` rounds), so
a burst of load from another process on a shared machine hits all of them alike.

Sections: section functions registered in SECTIONS (name -> function(args) returning a
list of Row), run in that order where --sections names them. Also: `bench compare` (against
PyTorch, bench_cases.py), `bench pool` (runs of --scaling --json, bench_pool.py).
"""

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

from ..engine import backend
from ..engine.autograd import Tensor, no_grad
from .bench_cases import CASES, PATHS
from .errors import one_error_line


@dataclass
class Row:
    """One line of the table: a name, the shape it ran at, median seconds (None where
    that part was not timed) and the operation counts of forward and forward+backward."""

    name: str
    shape: str
    fwd_s: float
    fwdbwd_s: float
    fwd_flops: float
    fwdbwd_flops: float


def _sync(xp):
    """Wait for the GPU: CuPy calls return before the kernel has run."""
    if xp is not backend.numpy:
        xp.cuda.get_current_stream().synchronize()


def _timed(fn, xp):
    start = time.perf_counter()
    fn()
    _sync(xp)
    return time.perf_counter() - start


def matmul_gflops(device, repeats, n=1024):
    """Median GFLOP/s of an n x n float32 matmul (2 n^3 operations)."""
    xp = backend.array_module(device)
    rng = backend.default_rng(0)
    a, b = (backend.asarray(rng.standard_normal((n, n)), backend.float32, device) for _ in "ab")
    xp.matmul(a, b)  # warm-up: thread pools, GPU kernels, caches
    _sync(xp)
    times = [_timed(lambda: xp.matmul(a, b), xp) for _ in range(max(repeats, 5))]
    return 2 * n**3 / statistics.median(times) / 1e9


class Case:
    """One kernel call to time: `run(*tensors)` builds the output, `tensors` are its
    inputs (those with requires_grad get a gradient in the backward timing)."""

    def __init__(self, name, shape, run, tensors, fwd_flops, bwd_factor):
        self.name, self.shape, self.run, self.tensors = name, shape, run, tensors
        self.fwd_flops, self.bwd_factor = fwd_flops, bwd_factor
        self.fwd, self.fwdbwd = [], []
        self.gy = None

    def forward(self):
        return self.run(*self.tensors)

    def forward_backward(self):
        y = self.forward()
        if self.gy is None:  # a fixed upstream gradient, made once outside the timing
            rng = backend.default_rng(1)
            self.gy = backend.asarray(rng.standard_normal(y.shape), y.dtype, y.device)
        for t in self.tensors:
            t.grad = None
        y.backward(self.gy)

    def row(self):
        fwdbwd = self.fwd_flops * (1 + self.bwd_factor)
        return Row(
            self.name,
            self.shape,
            statistics.median(self.fwd),
            statistics.median(self.fwdbwd),
            self.fwd_flops,
            fwdbwd,
        )


def _tensor(shape, device, requires_grad, seed):
    rng = backend.default_rng(seed)
    data = backend.asarray(rng.standard_normal(shape), backend.float32, device)
    return Tensor(data, requires_grad=requires_grad)


def _conv_cases(batch, device):
    from ..nn.functional import conv2d

    # name, (C, H), (O, k), stride, padding, dilation, groups, input needs grad
    specs = [
        ("stem 3x3 conv", (1, 28), (24, 3), 1, 1, 1, 1, False),
        ("preprocess 1x1", (24, 28), (16, 1), 1, 0, 1, 1, True),
        ("pointwise 1x1", (16, 14), (16, 1), 1, 0, 1, 1, True),
        ("fact. reduce 1x1 s2", (16, 28), (8, 1), 2, 0, 1, 1, True),
    ]
    for size, stride in ((28, 2), (14, 1)):
        specs += [
            (f"dw 3x3 s{stride}", (16, size), (16, 3), stride, 1, 1, 16, True),
            (f"dw 5x5 s{stride}", (16, size), (16, 5), stride, 2, 1, 16, True),
            (f"dil 3x3 d2 s{stride}", (16, size), (16, 3), stride, 2, 2, 16, True),
            (f"dil 5x5 d2 s{stride}", (16, size), (16, 5), stride, 4, 2, 16, True),
        ]
    cases = []
    for i, (name, (c, h), (o, k), s, p, d, g, x_grad) in enumerate(specs):
        x = _tensor((batch, c, h, h), device, x_grad, seed=2 * i)
        w = _tensor((o, c // g, k, k), device, True, seed=2 * i + 1)
        ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
        flops = 2.0 * batch * o * ho * ho * (c // g) * k * k

        def run(x, w, s=s, p=p, d=d, g=g):
            return conv2d(x, w, stride=s, padding=p, dilation=d, groups=g)

        shape = f"({batch},{c},{h},{h})->({batch},{o},{ho},{ho})"
        cases.append(Case(name, shape, run, [x, w], flops, 2 if x_grad else 1))
    return cases


def _pool_bn_cases(batch, device):
    from ..nn.functional import avg_pool2d, batch_norm, max_pool2d

    cases = []
    for name, fn in (("max_pool2d", max_pool2d), ("avg_pool2d", avg_pool2d)):
        for size, stride in ((28, 2), (14, 1)):
            x = _tensor((batch, 16, size, size), device, True, seed=100 + size)
            ho = (size + 2 - 3) // stride + 1
            extra = {} if name == "max_pool2d" else {"count_include_pad": False}

            def run(x, fn=fn, stride=stride, extra=extra):
                return fn(x, 3, stride, 1, **extra)

            shape = f"({batch},16,{size},{size})->({batch},16,{ho},{ho})"
            flops = 1.0 * batch * 16 * ho * ho * 9
            cases.append(Case(f"{name} 3x3 s{stride}", shape, run, [x], flops, 1))
    for size in (28, 14):
        x = _tensor((batch, 16, size, size), device, True, seed=200 + size)

        def run(x):
            return batch_norm(x, None, None, training=True)

        cases.append(
            Case("batch_norm train", f"({batch},16,{size},{size})", run, [x], 8.0 * x.numel(), 1)
        )
    return cases


def bench_kernels(args):
    """The conv, pooling and batch-norm kernels at the DARTS MNIST shapes."""
    cases = _conv_cases(args.batch, args.device) + _pool_bn_cases(args.batch, args.device)
    xp = backend.array_module(args.device)
    for case in cases:  # warm-up: first calls allocate and load code
        case.forward_backward()
    for _ in range(args.repeats):
        for case in cases:
            with no_grad():
                case.fwd.append(_timed(case.forward, xp))
            case.fwdbwd.append(_timed(case.forward_backward, xp))
    return [case.row() for case in cases]


def _search_parts(batch, device, order=1, fast=True):
    """The paper's search network (C=8, one reduction cell, 4 nodes) with its two
    optimisers, an Architect of the given order and a fixed train and val batch of
    random images on `device`. fast=False: the network keeps to the readable cell."""
    from ..darts.architect import Architect
    from ..darts.network import Network
    from ..nn import optim

    previous = backend.default_device()
    backend.set_default_device(device)
    try:
        net = Network(C=8, layers=1, steps=4, seed=0, fast=fast)
    finally:
        backend.set_default_device(previous)
    w_opt = optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    rng = backend.default_rng(7)
    batches = [
        (
            _tensor((batch, 1, 28, 28), device, False, seed=300 + i),
            backend.asarray(rng.integers(0, 10, batch), backend.int64, device),
        )
        for i in range(2)
    ]
    return net, w_opt, Architect(net, a_opt, order=order, w_optimizer=w_opt), batches


def _step_functions(net, w_opt, architect, batches):
    """name -> callable for the network's forward, forward+backward and search steps
    (the alpha and search steps of the architect's order)."""
    from ..darts.architect import frozen
    from ..nn import optim
    from ..nn.functional import cross_entropy

    (x, y), (x_val, y_val) = batches

    def forward():
        with no_grad():
            net(x)

    def forward_backward():
        net.zero_grad()
        cross_entropy(net(x), y).backward()

    def weight_step():
        w_opt.zero_grad()
        with frozen(net.arch_parameters()):
            cross_entropy(net(x), y).backward()
        optim.clip_grad_norm_(net.parameters(), 5.0)
        w_opt.step()

    def alpha_step():
        architect.step(x_val, y_val, 0.0, x, y)  # order 1 does not use (x, y)

    def search_step():
        alpha_step()
        weight_step()

    order = _ORDER_NAMES[architect.order]
    return {
        "network forward": forward,
        "network fwd+bwd": forward_backward,
        f"alpha step ({order} order)": alpha_step,
        "weight step": weight_step,
        f"search step ({order} order)": search_step,
    }


_ORDER_NAMES = {1: "1st", 2: "2nd"}


def peak_step_memory(device, batch, order=1):
    """Peak bytes of arrays alive during one search step of the given order, beyond
    those alive before it (tracemalloc sees NumPy's allocations; CuPy's pool on the GPU)."""
    net, w_opt, architect, batches = _search_parts(batch, device, order)
    step = _step_functions(net, w_opt, architect, batches)[
        f"search step ({_ORDER_NAMES[order]} order)"
    ]
    step()  # optimiser state exists from here on
    if device == "gpu":
        xp = backend.array_module(device)
        pool = xp.get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.used_bytes()
        step()
        return pool.total_bytes() - before
    import tracemalloc

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def bench_network(args):
    """The paper's search network (C=8, one reduction cell, batch 64): forward,
    forward+backward, and the steps of first- and second-order DARTS (eq. 3)."""
    net, w_opt, architect, batches = _search_parts(args.batch, args.device)
    steps = _step_functions(net, w_opt, architect, batches)
    # second order on a network of its own (same seed, same batches), so that its
    # steps do not change the first-order network between rounds
    steps.update(
        (name, fn)
        for name, fn in _step_functions(*_search_parts(args.batch, args.device, 2)).items()
        if "2nd" in name
    )
    xp = backend.array_module(args.device)
    for fn in steps.values():  # warm-up
        fn()
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            times[name].append(_timed(fn, xp))
    shape = f"({args.batch},1,28,28)"
    rows = [Row(name, shape, statistics.median(t), None, 0.0, 0.0) for name, t in times.items()]
    for order, name in _ORDER_NAMES.items():
        peak = peak_step_memory(args.device, args.batch, order)
        args.notes.append(
            f"peak memory of one {name}-order search step: {peak / 2**20:.0f} MiB of arrays"
        )
    return rows


# name -> function(args) -> list of Row, in the order they run and print.
SECTIONS = {"kernels": bench_kernels, "network": bench_network}


def print_table(title, rows, matmul):
    """Kernel rows get forward, forward+backward and GFLOP/s columns; rows with only
    one time (whole steps) get a single 'ms' column."""
    print(f"\n{title}")
    if all(r.fwdbwd_s is None for r in rows):
        header = f"{'step':<26} {'input':<16} {'median ms':>10}"
        print(header)
        print("-" * len(header))
        for r in rows:
            print(f"{r.name:<26} {r.shape:<16} {r.fwd_s * 1e3:>10.1f}")
        print("-" * len(header))
        return
    header = (
        f"{'kernel':<22} {'shape':<32} {'fwd ms':>8} {'fwd+bwd ms':>11} "
        f"{'fwd GFLOP/s':>12} {'f+b GFLOP/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = [f"{r.name:<22} {r.shape:<32}"]
        for secs, width in ((r.fwd_s, 8), (r.fwdbwd_s, 11)):
            cells.append(f"{secs * 1e3:>{width}.3f}" if secs is not None else " " * width)
        for secs, flops in ((r.fwd_s, r.fwd_flops), (r.fwdbwd_s, r.fwdbwd_flops)):
            ok = secs is not None and flops
            cells.append(f"{flops / secs / 1e9:>12.1f}" if ok else " " * 12)
        print(" ".join(cells))
    total = [r for r in rows if r.fwdbwd_s is not None]
    print("-" * len(header))
    print(
        f"(medians; float32 matmul 1024x1024 on this machine: {matmul:.1f} GFLOP/s; "
        f"sum of fwd+bwd column: {sum(r.fwdbwd_s for r in total) * 1e3:.1f} ms)"
    )


@one_error_line  # no CuPy for --device gpu, a failing reference: one line, as search
def main(argv=None, prog="python -m minidarts bench"):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:  # side by side with PyTorch (bench_cases.py)
        from .bench_cases import compare_main

        return compare_main(argv[1:], prog=f"{prog} compare")
    if argv[:1] == ["pool"]:  # several runs of --scaling --json together (bench_pool.py)
        from .bench_pool import pool_main

        return pool_main(argv[1:], prog=f"{prog} pool")
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    mode = parser.add_mutually_exclusive_group()  # one of these, or the kernel tables
    mode.add_argument(
        "--case",
        choices=CASES,
        help="time one case of the search network and print one JSON line, as "
        "torch_reference.py does (see bench_cases.py; `bench compare` runs both)",
    )
    parser.add_argument(
        "--iters", type=int, default=7, help="timed calls (--case, --scaling); steps (--profile)"
    )
    mode.add_argument(
        "--profile",
        action="store_true",
        help="busy time per kind of operation in forward + backward, summed over the "
        "threads (bench_profile.py; --batch, --path, --iters steps)",
    )
    mode.add_argument(
        "--scaling",
        nargs="+",
        type=int,
        metavar="BATCH",
        help="the time per image at each of these batches, forward + backward and the "
        "first-order step, in one process, --repeats interleaved rounds of --iters calls "
        "(bench_scaling.py)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="with --scaling: also write the rounds to FILE (`bench pool`)",
    )
    parser.add_argument(
        "--path",
        default="fast",
        choices=PATHS,
        help="with --case: fast (the default: the fast cell and the backward on threads), "
        "readable (Cell.forward, the backward on threads) or serial (the readable path on "
        "one thread, as before the threads)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median taken)")
    parser.add_argument("--device", default="cpu", choices=backend.DEVICES)
    parser.add_argument("--batch", type=int, default=64, help="batch size (the paper: 64)")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=list(SECTIONS),
        help="what to time (default: all)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 2 or args.iters < 1:
        parser.error("--repeats and --iters must be >= 1 and --batch >= 2")
    if args.scaling or args.json:
        from .bench_scaling import check_args

        check_args(parser, args)
    args.device = backend.check_device(args.device)  # before any work (one_error_line)
    if args.case:
        from .bench_cases import case_main

        return case_main(args)
    if args.scaling:
        from .bench_scaling import scaling_main

        return scaling_main(args)
    if args.profile:
        from .bench_profile import profile_main

        return profile_main(args)
    matmul = matmul_gflops(args.device, args.repeats)
    print(
        f"minidarts.bench: device {args.device}, batch {args.batch}, float32, "
        f"{args.repeats} rounds, interleaved"
    )
    for name in SECTIONS:
        if name in args.sections:
            args.notes = []
            print_table(f"[{name}] {SECTIONS[name].__doc__}", SECTIONS[name](args), matmul)
            for note in args.notes:
                print(note)


if __name__ == "__main__":
    sys.exit(main())
