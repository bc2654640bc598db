"""Side-by-side timing against PyTorch, one case at a time, in separate processes.

`python -m minidarts bench --case fwd|fwdbwd|step1|step2 [--batch 64] [--iters 7]`
times one case of the paper's search network (1x28x28, C = 8, one reduction cell,
4 nodes, 8 operations, 48,082 weights) and prints one JSON line,

    {"impl": "minidarts", "device": ..., "case": ..., "batch": ..., "s": median seconds,
     "rss_mb": peak resident memory of the process},

the same line `torch_reference.py` (outside this project: PyTorch is never a
dependency) prints for the same network in PyTorch. The cases:

    fwd     forward under no_grad
    fwdbwd  forward and cross-entropy backward, to the weights and alpha
    step1   first-order DARTS (eq. 3 with xi = 0): Adam on alpha from a validation batch
            (alpha-only backward), then SGD momentum 0.9, weight decay 3e-4, clip 5 on
            the weights
    step2   second-order DARTS: the virtual step and the finite-difference
            Hessian-vector product, then the same weight step

`python -m minidarts bench compare --torch-python VENV/bin/python --reference
PATH/torch_reference.py` runs both implementations as separate processes,
interleaved (A B A B ...), each pinned to the same number of threads, and prints the
median of each and their ratio. Absolute times do not carry from one machine to
another; only ratios measured this way are quoted.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from ..engine import backend

CASES = ("fwd", "fwdbwd", "step1", "step2")
# how minidarts runs the network: the default (darts/fast_cell.py, the edges that read a
# state batched, and the backward on threads, engine/parallel.py), the readable
# Cell.forward with the threaded backward, or the readable path on one thread (as
# minidarts ran before the threads, but for OpenBLAS, kept to that thread in a backward
# that pays for the threads: parallel.pays). In this network the backward stays on the
# calling thread below batch 17 (the architecture step's below 8), and the fast cell
# runs its jobs in order below 16 (parallel.min_elements).
PATHS = ("fast", "readable", "serial")
_STEP_NAMES = {
    "fwd": "network forward",
    "fwdbwd": "network fwd+bwd",
    "step1": "search step (1st order)",
    "step2": "search step (2nd order)",
}


def time_case(case, device="cpu", batch=64, iters=7, warmup=3, path="fast"):
    """Median seconds of `iters` calls of one case (after `warmup` untimed calls), and
    the process's peak resident memory in MiB. path: one of PATHS."""
    from ..engine import parallel
    from .bench import _search_parts, _step_functions, _sync, _timed

    if case not in CASES:
        raise ValueError(f"bench: unknown case {case!r}: expected one of {', '.join(CASES)}")
    if path not in PATHS:
        raise ValueError(f"bench: unknown path {path!r}: expected one of {', '.join(PATHS)}")
    threads = parallel.set_num_threads(1) if path == "serial" else None
    try:
        order = 2 if case == "step2" else 1
        parts = _search_parts(batch, device, order, fast=path == "fast")
        fn = _step_functions(*parts)[_STEP_NAMES[case]]
        xp = backend.array_module(device)
        for _ in range(warmup):
            fn()
        _sync(xp)
        times = [_timed(fn, xp) for _ in range(iters)]
    finally:
        if threads is not None:
            parallel.set_num_threads(threads)
    # ru_maxrss is in KiB on Linux, as torch_reference.py reads it
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return statistics.median(times), rss


def case_main(args):
    """The --case form: one JSON line, as torch_reference.py prints."""
    device = backend.check_device(args.device)
    seconds, rss = time_case(args.case, device, args.batch, args.iters, path=args.path)
    dev = "cuda" if device == "gpu" else device
    line = {"impl": "minidarts", "device": dev, "case": args.case, "batch": args.batch}
    line["path"] = args.path
    print(json.dumps({**line, "s": seconds, "rss_mb": round(rss)}))


def _pinned_env(threads):
    """The environment of a timed process: every BLAS / OpenMP pool at `threads`."""
    from .pool import THREAD_VARIABLES

    return dict(os.environ, **{var: str(threads) for var in THREAD_VARIABLES})


# the keys of the one JSON line both implementations print (case_main, torch_reference.py)
LINE_KEYS = ("impl", "device", "case", "batch", "s", "rss_mb")
_TORCH_HINT = "point --torch-python at a python that has torch (e.g. a venv's bin/python)"


def _run_json(cmd, env, who, hint="", timeout=1800):
    """Run one timed process (`who` names it) and return the JSON line it printed
    last. Its faults come out as one exception of one line, for the `error:` line of
    bench's main: a process that fails is named with the last line of its stderr (the
    exception; the traceback above it is the child's, of no use here) and `hint`; a
    last line that is not a JSON object with LINE_KEYS (s and rss_mb numbers) is
    refused here, not left to fail as a TypeError where the times are read."""
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"bench compare: {who} ran past {timeout} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        last = lines[-1].removeprefix("error: ") if lines else "nothing on stderr"
        hint = f"; {hint}" if hint else ""
        raise RuntimeError(
            f"bench compare: {who} failed (exit status {done.returncode}): {last}{hint}"
        )
    lines = done.stdout.strip().splitlines()
    try:
        line = json.loads(lines[-1]) if lines else None
    except ValueError:
        line = None
    numbers = isinstance(line, dict) and all(
        isinstance(line.get(k), int | float) and not isinstance(line.get(k), bool)
        for k in ("s", "rss_mb")
    )
    if not numbers or not set(LINE_KEYS) <= set(line):
        printed = f"{lines[-1][:80]!r} last" if lines else "nothing"
        raise ValueError(
            f"bench compare: {who} printed {printed}, not a JSON object with the keys "
            f"{', '.join(LINE_KEYS)} (s and rss_mb numbers), the line torch_reference.py "
            "prints"
        )
    return line


def compare(
    torch_python,
    reference,
    cases=CASES,
    batches=(64,),
    rounds=5,
    iters=7,
    threads=2,
    device="cpu",
    log=print,
    paths=("fast",),
):
    """Both implementations, each case and batch, `rounds` times interleaved: every
    round runs every batch and case once (minidarts on each of `paths`, then torch),
    so a slow spell of a shared machine falls on all of them alike, not on one batch
    (the time per image across batches is compared too). A list of dicts, one per
    case, batch and path, with both medians of medians, the ratio minidarts / torch
    and both peak memories."""
    env = _pinned_env(threads)
    here = [sys.executable, "-m", "minidarts", "bench"]
    dev = "gpu" if device in ("gpu", "cuda") else "cpu"
    points = [(batch, case) for batch in batches for case in cases]
    ours = {(b, c, p): [] for b, c in points for p in paths}
    theirs = {point: [] for point in points}
    for r in range(rounds):
        for batch, case in points:
            common = ["--case", case, "--batch", str(batch), "--iters", str(iters)]
            for p in paths:
                cmd = here + common + ["--device", dev, "--path", p]
                ours[batch, case, p].append(_run_json(cmd, env, f"minidarts {' '.join(cmd[4:])}"))
            theirs_cmd = [torch_python, reference, *common, "--threads", str(threads)]
            theirs_cmd += ["--device", "cuda" if dev == "gpu" else "cpu"]
            who = f"the reference {reference} (run by {torch_python})"
            theirs[batch, case].append(_run_json(theirs_cmd, env, who, _TORCH_HINT))
            mine = ", ".join(f"{p} {ours[batch, case, p][-1]['s'] * 1e3:.0f} ms" for p in paths)
            log(
                f"  {case} batch {batch} round {r + 1}/{rounds}: minidarts {mine}, "
                f"torch {theirs[batch, case][-1]['s'] * 1e3:.0f} ms"
            )
    results = []
    for batch, case in points:
        b = statistics.median(t["s"] for t in theirs[batch, case])
        for p in paths:
            runs = ours[batch, case, p]
            a = statistics.median(o["s"] for o in runs)
            results.append(
                {
                    "case": case,
                    "batch": batch,
                    "path": p,
                    "minidarts_s": a,
                    "torch_s": b,
                    "ratio": a / b,
                    "minidarts_rss_mb": max(o["rss_mb"] for o in runs),
                    "torch_rss_mb": max(t["rss_mb"] for t in theirs[batch, case]),
                    # each round's time, for the batch scaling round by round
                    "minidarts_rounds_s": [o["s"] for o in runs],
                    "torch_rounds_s": [t["s"] for t in theirs[batch, case]],
                }
            )
    return results


def format_table(results):
    """The comparison as a Markdown table."""
    lines = [
        "| case | batch | path | minidarts ms | PyTorch ms | ratio | minidarts MB | PyTorch MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['batch']} | {r.get('path', 'fast')} | "
            f"{r['minidarts_s'] * 1e3:.0f} | "
            f"{r['torch_s'] * 1e3:.0f} | {r['ratio']:.2f} | {r['minidarts_rss_mb']} | "
            f"{r['torch_rss_mb']} |"
        )
    return "\n".join(lines)


def spread(per_image):
    """The dearest time per image over the cheapest: an iterable of times per image ->
    ratio (1.0: a cost linear in the batch)."""
    per_image = list(per_image)
    return max(per_image) / min(per_image)


def scaling_table(results):
    """The cost against the batch size, as a Markdown table ("" where no case was
    timed at two batches or more): the time per image at each batch (from the
    medians) for minidarts on each path, then for PyTorch, then max/min, the dearest
    batch's time per image over the cheapest's (1.00: a cost linear in the batch), and
    "per round": the lowest and highest max/min of a single round, whose batches all
    ran in that round (how far a shared machine's spells move it)."""
    batches = sorted({r["batch"] for r in results})
    rows = {}  # (case, implementation) -> {batch: (median s, [s of each round])}
    for r in results:
        who = f"minidarts {r.get('path', 'fast')}"
        rows.setdefault((r["case"], who), {})[r["batch"]] = (
            r["minidarts_s"],
            r["minidarts_rounds_s"],
        )
    for r in results:  # PyTorch once per case, after minidarts's paths
        rows.setdefault((r["case"], "PyTorch"), {})[r["batch"]] = (
            r["torch_s"],
            r["torch_rounds_s"],
        )
    cases = list(dict.fromkeys(r["case"] for r in results))
    lines = []
    # by case, in the order timed; within a case minidarts's paths, then PyTorch
    for (case, who), by_batch in sorted(rows.items(), key=lambda kv: cases.index(kv[0][0])):
        if len(by_batch) < 2:
            continue
        rounds = min(len(runs) for _, runs in by_batch.values())
        per_round = [
            spread(runs[k] / b for b, (_, runs) in by_batch.items()) for k in range(rounds)
        ]
        cells = [f"{by_batch[b][0] / b * 1e3:.2f} ms" if b in by_batch else "" for b in batches]
        lines.append(
            f"| {case} | {who} | "
            + " | ".join(cells)
            + f" | {spread(t / b for b, (t, _) in by_batch.items()):.2f} | "
            + (f"{min(per_round):.2f}-{max(per_round):.2f} |" if per_round else " |")
        )
    if not lines:
        return ""
    header = [
        "| case | implementation | "
        + " | ".join(f"batch {b}" for b in batches)
        + " | max/min | per round |",
        "|---|---|" + "---:|" * len(batches) + "---:|---:|",
    ]
    return "\n".join(header + lines)


def _find_program(name):
    """The executable `name` names, as a shell finds it: a bare name (python3) on PATH, a
    path as it is (a bare name of a file here too, as before PATH was searched); None
    when there is none. subprocess would find a bare name on PATH as well: looking only
    for a file of that name refused `--torch-python python`."""
    found = shutil.which(name)
    if found is None and os.path.isfile(name) and os.access(name, os.X_OK):
        found = os.path.abspath(name)
    return found


def compare_main(argv, prog="python -m minidarts bench compare"):
    """The compare form: run both side by side and print the table of ratios."""
    p = argparse.ArgumentParser(prog=prog, description=compare.__doc__)
    p.add_argument("--torch-python", required=True, help="a python that has torch (a venv)")
    p.add_argument("--reference", required=True, help="path of torch_reference.py")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--batches", nargs="+", type=int, default=[64])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    p.add_argument("--iters", type=int, default=7, help="timed calls per process (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--paths",
        nargs="+",
        default=["fast"],
        choices=PATHS,
        help="minidarts's paths to time, each in its own process every round (default: fast)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    args.batches = sorted(set(args.batches))  # each batch once a round
    if min(args.rounds, args.iters, args.threads, *args.batches) < 1:
        p.error("--rounds, --iters, --threads and --batches must be >= 1")
    python = _find_program(args.torch_python)
    if python is None:
        there = os.path.exists(args.torch_python)
        why = "not an executable file" if there else "no such file, nor a program on PATH"
        p.error(f"--torch-python {args.torch_python}: {why}")
    if not os.path.exists(args.reference):
        p.error(f"--reference {args.reference}: no such file")
    backend.check_device(args.device)  # no CuPy: one line before any process runs
    start = time.time()
    print(
        f"bench compare: {args.device}, {args.threads} threads, batches {args.batches}, "
        f"{args.rounds} interleaved rounds of {args.iters} calls"
    )
    results = compare(
        python,
        args.reference,
        args.cases,
        args.batches,
        args.rounds,
        args.iters,
        args.threads,
        args.device,
        paths=args.paths,
    )
    print(format_table(results))
    print(f"({time.time() - start:.0f} s; ratio = minidarts / PyTorch, medians of medians)")
    scaling = scaling_table(results)
    if scaling:
        print("\nTime per image against the batch size (max/min: the dearest over the cheapest)")
        print(scaling)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
