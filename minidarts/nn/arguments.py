"""Argument checks and shape arithmetic shared by the kernels and the layers."""

from ..engine import backend


def pair(value, name, opname, minimum=None):
    """An int or a pair of ints as a pair (rows, columns), as torch's _pair, with a
    clear error naming the function and argument otherwise; each value >= `minimum`
    when one is given."""
    values = (value, value) if isinstance(value, int) else value
    ok = (
        not isinstance(value, bool)
        and isinstance(values, (tuple, list))
        and len(values) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    )
    if not ok:
        raise TypeError(f"{opname}: {name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(values) < minimum:
        raise ValueError(f"{opname}: {name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def as_strided(a, shape, strides):
    """A view of a with the given shape and strides (bytes), NumPy's or CuPy's."""
    return backend.get_array_module(a).lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def out_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: (size + 2p - d*(k - 1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
