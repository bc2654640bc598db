"""The side-by-side benchmark's plumbing (bench_cases.py): the --case JSON line has
torch_reference.py's keys, and `compare` pairs the two implementations' medians into
ratios. Timings themselves are never asserted: benchmarks are scripts that print."""

import json
import os
import subprocess
import sys

import pytest

from minidarts.__main__ import main as cli
from minidarts.jobs import bench_cases

REFERENCE_KEYS = {"impl", "device", "case", "batch", "s", "rss_mb"}


@pytest.mark.parametrize("case", ["fwd", "step1"])
def test_case_prints_one_json_line_like_the_reference(case):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "minidarts",
            "bench",
            "--case",
            case,
            "--batch",
            "2",
            "--iters",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = json.loads(out.strip())
    assert set(line) == REFERENCE_KEYS | {"path"} and line["path"] == "fast"
    assert line["impl"] == "minidarts" and line["case"] == case and line["batch"] == 2
    assert line["device"] == "cpu" and line["s"] > 0 and line["rss_mb"] > 0


def test_unknown_case_and_path_are_named():
    with pytest.raises(ValueError, match="unknown case 'fwd2'"):
        bench_cases.time_case("fwd2", batch=2, iters=1)
    with pytest.raises(ValueError, match="unknown path 'quick': expected one of fast, "):
        bench_cases.time_case("fwd", batch=2, iters=1, path="quick")


def test_compare_pairs_medians_into_ratios(tmp_path):
    # a stand-in for torch_reference.py: the same command line, a fixed time per case
    fake = tmp_path / "fake_reference.py"
    fake.write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser()\n"
        "for a in ('--device', '--case', '--batch', '--iters', '--threads'): p.add_argument(a)\n"
        "a = p.parse_args()\n"
        "print(json.dumps({'impl': 'torch', 'device': a.device, 'case': a.case,\n"
        "                  'batch': int(a.batch), 's': {'fwd': 2.0, 'fwdbwd': 4.0}[a.case],\n"
        "                  'rss_mb': 100}))\n"
    )
    lines = []
    results = bench_cases.compare(
        sys.executable,
        str(fake),
        cases=("fwd",),
        batches=(2, 4),
        rounds=3,
        iters=1,
        log=lines.append,
    )
    assert [(r["case"], r["batch"]) for r in results] == [("fwd", 2), ("fwd", 4)]
    for r in results:
        assert r["torch_s"] == 2.0 and r["torch_rss_mb"] == 100
        assert r["ratio"] == pytest.approx(r["minidarts_s"] / 2.0)
    # interleaved: 3 rounds, each running every (case, batch) once, one process of each
    assert len(lines) == 6 and all("minidarts" in s and "torch 2000 ms" in s for s in lines)
    order = [(s.split("batch ")[1].split(" ")[0], s.split("round ")[1][0]) for s in lines]
    assert order == [("2", "1"), ("4", "1"), ("2", "2"), ("4", "2"), ("2", "3"), ("4", "3")]
    table = bench_cases.format_table(results)
    assert table.count("\n| fwd |") == 2
    # the fake takes 2 s at batch 2 and at 4: 1 s an image, then 0.5, in every round
    scaling = bench_cases.scaling_table(results)
    torch_row = next(line for line in scaling.splitlines() if "PyTorch" in line)
    assert torch_row == "| fwd | PyTorch | 1000.00 ms | 500.00 ms | 2.00 | 2.00-2.00 |"
    assert "| fwd | minidarts fast |" in scaling
    # several paths: each its own process every round, one row each against one torch
    lines.clear()
    results = bench_cases.compare(
        sys.executable,
        str(fake),
        cases=("fwd",),
        batches=(2,),
        rounds=2,
        iters=1,
        log=lines.append,
        paths=("fast", "serial"),
    )
    assert [r["path"] for r in results] == ["fast", "serial"]
    assert len(lines) == 2 and all("fast" in s and "serial" in s for s in lines)
    assert "| fwd | 2 | serial |" in bench_cases.format_table(results)


def test_compare_reports_a_failing_reference(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('no torch here')\n")
    with pytest.raises(RuntimeError, match="no torch here"):
        bench_cases.compare(
            sys.executable,
            str(bad),
            cases=("fwd",),
            batches=(2,),
            rounds=1,
            iters=1,
            log=lambda s: None,
        )


def test_profile_names_the_kernels_and_puts_the_engine_back():
    from minidarts.engine import autograd
    from minidarts.jobs import bench_profile

    apply, run_backward = autograd.Function.apply, autograd._run_backward
    kernels = [(k, k.forward, k.backward) for k, _ in bench_profile._kernels()]
    wall, busy = bench_profile.profile(batch=2, path="fast", steps=1, warmup=0)
    assert wall > 0
    kinds = {kind for _, kind in busy}
    # the fused stages' kernels are named too, beside the stage's own glue
    assert {"Conv2d/depthwise", "Conv2d/pointwise", "BatchNormTrain", "MaxPool2d"} <= kinds
    from minidarts.darts import network

    if network.fast_cell is not None:  # a student copy has no fast path
        assert "EdgeStage" in kinds
    assert {phase for phase, _ in busy} == {"forward", "backward"}
    assert autograd.Function.apply == apply and autograd._run_backward is run_backward
    assert all(k.forward is f and k.backward is b for k, f, b in kernels)
    # nested calls (a Function's apply, then its kernel) are counted once: on one
    # thread the busy time cannot exceed the wall time
    wall, busy = bench_profile.profile(batch=2, path="serial", steps=2, warmup=1)
    assert 0 < sum(busy.values()) <= 1.05 * wall
    out = subprocess.run(
        [sys.executable, "-m", "minidarts", "bench", "--profile", "--batch", "2", "--iters", "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "busy (summed over the threads)" in out and "Conv2d/depthwise" in out


def _result(case, batch, ours, theirs, path="fast"):
    """A compare() result from the per-round times of both sides."""
    import statistics

    return {
        "case": case,
        "batch": batch,
        "path": path,
        "minidarts_s": statistics.median(ours),
        "torch_s": statistics.median(theirs),
        "minidarts_rounds_s": ours,
        "torch_rounds_s": theirs,
    }


def test_scaling_table_gives_the_dearest_batch_over_the_cheapest():
    results = [
        # minidarts: linear in round 1 (1 ms an image), batch 32 20% dearer in round 2
        _result("step1", 32, [0.032, 0.0384, 0.032], [0.064, 0.064, 0.064]),
        _result("step1", 64, [0.064, 0.064, 0.064], [0.064, 0.064, 0.064]),
        _result("step1", 256, [0.256, 0.256, 0.256], [0.256, 0.256, 0.256]),
    ]
    rows = bench_cases.scaling_table(results).splitlines()
    assert (
        rows[0]
        == "| case | implementation | batch 32 | batch 64 | batch 256 | max/min | per round |"
    )
    # medians: 1 ms an image at every batch; single rounds: 1.00 and 1.20
    assert rows[2] == "| step1 | minidarts fast | 1.00 ms | 1.00 ms | 1.00 ms | 1.00 | 1.00-1.20 |"
    # PyTorch: 2 ms an image at 32, 1 at 64 and 256
    assert rows[3] == "| step1 | PyTorch | 2.00 ms | 1.00 ms | 1.00 ms | 2.00 | 2.00-2.00 |"
    # one batch: nothing to scale
    assert bench_cases.scaling_table(results[:1]) == ""
    # several paths: one row each, then PyTorch once, case by case
    both = results + [
        _result("step1", b, [t * 2 for t in r["minidarts_rounds_s"]], r["torch_rounds_s"], "serial")
        for b, r in zip((32, 64, 256), results)
    ]
    both += [_result("fwdbwd", b, [0.001 * b], [0.002 * b]) for b in (32, 64)]
    rows = bench_cases.scaling_table(both).splitlines()[2:]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| step1", "minidarts fast"],
        ["| step1", "minidarts serial"],
        ["| step1", "PyTorch"],
        ["| fwdbwd", "minidarts fast"],
        ["| fwdbwd", "PyTorch"],
    ]
    assert (
        rows[1] == "| step1 | minidarts serial | 2.00 ms | 2.00 ms | 2.00 ms | 1.00 | 1.00-1.20 |"
    )
    # fwdbwd was not timed at 256: an empty cell
    assert rows[3] == "| fwdbwd | minidarts fast | 1.00 ms | 1.00 ms |  | 1.00 | 1.00-1.00 |"


def test_scaling_times_every_batch_every_round():
    from minidarts.jobs import bench_scaling

    lines = []
    result = bench_scaling.scaling((2, 3), rounds=2, calls=1, log=lines.append)
    assert set(result["per_image"]) == {(c, b) for c in ("fwdbwd", "step1") for b in (2, 3)}
    assert all(len(v) == 2 and min(v) > 0 for v in result["per_image"].values())
    assert len(result["wake_us"]) == 2 and min(result["wake_us"]) > 0
    assert len(lines) == 2 and lines[0].startswith("  round 1/2: wake-up ")
    assert "| step1 | ms per image |" in bench_scaling.format_scaling(result)
    # CPU time per image and the cores busy, every round
    assert all(len(v) == 2 and min(v) > 0 for v in result["cpu_per_image"].values())
    assert all(len(v) == 2 and min(v) > 0 for v in result["busy"].values())


def test_format_scaling_gives_medians_spreads_and_waits_per_image():
    from minidarts.jobs import bench_scaling

    ms = 1e-3
    result = {
        # seconds per image, 3 rounds: batch 32 dearer in round 2 only
        "per_image": {
            ("fwdbwd", 32): [1 * ms, 1.5 * ms, 1 * ms],
            ("fwdbwd", 64): [1 * ms, 1 * ms, 1 * ms],
            ("step1", 32): [3 * ms, 3 * ms, 3 * ms],
            ("step1", 64): [2 * ms, 2 * ms, 2 * ms],
        },
        "switches": {  # per call
            ("fwdbwd", 32): [960, 1000, 1040],
            ("fwdbwd", 64): [640, 640, 640],
            ("step1", 32): [1600, 1600, 1600],
            ("step1", 64): [1280, 1280, 1280],
        },
        "wake_us": [40.0, 80.0, 180.0],
    }
    lines = bench_scaling.format_scaling(result).splitlines()
    assert lines[0] == "| case | | batch 32 | batch 64 | max/min | per round |"
    assert lines[2] == "| fwdbwd | ms per image | 1.00 | 1.00 | 1.00 | 1.00-1.50 |"
    assert lines[3] == "| fwdbwd | waits per image | 31.2 | 10.0 | | |"
    assert lines[4] == "| step1 | ms per image | 3.00 | 2.00 | 1.50 | 1.50-1.50 |"
    assert lines[5] == "| step1 | waits per image | 50.0 | 20.0 | | |"
    assert lines[-1].endswith("median 80 us (rounds: 40-180)")
    # per image 1 ms at both batches: nothing fixed; step1 3 and 2 ms: a call of 32
    # costs 96 ms, of 64 128 ms, the line through them 64 ms + 1 ms per image
    assert "fwdbwd: a call costs 0.0 ms + 1.00 ms per image" in lines
    assert "step1: a call costs 64.0 ms + 1.00 ms per image" in lines
    # on that line an image at 32 costs 64 / 32 + 1 = 3 ms, at 64 2 ms
    assert "step1: on that line an image costs 1.50 times as much at batch 32 as at 64" in lines
    assert "fwdbwd: on that line an image costs 1.00 times as much at batch 32 as at 64" in lines
    # where /proc counts nothing, no waits rows
    result["switches"] = {key: [] for key in result["switches"]}
    assert "waits" not in bench_scaling.format_scaling(result)


def test_format_scaling_gives_the_cpu_per_image_and_the_cores_busy():
    from minidarts.jobs import bench_scaling

    ms = 1e-3
    result = {
        "per_image": {("fwdbwd", 32): [2 * ms], ("fwdbwd", 256): [1 * ms]},
        "switches": {("fwdbwd", 32): [], ("fwdbwd", 256): []},
        "cpu_per_image": {("fwdbwd", 32): [3 * ms], ("fwdbwd", 256): [2 * ms]},
        "busy": {("fwdbwd", 32): [1.4, 1.5, 1.9], ("fwdbwd", 256): [2.0]},
    }
    for case in ("step1",):  # a case without CPU figures: no CPU row of its own
        for b, t in ((32, 1 * ms), (256, 1.5 * ms)):
            result["per_image"][case, b] = [t]
            result["switches"][case, b] = []
    one = {key: {k: v for k, v in result[key].items() if k[1] == 32} for key in result}
    result["wake_us"] = one["wake_us"] = [50.0]
    lines = bench_scaling.format_scaling(result).splitlines()
    assert "| fwdbwd | CPU ms per image | 3.00 | 2.00 | 1.50 | |" in lines
    assert "| fwdbwd | cores busy | 1.50 | 2.00 | | |" in lines  # the median round
    assert not any(line.startswith("| step1 | CPU") for line in lines)
    # fwdbwd per call 64 ms at 32, 256 ms at 256: 36.6 ms + 0.86 ms an image; step1 32
    # and 384 ms: the line's fixed cost is below 0, flagged as noise
    assert "fwdbwd: a call costs 36.6 ms + 0.86 ms per image" in lines
    assert "step1: a call costs -18.3 ms + 1.57 ms per image (below 0: the fixed cost is " in (
        " ".join(lines)
    )
    # one batch: no line through it (and no division by zero)
    lines = bench_scaling.format_scaling(one).splitlines()
    assert "| fwdbwd | ms per image | 2.00 | 1.00 | 1.00-1.00 |" in lines
    assert not any("a call costs" in line for line in lines)


def test_fixed_and_per_image_recovers_a_line():
    from minidarts.jobs import bench_scaling

    batches = [32, 64, 128, 256]
    a, b = bench_scaling.fixed_and_per_image(batches, [0.012 + 0.005 * x for x in batches])
    assert a == pytest.approx(0.012) and b == pytest.approx(0.005)


def test_line_ratio_weighs_the_fixed_cost_of_a_call():
    import math

    from minidarts.jobs import bench_scaling

    # 32 ms a call + 1 ms an image: 2 ms an image at 32, 1.125 at 256
    assert bench_scaling.line_ratio([32, 64, 256], 0.032, 0.001) == pytest.approx(2 / 1.125)
    assert bench_scaling.line_ratio([32, 256], 0.0, 0.001) == 1.0
    assert bench_scaling.line_ratio([32, 256], -0.016, 0.001) < 1  # the noise's sign
    # a line that gives a call no time at an end is no cost: NaN, not a negative ratio
    assert math.isnan(bench_scaling.line_ratio([2, 3, 4, 5], -0.01, 0.002))
    assert math.isnan(bench_scaling.line_ratio([2, 5], -0.01, 0.002))  # 0 at batch 5


def _scaling_run(per_image_ms):
    """A result of bench_scaling.scaling: {batch: [ms per image, one per round]} for
    both cases (step1 twice fwdbwd's times)."""
    ms = 1e-3
    per_image = {}
    for b, times in per_image_ms.items():
        per_image["fwdbwd", b] = [t * ms for t in times]
        per_image["step1", b] = [2 * t * ms for t in times]
    rounds = len(next(iter(per_image_ms.values())))
    switches = {key: [100.0] * rounds for key in per_image}
    return {"per_image": per_image, "switches": switches, "wake_us": [50.0] * rounds}


def _write_run(path, run, threads=2):
    import json

    from minidarts.jobs import bench_scaling

    path.write_text(json.dumps(bench_scaling.to_json(run, threads, 3, started=0.0)))
    return path


def test_pool_takes_runs_together_each_relative_to_itself(tmp_path):
    from minidarts.jobs import bench_pool

    # run a: batch 32 dearer (median 1.2 of 1.0, 1.2, 5.0); b, twice as slow an hour,
    # batch 256 dearer; c, batch 256 far dearer: relative to itself each run weighs
    # alike, and the median over three runs is not their mean
    a = _scaling_run({32: [1.0, 1.2, 5.0], 256: [1.0, 1.0, 1.0]})
    b = _scaling_run({32: [2.0, 2.0, 2.0], 256: [2.2, 2.2, 2.2]})
    c = _scaling_run({32: [1.0], 256: [2.0]})
    names = ["a.json", "b.json", "c.json"]
    runs = [bench_pool.load_run(_write_run(tmp_path / n, r)) for n, r in zip(names, (a, b, c))]
    batches, threads, medians = runs[0]
    assert batches == [32, 256] and threads == 2
    assert medians["fwdbwd"] == pytest.approx([1.2e-3, 1e-3])
    assert medians["step1"] == pytest.approx([2.4e-3, 2e-3])
    pooled = bench_pool.pool(runs)
    (m, ratio, on_line), _, (_, _, c_line) = pooled["fwdbwd"]["runs"]
    assert m == pytest.approx([1.2e-3, 1e-3])
    assert ratio == pytest.approx(1.2) and on_line == pytest.approx(1.2)
    assert c_line == pytest.approx(0.5)  # below 1 / 1.15: not within
    # log-relative, 32 against 256: a +log 1.2, b -log 1.1, c -log 2; the median is b's
    assert pooled["fwdbwd"]["profile"] == pytest.approx([1.0, 1.1])
    text = bench_pool.format_pool(names, [32, 256], pooled, 1.15)
    lines = text.splitlines()
    assert "| fwdbwd | a.json | 1.20 | 1.00 | 1.20 | 1.20 |" in lines
    assert "| fwdbwd | b.json | 2.00 | 2.20 | 1.10 | 0.91 |" in lines
    assert "| fwdbwd | c.json | 1.00 | 2.00 | 2.00 | 0.50 |" in lines
    assert "| fwdbwd | pooled, relative | 1.000 | 1.100 | 1.10 | |" in lines
    # within 1.15: b's max/min (a 1.2, c 2.0), b's line (a 1.2, c 0.5 below 1 / 1.15)
    assert "fwdbwd: max/min within 1.15 in 1 of 3 runs (their median 1.20), the line's " in text
    assert "ratio in 1 of 3; pooled max/min 1.10 (no interval from fewer than 5 runs)" in text
    # five runs: a, b, c and a twice more. Resampled, the median run is a (max/min
    # 1.2) where a is drawn three times or more (P 0.68), c (2.0) where c is (P 0.06,
    # above the 2.5% tail), and b (1.1) otherwise
    five = bench_pool.pool(runs + runs[:1] * 2)
    lines = bench_pool.format_pool(names + ["d", "e"], [32, 256], five, 1.15).splitlines()
    assert "fwdbwd: max/min within 1.15 in 1 of 5 runs (their median 1.20), " in lines[-2]
    assert lines[-2].endswith("pooled max/min 1.20 (95% of the runs resampled: 1.10-2.00)")


def test_the_interval_resamples_the_runs_and_brackets_what_they_could_pool_to():
    from minidarts.jobs import bench_pool

    # five runs flat, four with batch 32 at 1.3: the median run is flat (1.00), but
    # resampled, five or more of the nine are steep often enough (P ~ 0.37) to reach 1.3
    runs = [[1.0, 1.0]] * 5 + [[1.3, 1.0]] * 4
    assert max(bench_pool.profile(runs)) == 1.0
    low, high = bench_pool.interval(runs)
    assert low == 1.0 and high == pytest.approx(1.3)
    assert bench_pool.interval(runs) == (low, high)  # seeded: the same every time
    assert bench_pool.interval([[1.0, 1.0]] * 3) == (1.0, 1.0)  # nothing to vary
    # runs alike: every resample pools to the same max/min
    assert bench_pool.interval([[1.2, 1.0], [2.4, 2.0]]) == pytest.approx((1.2, 1.2))
    # a narrower level is a narrower interval: about 63% of these resamples stay flat
    assert bench_pool.interval(runs, level=0.2) == (1.0, 1.0)
    for bad in ({"resamples": 0}, {"level": 1.0}, {"level": 0}):
        with pytest.raises(ValueError, match="interval: runs, resamples >= 1"):
            bench_pool.interval(runs, **bad)
    with pytest.raises(ValueError, match="got 0 runs"):
        bench_pool.interval([])


def test_bench_pool_reads_what_scaling_wrote_and_names_a_wrong_file(tmp_path, capsys):
    import json

    from minidarts.jobs import bench

    run = str(tmp_path / "run.json")
    argv = ["--scaling", "2", "3", "--repeats", "1", "--iters", "1", "--json", run]
    assert bench.main(argv) in (None, 0)
    assert f"rounds written to {run}" in capsys.readouterr().out
    assert bench.main(["pool", run, run]) in (None, 0)
    out = capsys.readouterr().out
    assert "bench pool: 2 run(s), batches [2, 3]" in out and "| step1 | run.json |" in out
    assert "step1: max/min within 1.15 in " in out
    written = json.loads(open(run).read())
    # what is not a run: each named, one line, nothing printed before it
    other = tmp_path / "other.json"

    def edited(**changes):
        return json.dumps({**written, **changes})

    times = written["cases"]["fwdbwd"]["per_image_s"]
    cases = [
        ("not json", "not a JSON file"),
        ('{"format": "something else"}', "not a file of `bench --scaling ... --json`"),
        (edited(batches=[2, 2]), "'batches' is [2, 2], not two or more batches"),
        (edited(batches=[3, 2]), "'batches' is [3, 2]"),
        (edited(batches=[0, 3]), "'batches' is [0, 3]"),
        (edited(batches="23"), "'batches' is '23'"),
        (edited(batches=[2, 3.5]), "'batches' is [2, 3.5]"),
        (edited(threads=True), "'threads' is True"),
        (edited(cases={}), "no times per image of fwdbwd: KeyError"),
        (
            edited(cases={**written["cases"], "fwdbwd": {"per_image_s": {**times, "3": [True]}}}),
            "fwdbwd at batch 3: [True] is not a list of times above 0",
        ),
        (
            edited(cases={**written["cases"], "fwdbwd": {"per_image_s": {**times, "2": "0.1"}}}),
            "fwdbwd at batch 2: '0.1' is not a list of times",
        ),
        (
            edited(cases={**written["cases"], "fwdbwd": {"per_image_s": {**times, "2": []}}}),
            "fwdbwd at batch 2: [] is not a list of times",
        ),
        (
            edited(cases={**written["cases"], "fwdbwd": {"per_image_s": {**times, "2": [-1]}}}),
            "fwdbwd at batch 2: [-1] is not a list of times above 0",
        ),
        (edited(batches=[2, 3, 4]), "no times per image of fwdbwd: KeyError '4'"),
    ]
    for text, message in cases:
        other.write_text(text)
        assert bench.main(["pool", run, str(other)]) == 1
        captured = capsys.readouterr()
        assert message in captured.err and str(other) in captured.err
        assert captured.out == ""
    wider = _scaling_run({2: [1.0], 3: [1.0], 4: [1.0]})
    _write_run(other, wider)
    assert bench.main(["pool", run, str(other)]) == 1
    assert f"other.json: batches [2, 3, 4], but {run} has [2, 3]" in capsys.readouterr().err
    other.write_text(edited(threads=written["threads"] + 1))
    assert bench.main(["pool", run, str(other)]) == 1
    assert "thread(s), but " in capsys.readouterr().err
    assert bench.main(["pool", str(tmp_path / "missing.json")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_voluntary_switches_count_a_thread_that_sleeps():
    import time

    from minidarts.jobs import bench_scaling

    before = bench_scaling.voluntary_switches()
    if before is None:
        pytest.skip("no /proc/<pid>/task/*/status here to count context switches")
    time.sleep(0.01)  # a sleep always gives up the core: one voluntary switch at least
    assert bench_scaling.voluntary_switches() > before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scaling", "1", "4"], "--scaling: give at least two different batches"),
        (["--scaling", "64"], "--scaling: give at least two different batches"),
        (["--scaling", "64", "64"], "--scaling: give at least two different batches"),
        (["--scaling", "32", "64", "--device", "gpu"], "--scaling runs on the CPU only"),
        (["--scaling", "32", "64", "--path", "serial"], "--scaling times the fast path only"),
        (["--scaling", "32", "64", "--profile"], "not allowed with argument"),
        (["--case", "fwd", "--profile"], "not allowed with argument"),
        (["--json", "x.json"], "--json writes the rounds of --scaling"),
        (["--case", "fwd", "--json", "x.json"], "--json writes the rounds of --scaling"),
        (["--scaling", "2", "3", "--json", "no/such/x.json"], "--json no/such/x.json: no folder "),
        (["--scaling", "2", "3", "--json", "."], "--json .: a folder, not a file"),
    ],
)
def test_bench_refuses_what_it_cannot_do(args, message, capsys):
    from minidarts.jobs import bench

    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--case", "fwd", "--batch", "2"],
        ["--sections", "kernels"],
        ["--profile"],
        ["compare", "--torch-python", sys.executable, "--reference", __file__],
    ],
)
def test_bench_on_a_gpu_it_cannot_use_is_one_error_line(args, monkeypatch, capsys):
    # as `search --device gpu`: the device check's message, one line, before any work
    from minidarts.engine import backend
    from minidarts.jobs import bench

    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    monkeypatch.delenv("MINIDARTS_DEBUG", raising=False)

    def no_work(*args, **kwargs):
        raise AssertionError("timed something before the device check")

    for module, name in [(bench, "matmul_gflops"), (bench_cases, "time_case")]:
        monkeypatch.setattr(module, name, no_work)
    monkeypatch.setattr(bench_cases, "compare", no_work)
    assert bench.main([*args, "--device", "gpu"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: the GPU was requested but ")
    # --debug on the command line reaches bench: the traceback, and nothing left set
    with pytest.raises(RuntimeError, match="the GPU was requested"):
        cli(["bench", *args, "--device", "gpu", "--debug"])
    assert "MINIDARTS_DEBUG" not in os.environ
    monkeypatch.setenv("MINIDARTS_DEBUG", "0")  # a value of the user's own comes back
    with pytest.raises(RuntimeError, match="the GPU was requested"):
        cli(["bench", *args, "--device", "gpu", "--debug"])
    assert os.environ["MINIDARTS_DEBUG"] == "0"


def _compare_once(reference):
    """`bench compare` of one case at batch 2, one round of one call, against
    `reference`, through bench's main: (status, stdout, stderr) come from capsys."""
    from minidarts.jobs import bench

    args = ["compare", "--torch-python", sys.executable, "--reference", str(reference)]
    return bench.main(args + ["--cases", "fwd", "--batches", "2", "--rounds", "1", "--iters", "1"])


@pytest.mark.parametrize(
    "prints, shown",
    [
        ("print(1)", "'1'"),
        ("print('timings follow')", "'timings follow'"),
        ("pass", "nothing"),
        ("print('{\"s\": 0.1}')", "'{\"s\": 0.1}'"),
        (
            'print(\'{"impl": 1, "device": 1, "case": 1, "batch": 1, "s": "1", "rss_mb": 1}\')',
            '\'{"impl"',
        ),
    ],
)
def test_compare_refuses_a_reference_line_without_the_keys(
    prints, shown, tmp_path, monkeypatch, capsys
):
    fake = tmp_path / "R.py"
    fake.write_text(prints + "\n")
    monkeypatch.delenv("MINIDARTS_DEBUG", raising=False)
    assert _compare_once(fake) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: bench compare: ")
    assert f"{fake}" in err and shown in err
    assert "not a JSON object with the keys impl, device, case, batch, s, rss_mb" in err


def test_compare_names_the_reference_failure_in_one_line(tmp_path, monkeypatch, capsys):
    # as `import torch` where torch is not installed: a traceback on stderr, status 1
    fake = tmp_path / "R.py"
    fake.write_text("import sys\nraise ModuleNotFoundError(\"No module named 'torch'\")\n")
    monkeypatch.delenv("MINIDARTS_DEBUG", raising=False)
    assert _compare_once(fake) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: bench compare: the reference {fake} (run by {sys.executable})")
    assert "failed (exit status 1): ModuleNotFoundError" in err
    assert "ModuleNotFoundError: No module named 'torch'" in err
    assert "point --torch-python at a python that has torch" in err


def test_compare_finds_a_bare_torch_python_on_path(tmp_path, monkeypatch, capsys):
    from minidarts.jobs import bench

    folder, name = os.path.split(sys.executable)
    monkeypatch.setenv("PATH", folder + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.chdir(tmp_path)  # no file of that name here: only PATH has it
    seen = []
    monkeypatch.setattr(bench_cases, "compare", lambda python, *a, **k: seen.append(python) or [])
    fake = tmp_path / "R.py"
    fake.write_text("")
    assert not bench.main(["compare", "--torch-python", name, "--reference", str(fake)])
    assert os.path.samefile(seen[0], sys.executable)
    with pytest.raises(SystemExit):
        bench.main(["compare", "--torch-python", "no-such-python-x", "--reference", str(fake)])
    assert "no-such-python-x: no such file, nor a program on PATH" in capsys.readouterr().err
