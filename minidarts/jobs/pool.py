"""Running independent jobs side by side: one process per CPU core.

NumPy runs our kernels on one core, so an experiment of many searches and
retrainings finishes sooner with one job per core. Each job is a plain function
of picklable arguments that writes its own run folder and returns a small dict;
it runs in a fresh (spawned) process limited to one BLAS thread. A job that
raises is recorded as failed, with its message, and the others go on.
Every job seeds itself, so the numbers do not depend on the number of workers
or on the order in which jobs finish.
"""

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback

from .progress import format_seconds

# the variables that size the BLAS / OpenMP thread pools of a child process
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MINIDARTS_THREADS",
)


def default_workers():
    """One worker per core the process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _call(fn, args):
    """Run one job; (result, None) or (None, one-line error + traceback)."""
    try:
        return fn(*args), None
    except Exception as e:  # recorded, not raised: the other jobs go on
        return None, (f"{type(e).__name__}: {e}", traceback.format_exc())


def run_jobs(jobs, workers=1, log=print):
    """Run jobs = [(label, fn, args), ...], `workers` at a time. Returns
    {label: result} for the jobs that finished and {label: error} for those that
    raised, as (results, failures). Prints a line as each job starts and ends."""
    results, failures = {}, {}
    if not jobs:
        return results, failures
    start = time.perf_counter()
    total = len(jobs)

    def finished(label, value, error):
        # the time since the phase began: in a pool, a job's own start is not seen here
        done = len(results) + len(failures) + 1
        took = format_seconds(time.perf_counter() - start)
        if error is None:
            results[label] = value
            log(f"[{done}/{total}] {label}: done ({took} elapsed)")
        else:
            failures[label] = error[0]
            log(f"[{done}/{total}] {label}: FAILED ({took} elapsed): {error[0]}")
            log(error[1].rstrip())

    if workers <= 1 or total == 1:
        for label, fn, args in jobs:
            log(f"[start] {label}")
            finished(label, *_call(fn, args))
    else:
        saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
        os.environ.update({k: "1" for k in THREAD_VARIABLES})  # inherited by the children
        try:
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(min(workers, total), mp_context=context) as pool:
                futures = {pool.submit(_call, fn, args): label for label, fn, args in jobs}
                log(
                    f"{total} jobs on {min(workers, total)} workers: " + ", ".join(futures.values())
                )
                for future in cf.as_completed(futures):
                    label = futures[future]
                    try:
                        value, error = future.result()
                    except Exception as e:  # the worker process itself died
                        value, error = None, (f"worker died: {type(e).__name__}: {e}", "")
                    finished(label, value, error)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    log(
        f"{len(results)} of {total} jobs done, {len(failures)} failed, in "
        f"{format_seconds(time.perf_counter() - start)}"
    )
    return results, failures


__all__ = ["default_workers", "run_jobs"]
