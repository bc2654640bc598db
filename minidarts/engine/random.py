"""The global random generator that initialises weights, seeded by manual_seed.

Layers draw their initial weights from one module-level NumPy generator (on the
CPU, then moved to the device), so

    minidarts.manual_seed(0); net = Network(...)

builds the same weights every time, on either device. A layer given its own
`rng=` (a numpy Generator) draws from that instead and leaves this one alone.
"""

from . import backend

DEFAULT_SEED = 0  # fixed, as PyTorch's: a program that never seeds is still repeatable

_generator = backend.default_rng(DEFAULT_SEED)


def manual_seed(seed):
    """Restart the global generator from `seed` (an int); returns it."""
    global _generator
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = backend.default_rng(seed)
    return _generator


def get_rng(rng=None):
    """`rng` if given, else the global generator."""
    return _generator if rng is None else rng


def get_state():
    """The global generator's state, a plain dict (JSON-friendly) for checkpoints."""
    return _generator.bit_generator.state


def set_state(state):
    """Restore a state returned by get_state()."""
    _generator.bit_generator.state = state


class seeded:
    """Context manager: draw from a fresh generator seeded with `seed` inside the block,
    then put the global generator back as it was. A network built with an explicit
    seed is then the same whatever else drew random numbers before, and drawing it
    leaves the global stream untouched."""

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        global _generator
        self._saved = _generator
        _generator = backend.default_rng(self.seed)
        return _generator

    def __exit__(self, *exc):
        global _generator
        _generator = self._saved
        return False
