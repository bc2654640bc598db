"""A progress line for long loops: step, figures, time per step and ETA."""

import time


def format_seconds(s):
    """12 -> '12s', 125 -> '2m05s', 4000 -> '1h06m'."""
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Prints `prefix step k/n | key value ... | s/step | ETA` every `every` steps and at
    the last one. The ETA covers all `total_steps` of the run, not only this loop."""

    def __init__(self, total_steps, done_steps=0, every=10, write=print):
        self.total = total_steps
        self.done = done_steps
        self.every = max(1, every)
        self.write = write
        self.start = time.perf_counter()
        self.steps_here = 0

    def update(self, prefix, k, n, **figures):
        self.done += 1
        self.steps_here += 1
        if k % self.every and k != n:
            return
        per_step = (time.perf_counter() - self.start) / self.steps_here
        eta = per_step * (self.total - self.done)
        parts = " | ".join(
            f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
            for key, value in figures.items()
        )
        self.write(
            f"{prefix} step {k}/{n} | {parts} | {per_step:.2f} s/step | ETA {format_seconds(eta)}"
        )
