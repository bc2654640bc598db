"""Several runs of `bench --scaling ... --json FILE` taken together:
`python -m minidarts bench pool A.json B.json ...`.

One run's max/min (the dearest batch's time per image over the cheapest's) moves by
0.1-0.2 from run to run on a shared machine, and it is biased upwards: the dearest of
several noisy medians over the cheapest. The project's rule for a noisy machine is the
median of several runs, and `pool` applies it to the batch scaling:

    rel[r, b] = t[r, b] / (prod_b' t[r, b'])^(1/B)     each batch relative to its run
    profile[b] = median_r rel[r, b] / min_b (median_r rel[r, b])

(t[r, b]: run r's median time per image at batch b over its rounds; relative to its own
run, so that a slow hour weighs no more than a fast one). `interval` resamples the runs
to say how far the pooled max/min could move with other runs of the same kind.
"""

import math
import os
import random
import statistics

from .bench_cases import spread
from .bench_scaling import FORMAT, STEPS, fixed_and_per_image, line_ratio, ratio_text


def load_run(path):
    """The medians per image of a `--scaling --json` file: (batches, threads, {case:
    [seconds per image at each batch]}), checked (a ValueError names the file and what
    is wrong)."""
    import json

    try:
        with open(path) as f:
            run = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: not a JSON file ({e}): write it with bench --scaling --json"
        ) from None
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a file of `bench --scaling ... --json` (its 'format' is not {FORMAT!r})"
        )

    def damaged(what):
        return ValueError(f"{path}: damaged ({what}); run bench --scaling again")

    batches = run.get("batches")
    if (
        not isinstance(batches, list)
        or not all(type(b) is int and b >= 1 for b in batches)
        or batches != sorted(set(batches))
        or len(batches) < 2
    ):
        raise damaged(f"'batches' is {batches!r}, not two or more batches in increasing order")
    threads = run.get("threads")
    if type(threads) is not int or threads < 1:
        raise damaged(f"'threads' is {threads!r}, not a count of threads")
    medians = {}
    for case in STEPS:
        try:
            times = run["cases"][case]["per_image_s"]
            lists = [times[str(b)] for b in batches]
        except (KeyError, TypeError) as e:
            raise damaged(f"no times per image of {case}: {type(e).__name__} {e}") from None
        for b, t in zip(batches, lists):
            real = isinstance(t, list) and all(type(x) in (int, float) for x in t)
            if not real or not t or not all(0 < x < math.inf for x in t):
                raise damaged(f"{case} at batch {b}: {t!r} is not a list of times above 0")
        medians[case] = [statistics.median(t) for t in lists]
    return batches, threads, medians


def profile(medians):
    """The pooled profile of the module docstring over runs' medians (one list of times
    per image per run, a time per batch), the cheapest batch 1."""
    logs = []
    for m in medians:
        mean = statistics.fmean(math.log(t) for t in m)
        logs.append([math.log(t) - mean for t in m])
    pooled = [math.exp(statistics.median(col)) for col in zip(*logs)]
    return [p / min(pooled) for p in pooled]


def pool(runs):
    """Several runs of the same batches (load_run's: batches, threads, medians) together:
    per case, each run's max/min and line_ratio, and the pooled `profile`. Returns {case:
    {"runs": [(medians, max/min, line ratio)], "profile": [one per batch]}}."""
    batches = runs[0][0]
    out = {}
    for case in STEPS:
        rows = []
        for _, _, medians in runs:
            m = medians[case]
            a, b = fixed_and_per_image(batches, [t * x for t, x in zip(m, batches)])
            rows.append((m, spread(m), line_ratio(batches, a, b)))
        out[case] = {"runs": rows, "profile": profile([m for m, _, _ in rows])}
    return out


MIN_RUNS = 5  # three runs have 10 distinct resamples, five 126


def interval(medians, resamples=2000, seed=0, level=0.95):
    """The pooled max/min's `level` interval over the runs: `resamples` times, as many
    runs drawn from `medians` with replacement and pooled (a percentile bootstrap; the
    runs, not the rounds, are what varies from hour to hour). (low, high). Fewer than
    MIN_RUNS runs give too few distinct resamples to say much: format_pool omits it."""
    if not medians or resamples < 1 or not 0 < level < 1:
        raise ValueError(
            f"interval: runs, resamples >= 1 and 0 < level < 1 (got {len(medians)} runs, "
            f"resamples {resamples}, level {level})"
        )
    draw = random.Random(seed)
    n = len(medians)
    ratios = sorted(
        max(profile([medians[draw.randrange(n)] for _ in range(n)])) for _ in range(resamples)
    )
    tail = (1 - level) / 2
    return ratios[round(tail * (resamples - 1))], ratios[round((1 - tail) * (resamples - 1))]


def format_pool(names, batches, pooled, limit):
    """pool's result as a Markdown table and a line per case on `limit`."""
    lines = [
        "| case | run | " + " | ".join(f"batch {b}" for b in batches) + " | max/min | line |",
        "|---|---|" + "---:|" * len(batches) + "---:|---:|",
    ]
    for case, res in pooled.items():
        for name, (m, ratio, on_line) in zip(names, res["runs"]):
            lines.append(
                f"| {case} | {name} | "
                + " | ".join(f"{t * 1e3:.2f}" for t in m)
                + f" | {ratio:.2f} | {ratio_text(on_line)} |"
            )
        shares = res["profile"]
        lines.append(
            f"| {case} | pooled, relative | "
            + " | ".join(f"{p:.3f}" for p in shares)
            + f" | {max(shares):.2f} | |"
        )
    lines.append("")
    for case, res in pooled.items():
        runs = res["runs"]
        spreads = sum(r[1] <= limit for r in runs)
        on_line = sum(1 / limit <= r[2] <= limit for r in runs)  # NaN: not within
        if len(runs) >= MIN_RUNS:
            low, high = interval([m for m, _, _ in runs])
            resampled = f"95% of the runs resampled: {low:.2f}-{high:.2f}"
        else:
            resampled = f"no interval from fewer than {MIN_RUNS} runs"
        lines.append(
            f"{case}: max/min within {limit:.2f} in {spreads} of {len(runs)} runs (their "
            f"median {statistics.median(r[1] for r in runs):.2f}), the line's ratio in "
            f"{on_line} of {len(runs)}; pooled max/min {max(res['profile']):.2f} ({resampled})"
        )
    return "\n".join(lines)


def pool_main(argv, prog):
    """`python -m minidarts bench pool FILE ...`: runs of --scaling --json together."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Runs of `bench --scaling ... --json FILE` (the same batches and threads) "
        "together: each run's medians, max/min and the ratio on its line, and the pooled "
        "profile: each batch's time per image relative to its run (over the geometric mean "
        "of the run's batches), its median over the runs, the cheapest 1.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="from bench --scaling --json")
    parser.add_argument(
        "--limit", type=float, default=1.15, help="the ratio counted as linear (default 1.15)"
    )
    args = parser.parse_args(argv)
    if not args.limit >= 1:
        parser.error(f"--limit: a ratio of at least 1 (got {args.limit})")
    runs = [load_run(path) for path in args.files]
    first = args.files[0]
    for path, (batches, threads, _) in zip(args.files, runs):
        if batches != runs[0][0]:
            raise ValueError(
                f"{path}: batches {batches}, but {first} has {runs[0][0]}: pool runs of "
                "the same batches"
            )
        if threads != runs[0][1]:
            raise ValueError(
                f"{path}: {threads} thread(s), but {first} {runs[0][1]}: pool runs on the "
                "same threads (MINIDARTS_THREADS)"
            )
    table = format_pool(
        [os.path.basename(path) for path in args.files], runs[0][0], pool(runs), args.limit
    )
    print(
        f"bench pool: {len(runs)} run(s), batches {runs[0][0]}, {runs[0][1]} thread(s), ms "
        "per image (medians)"
    )
    print(table)
    print(
        "(max/min: the dearest batch over the cheapest; line: on the least-squares line "
        "through the times per call, the first batch's time per image over the last's; "
        "pooled: each batch's median over the runs, relative to its run)"
    )
