"""Numerical gradient checking: the proof that every backward pass is right.

A derivative is a limit; a difference of two values of f taken eps apart, one on
each side of x, approximates it with an error of order eps^2 (the eps^1 terms of
the Taylor series cancel; lesson 01 derives it). numerical_grad computes it for
every element of an array; gradcheck compares it with the backward pass.

In float32 (7 significant digits) the two values f(x +- eps) agree in most of
their digits, and the difference is mostly rounding noise; in float64 (16
digits) eps = 1e-6 leaves about 1e-10 of noise and 1e-12 of truncation, so a
gradient that agrees to a relative 1e-6 is right, and a wrong one is not.
"""

from . import backend
from .autograd import Tensor, no_grad


def numerical_grad(f, x, eps=1e-6):
    """The gradient of a scalar function f at the array x, from values of f alone.

    No backward pass is involved: this is the reference that gradcheck compares every
    backward with, element by element, so it must be accurate to O(eps^2) (central
    differences, step eps). Returns a float64 array shaped like x. x may be changed in
    place while f is evaluated but holds its original values on return. f returns a
    number (or a one-element Tensor/array). Use float64: in float32, two values of f
    that close share most of their 7 digits and their difference is mostly rounding
    (lesson 01 measures it)."""
    if not x.flags.c_contiguous:
        raise ValueError("numerical_grad: x must be a C-contiguous array (use x.copy())")
    xp = backend.get_array_module(x)
    grad = xp.zeros(x.shape, dtype=backend.float64)
    flat, g = x.reshape(-1), grad.reshape(-1)  # views: writing flat[i] changes x
    # BEGIN SOLUTION numerical_grad: g[i] ~ df/dx[i] for every element i, x left as it was
    # HINT: central differences: g[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
    # HINT: flat is a view of x: set flat[i], read _number(f(x)), put the old value back
    for i in range(flat.size):
        old = flat[i].item()
        flat[i] = old + eps
        f_plus = _number(f(x))
        flat[i] = old - eps
        f_minus = _number(f(x))
        flat[i] = old
        g[i] = (f_plus - f_minus) / (2 * eps)
    # END SOLUTION
    return grad


def _number(value):
    """A Python float of a number, a one-element array or a one-element Tensor."""
    return float(value.item() if hasattr(value, "item") else value)


class GradcheckReport:
    """What a passing gradcheck measured (a failing one raises): the largest relative
    error |analytic - numerical| / max(|numerical|, atol / rtol) over all checks."""

    def __init__(self, max_rel_error, n_checks):
        self.max_rel_error = max_rel_error
        self.n_checks = n_checks

    def __repr__(self):
        return f"GradcheckReport(max_rel_error={self.max_rel_error:.3g}, n_checks={self.n_checks})"


def gradcheck(
    fn, *inputs, eps=1e-6, atol=1e-8, rtol=1e-6, max_elements=1000, n_directions=16, seed=0
):
    """Compare the gradients of `fn(*inputs)` from backward() with numerical_grad's.

    Floating inputs are cast to float64 copies. The inputs checked are those with
    requires_grad=True (all floating inputs if none has it). A non-scalar output
    is reduced to a scalar with a fixed random cotangent v: f = sum(v * fn(...)).
    Inputs with at most `max_elements` elements are checked element by element;
    larger ones along `n_directions` random unit directions d, comparing grad . d
    with numerical_grad of t -> f(x + t d) at t = 0, each relative to at least the
    RMS of the numerical grad . d over the directions.

    Passes where |analytic - numerical| <= atol + rtol * |numerical| everywhere;
    otherwise raises AssertionError naming the function, the input, the element
    and both values. Returns a GradcheckReport."""
    name = getattr(fn, "__name__", repr(fn))
    rng = backend.default_rng(seed)
    args = []
    for x in inputs:
        # C-ordered copies: the checks below perturb elements through a flat view,
        # which reshape(-1) gives only for a C-contiguous array (a transposed input
        # would otherwise be perturbed in a throwaway copy and read as gradient 0).
        if isinstance(x, Tensor) and backend.is_floating(x.data):
            data = x.data.astype(backend.float64, order="C")
            # type(x): a Parameter's copy is a Parameter, so fn can put it where a
            # module expects one (a hypernetwork's ParameterDict)
            args.append(type(x)(data, requires_grad=x.requires_grad))
        elif backend.is_array(x) and backend.is_floating(x):
            args.append(Tensor(x.astype(backend.float64, order="C")))
        else:
            args.append(x)
    checked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not checked:
        checked = [
            i for i, a in enumerate(args) if isinstance(a, Tensor) and backend.is_floating(a.data)
        ]
        for i in checked:
            args[i].requires_grad = True
    if not checked:
        raise ValueError(f"gradcheck({name}): no floating-point input to check")

    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck({name}): fn must return a Tensor, got {type(out).__name__}")
    xp = backend.get_array_module(out.data)
    # A fixed random cotangent (scaled so f stays O(1)) checks every output at once.
    v = rng.standard_normal(out.shape) / max(out.numel(), 1) ** 0.5
    v = backend.asarray(v, device=out.device)

    def f():
        with no_grad():
            return float((fn(*args).data.astype(backend.float64) * v).sum())

    for i in checked:
        args[i].grad = None
    if not out.requires_grad:
        raise AssertionError(f"gradcheck({name}): the output does not depend on any checked input")
    out.backward(v.astype(out.dtype))

    worst, n_checks = 0.0, 0
    for i in checked:
        x = args[i]
        analytic = x.grad if x.grad is not None else xp.zeros(x.shape, backend.float64)
        if x.numel() <= max_elements:
            # numerical_grad perturbs x.data in place, and f reads the inputs afresh
            numerical = numerical_grad(lambda _: f(), x.data, eps).reshape(-1)
            for j in range(x.numel()):
                num = float(numerical[j])
                ana = float(analytic.reshape(-1)[j])
                where = f"element {_unravel(j, x.shape)}"
                worst = max(worst, _compare(name, i, x.shape, where, ana, num, atol, rtol))
                n_checks += 1
        else:
            base = x.data.copy()
            pairs = []
            for _ in range(n_directions):
                d = backend.asarray(rng.standard_normal(x.shape), device=x.device)
                d /= float(xp.sqrt((d * d).sum()))
                # the derivative of t -> f(base + t d) at t = 0 is grad . d: numerical_grad
                # of that one-variable function, so this check has one source of truth
                t = backend.numpy.zeros(1)

                def along_d(t, x=x, base=base, d=d):
                    x.data[...] = base + float(t[0]) * d
                    return f()

                num = float(numerical_grad(along_d, t, eps)[0])
                x.data[...] = base
                pairs.append((float((analytic * d).sum()), num))
            # grad . d can come out near 0 by cancellation for one random d, and then the
            # rounding noise of f alone would exceed rtol * |grad . d|. Measure each error
            # against at least the typical size of grad . d, the RMS over the directions
            # (numerical, so a wrong backward cannot widen its own tolerance).
            typical = (sum(num * num for _, num in pairs) / len(pairs)) ** 0.5
            for k, (ana, num) in enumerate(pairs):
                where = f"random direction {k} of {n_directions}"
                err = _compare(name, i, x.shape, where, ana, num, atol, rtol, typical)
                worst = max(worst, err)
                n_checks += 1
    return GradcheckReport(worst, n_checks)


def _unravel(j, shape):
    idx = []
    for n in reversed(shape):
        idx.append(j % n)
        j //= n
    return tuple(reversed(idx))


def _compare(name, i, shape, where, ana, num, atol, rtol, typical=0.0):
    """Relative error of one check: |ana - num| / max(|num|, typical, atol / rtol)."""
    err = abs(ana - num)
    scale = max(abs(num), typical)
    if not err <= atol + rtol * scale:  # `not <=` also catches NaN
        against = "|numerical|" if scale == abs(num) else f"{scale:.3g} (RMS over directions)"
        raise AssertionError(
            f"gradcheck failed for {name}: input {i} (shape {tuple(shape)}), {where}: "
            f"analytic gradient {ana:.10g}, numerical {num:.10g} "
            f"(difference {err:.3g} > atol {atol:g} + rtol {rtol:g} * {against})"
        )
    return err / max(scale, atol / rtol)
