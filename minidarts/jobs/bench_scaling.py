"""The cost against the batch size, in one process:
`python -m minidarts bench --scaling 32 64 128 256 [--repeats 7]`.

Times forward + backward and the first-order search step of the paper's search
network (the fast path, as `bench --case` runs it) at every batch given, all batches
of a round interleaved within a minute or so, and prints the time per image, the
dearest batch's over the cheapest's (max/min; 1.00 is a cost linear in the batch)
for each round and from the medians over the rounds.

Beside the wall time, each batch's CPU time per image (every thread's, user and
system: the work, which is linear where the wall time is not) and the cores busy
(CPU over wall), and per case a least-squares line through the times per call,
`a + b * batch`: a is what a call costs whatever its batch (Python, the threads'
hand-overs), b the cost of one image.

Each round also reports what makes a small batch dearer on two threads: the
voluntary context switches per image (a thread that finishes a NumPy call while the
other runs Python waits for Python's lock, the GIL, and must be woken; the fixed
number of calls a step makes is shared by fewer images), and the round trip of a
wake-up between two threads on the machine at that moment (`wake_round_trip_us`),
which on a shared virtual machine moves from round to round. `bench compare
--batches ...` measures the time per image against PyTorch, in separate processes.

On such a machine one run's max/min moves by 0.1-0.2 from run to run (the same code
gave 1.02 to 1.21), and it is biased upwards: it takes the dearest of several noisy
medians over the cheapest. Two more measures: `line_ratio`, the time per image at the
first batch over the last on the line through the times per call (it weighs every
batch of a run), and `bench pool A.json B.json ...`, several runs written with
`--json FILE` (ideally at different hours) taken together, each batch's median over
the runs of its time relative to its run (bench_pool.py).
"""

import glob
import math
import os
import statistics
import threading
import time

from .bench_cases import _STEP_NAMES, spread

# the cases timed: forward + backward and the first-order step, as bench --case names them
STEPS = {case: _STEP_NAMES[case] for case in ("fwdbwd", "step1")}


def wake_round_trip_us(trips=2000):
    """The median time, in microseconds, for one thread to wake another and be woken
    back (two threading.Events, ping-pong)."""
    ping, pong = threading.Event(), threading.Event()
    times = []

    def other():
        for _ in range(trips):
            ping.wait()
            ping.clear()
            pong.set()

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    for _ in range(trips):
        start = time.perf_counter()
        ping.set()
        pong.wait()
        pong.clear()
        times.append(time.perf_counter() - start)
    thread.join()
    return statistics.median(times) * 1e6


def voluntary_switches():
    """The voluntary context switches of this process's threads so far (Linux; None
    where /proc does not say)."""
    total, found = 0, False
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
                        found = True
        except OSError:  # a thread that ended meanwhile
            continue
    return total if found else None


def scaling(batches, rounds, calls=3, log=print):
    """Time STEPS at every batch, `rounds` rounds, each running every batch and case
    once (a warm-up call, then `calls` timed calls: their median). Returns
    {"per_image": {(case, batch): [seconds per image, one per round]},
     "switches": {(case, batch): [voluntary switches per call, one per round]},
     "cpu_per_image": {(case, batch): [CPU seconds per image (all threads, user and
                       system; the median call), one per round]},
     "busy": {(case, batch): [the round's CPU time over its wall time]},
     "wake_us": [the wake-up round trip at the start of each round]}."""
    from .bench import _search_parts, _step_functions

    steps = {}
    for batch in batches:
        fns = _step_functions(*_search_parts(batch, "cpu"))
        steps[batch] = {case: fns[name] for case, name in STEPS.items()}
    per_image = {(c, b): [] for b in batches for c in STEPS}
    switches = {(c, b): [] for b in batches for c in STEPS}
    cpu = {(c, b): [] for b in batches for c in STEPS}
    busy = {(c, b): [] for b in batches for c in STEPS}
    wake = []
    for r in range(rounds):
        wake.append(wake_round_trip_us())
        for batch in batches:
            for case, fn in steps[batch].items():
                fn()
                before, times, used = voluntary_switches(), [], []
                for _ in range(calls):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    fn()
                    times.append(time.perf_counter() - start)
                    used.append(time.process_time() - cpu_start)  # every thread's
                cpu[case, batch].append(statistics.median(used) / batch)
                busy[case, batch].append(sum(used) / sum(times))
                after = voluntary_switches()
                per_image[case, batch].append(statistics.median(times) / batch)
                if before is not None and after is not None:
                    switches[case, batch].append((after - before) / calls)
        spreads = [
            f"{case} {spread(per_image[case, b][-1] for b in batches):.2f}" for case in STEPS
        ]
        log(f"  round {r + 1}/{rounds}: wake-up {wake[-1]:.0f} us, max/min " + ", ".join(spreads))
    return {
        "per_image": per_image,
        "switches": switches,
        "cpu_per_image": cpu,
        "busy": busy,
        "wake_us": wake,
    }


def fixed_and_per_image(batches, per_call):
    """The least-squares line through (batch, time per call): (a, b) with a call
    costing a + b * batch (a: the cost of a call whatever its batch)."""
    mean_b, mean_t = statistics.fmean(batches), statistics.fmean(per_call)
    b = sum((x - mean_b) * (t - mean_t) for x, t in zip(batches, per_call)) / sum(
        (x - mean_b) ** 2 for x in batches
    )
    return mean_t - b * mean_b, b


def line_ratio(batches, a, b):
    """On the line a + b * batch through the times per call, the time per image at the
    smallest batch over that at the largest: (a / b0 + b) / (a / bn + b). Unlike the
    max/min of the medians, it weighs every batch and not the two noisiest: a fixed cost
    a >= 0 gives 1 or more, a < 0 (the noise) less than 1. NaN where the line gives a
    call no time (0 or less) at either end: a line through noise, not a cost."""
    small, large = a + b * min(batches), a + b * max(batches)
    if small <= 0 or large <= 0:
        return math.nan
    return (small / min(batches)) / (large / max(batches))


def ratio_text(r):
    """A ratio with two decimals, or n/a for line_ratio's NaN."""
    return "n/a" if math.isnan(r) else f"{r:.2f}"


def format_scaling(result):
    """The result of `scaling` as a Markdown table and a line on the wake-ups."""
    per_image, switches = result["per_image"], result["switches"]
    batches = sorted({b for _, b in per_image})
    rounds = len(result["wake_us"])
    lines = [
        "| case | | " + " | ".join(f"batch {b}" for b in batches) + " | max/min | per round |",
        "|---|---|" + "---:|" * len(batches) + "---:|---:|",
    ]
    for case in STEPS:
        med = [statistics.median(per_image[case, b]) for b in batches]
        per_round = [spread(per_image[case, b][k] for b in batches) for k in range(rounds)]
        lines.append(
            f"| {case} | ms per image | "
            + " | ".join(f"{m * 1e3:.2f}" for m in med)
            + f" | {spread(med):.2f} | {min(per_round):.2f}-{max(per_round):.2f} |"
        )
        if all(switches[case, b] for b in batches):  # none where /proc does not count
            counts = [statistics.median(switches[case, b]) for b in batches]
            lines.append(
                f"| {case} | waits per image | "
                + " | ".join(f"{n / b:.1f}" for n, b in zip(counts, batches))
                + " | | |"
            )
        cpu, busy = result.get("cpu_per_image", {}), result.get("busy", {})
        if all(cpu.get((case, b)) for b in batches):
            used = [statistics.median(cpu[case, b]) for b in batches]
            lines.append(
                f"| {case} | CPU ms per image | "
                + " | ".join(f"{u * 1e3:.2f}" for u in used)
                + f" | {spread(used):.2f} | |"
            )
        if all(busy.get((case, b)) for b in batches):
            lines.append(
                f"| {case} | cores busy | "
                + " | ".join(f"{statistics.median(busy[case, b]):.2f}" for b in batches)
                + " | | |"
            )
    lines.append("")
    for case in STEPS if len(batches) > 1 else ():  # a line needs two batches
        a, b = fixed_and_per_image(
            batches, [statistics.median(per_image[case, x]) * x for x in batches]
        )
        noise = " (below 0: the fixed cost is within the noise)" if a <= -5e-5 else ""
        lines.append(f"{case}: a call costs {a * 1e3:.1f} ms + {b * 1e3:.2f} ms per image{noise}")
        lines.append(
            f"{case}: on that line an image costs {ratio_text(line_ratio(batches, a, b))} times "
            f"as much at batch {batches[0]} as at {batches[-1]}"
        )
    wake = result["wake_us"]
    lines.append(
        f"wake-up round trip between two threads: median {statistics.median(wake):.0f} us "
        f"(rounds: {min(wake):.0f}-{max(wake):.0f})"
    )
    return "\n".join(lines)


def check_args(parser, args):
    """bench's options for --scaling and --json (parser.error where they do not fit)."""
    if not args.scaling:
        parser.error("--json writes the rounds of --scaling: give --scaling BATCH ... too")
    if min(args.scaling) < 2 or len(set(args.scaling)) < 2:
        parser.error(
            f"--scaling: give at least two different batches, each >= 2 (got "
            f"{' '.join(map(str, args.scaling))})"
        )
    if args.path != "fast":
        parser.error("--scaling times the fast path only (the search's default)")
    if args.device != "cpu":  # it counts the CPU threads' waits; untested on a GPU
        parser.error("--scaling runs on the CPU only; `bench compare --device gpu` times the GPU")
    folder = args.json and os.path.dirname(os.path.abspath(args.json))
    if args.json and (not os.path.isdir(folder) or os.path.isdir(args.json)):
        # said now, not after minutes of rounds
        what = f"no folder {folder}" if not os.path.isdir(folder) else "a folder, not a file"
        parser.error(f"--json {args.json}: {what}")


FORMAT = "minidarts bench --scaling 1"  # the file's "format": its kind and version


def to_json(result, threads, calls, started):
    """A run of `scaling` as a JSON-ready dict (`bench pool` reads several); started:
    when its rounds began (time.time())."""
    batches = sorted({b for _, b in result["per_image"]})
    keys = {"per_image": "per_image_s", "cpu_per_image": "cpu_per_image_s"}
    keys.update(busy="cores_busy", switches="switches_per_call")
    cases = {
        case: {
            name: {str(b): list(result[key][case, b]) for b in batches}
            for key, name in keys.items()
            if key in result
        }
        for case in STEPS
    }
    return {
        "format": FORMAT,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "batches": batches,
        "threads": threads,
        "calls": calls,
        "rounds": len(result["wake_us"]),
        "cases": cases,
        "wake_us": list(result["wake_us"]),
    }


def scaling_main(args):
    """The --scaling form of `python -m minidarts bench`."""
    from ..engine import parallel
    from .runfolder import write_text

    batches = sorted(set(args.scaling))
    print(
        f"bench --scaling: batches {batches}, {args.repeats} interleaved rounds of "
        f"{args.iters} calls, fast path, {parallel.num_threads()} thread(s), one process"
    )
    started = time.time()
    result = scaling(batches, args.repeats, args.iters)
    if args.json:  # first: minutes of rounds are not lost to a fault of the table below
        import json

        run = to_json(result, parallel.num_threads(), args.iters, started)
        write_text(args.json, json.dumps(run, indent=1) + "\n")
    print(format_scaling(result))
    print(
        "(max/min: the dearest batch's time per image over the cheapest's, from the "
        "medians; per round: its lowest and highest in a single round. waits per image: "
        "voluntary context switches of a call over its batch; CPU: every thread's, user "
        "and system; cores busy: CPU over wall; a call costs: the least-squares line "
        "through the times per call)"
    )
    if args.json:
        print(f"rounds written to {args.json} (`bench pool` reads several runs)")
