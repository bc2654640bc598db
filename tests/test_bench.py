"""The side-by-side benchmark's plumbing (bench_cases.py): the --case JSON line has
torch_reference.py's keys, and `compare` pairs the two implementations' medians into
ratios. Timings themselves are never asserted: benchmarks are scripts that print."""

import json
import subprocess
import sys

import pytest

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
        assert "ReluConvBN" in kinds
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


def test_scaling_times_every_batch_every_round_and_formats_the_spread():
    from minidarts.jobs import bench_scaling

    lines = []
    result = bench_scaling.scaling((2, 3), rounds=2, calls=1, log=lines.append)
    assert set(result["per_image"]) == {(c, b) for c in ("fwdbwd", "step1") for b in (2, 3)}
    assert all(len(v) == 2 and min(v) > 0 for v in result["per_image"].values())
    assert len(result["wake_us"]) == 2 and min(result["wake_us"]) > 0
    assert len(lines) == 2 and lines[0].startswith("  round 1/2: wake-up ")
    table = bench_scaling.format_scaling(result, (2, 3))
    per_image = result["per_image"]["step1", 2][0], result["per_image"]["step1", 3][0]
    first = max(per_image) / min(per_image)  # round 1's max/min for the step
    row = next(line for line in table.splitlines() if line.startswith("| step1 | ms per image"))
    low, high = row.split("|")[-2].strip().split("-")
    assert float(low) <= round(first, 2) <= float(high)
    assert "wake-up round trip between two threads: median" in table


def test_voluntary_switches_count_a_thread_that_waits():
    import threading

    from minidarts.jobs import bench_scaling

    before = bench_scaling.voluntary_switches()
    if before is None:  # no /proc: nothing to count, and it says so
        return
    done = threading.Event()
    threading.Timer(0.05, done.set).start()
    done.wait()  # this thread sleeps until the timer's thread wakes it
    assert bench_scaling.voluntary_switches() > before


def test_scaling_refuses_a_batch_below_two():
    out = subprocess.run(
        [sys.executable, "-m", "minidarts", "bench", "--scaling", "1", "4"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "--scaling: every batch must be >= 2" in out.stderr


def test_scaling_says_it_runs_on_the_cpu_only(monkeypatch, capsys):
    from minidarts.engine import backend
    from minidarts.jobs import bench

    monkeypatch.setattr(backend, "check_device", lambda device: device)  # as if CuPy were here
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--scaling", "32", "--device", "gpu"])
    assert exit_.value.code == 2
    assert "--scaling runs on the CPU only" in capsys.readouterr().err
