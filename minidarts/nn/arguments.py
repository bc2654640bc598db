"""Argument checks shared by the kernels and the layers."""


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
