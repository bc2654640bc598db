"""Lesson 01: derivatives by central differences, and why gradient checks run in float64.

Everything later in minidarts (convolutions, batch norm, a whole DARTS supernetwork) is
trusted for one reason: its backward pass agrees with a *numerical* derivative. This lesson
builds that numerical derivative and learns where it breaks.

1. Finite differences. A derivative is a limit,

       f'(x) = lim_{eps -> 0} (f(x + eps) - f(x)) / eps.

   Taylor: f(x + eps) = f(x) + eps f'(x) + eps^2/2 f''(x) + eps^3/6 f'''(x) + ...
   so the FORWARD difference (f(x + eps) - f(x)) / eps has error ~ eps/2 f''(x), while the
   CENTRAL difference

       (f(x + eps) - f(x - eps)) / (2 eps)  =  f'(x) + eps^2/6 f'''(x) + ...

   has error ~ eps^2: the even terms cancel. Halving eps halves one error and quarters
   the other.

2. Rounding. A computer stores f(x +- eps) with a relative error u (the unit roundoff:
   u = 6e-8 in float32, 1.1e-16 in float64). The difference of two nearly equal numbers
   keeps their absolute error ~ u |f|, and dividing by 2 eps blows it up:

       total error  ~  eps^2/6 |f'''|  +  u |f| / eps.

   Truncation falls with eps, rounding rises; the best eps is ~ u^(1/3) and the best
   error ~ u^(2/3): about 1e-5 .. 1e-4 in float32, but 1e-11 in float64. A gradient check
   that demands agreement to 1e-6 (minidarts.engine.gradcheck's rtol) is therefore impossible in
   float32 and easy in float64, which is why gradcheck casts every input to float64.

3. The checker. minidarts.gradcheck(fn, *inputs) runs backward() once and compares every
   gradient element with a central difference; a wrong backward raises an AssertionError
   that names the input, the element and both values. It only sees the inputs you give it,
   so they must exercise every branch of the function (here: negative numbers for abs).

Run from the repository root:  python lessons/01_derivatives.py   (figures: lessons/figures/01)
"""

import sys
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # minidarts is not pip-installed: import it from the repo

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # draw to files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import minidarts as md  # noqa: E402
from minidarts import Function  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "01"
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU


def section(title):
    print(f"\n=== {title} ===")


# %% 1. Forward and central differences of sin(x) at 1
section("1. Forward and central differences of f(x) = sin(x) at x = 1")
x0, exact = 1.0, np.cos(1.0)
print(f"exact f'(1) = cos(1) = {exact:.12f}")
print(f"{'eps':>8} | {'forward diff error':>18} | {'central diff error':>18}")
fwd_errors, cen_errors = [], []
for eps in [1e-1, 5e-2, 2.5e-2, 1.25e-2]:
    forward = (np.sin(x0 + eps) - np.sin(x0)) / eps
    central = (np.sin(x0 + eps) - np.sin(x0 - eps)) / (2 * eps)
    fwd_errors.append(abs(forward - exact))
    cen_errors.append(abs(central - exact))
    print(f"{eps:8.4f} | {fwd_errors[-1]:18.3e} | {cen_errors[-1]:18.3e}")
fwd_ratio = fwd_errors[-2] / fwd_errors[-1]
cen_ratio = cen_errors[-2] / cen_errors[-1]
print(f"halving eps divides the forward error by {fwd_ratio:.2f} (order eps^1)")
print(f"halving eps divides the central error by {cen_ratio:.2f} (order eps^2)")
assert 1.8 < fwd_ratio < 2.2, "forward differences should be first order"
assert 3.8 < cen_ratio < 4.2, "central differences should be second order"

# %% 2. float32 against float64: error of md.numerical_grad over a range of eps
section("2. float32 against float64: error of md.numerical_grad over a range of eps")
# md.numerical_grad(f, x, eps) perturbs one element of x at a time, in x's own dtype, and
# returns the central differences of the scalar f. With f(x) = sum(sin(x)) the gradient is
# cos(x) element by element, known exactly.
points = np.linspace(0.3, 2.8, 8)  # where we differentiate
true_grad = np.cos(points)
eps_values = 10.0 ** -np.arange(1, 13)  # 1e-1 ... 1e-12


def max_error(dtype, eps):
    x = points.astype(dtype)
    grad = md.numerical_grad(lambda a: np.sin(a).sum(), x, eps=eps)
    return float(np.abs(grad - true_grad).max())


errors = {
    name: np.array([max_error(dtype, eps) for eps in eps_values])
    for name, dtype in [("float32", np.float32), ("float64", np.float64)]
}
print(f"{'eps':>8} | {'float32 max error':>17} | {'float64 max error':>17}")
for k, eps in enumerate(eps_values):
    print(f"{eps:8.0e} | {errors['float32'][k]:17.3e} | {errors['float64'][k]:17.3e}")
best = {name: (eps_values[e.argmin()], e.min()) for name, e in errors.items()}
for name, (eps, err) in best.items():
    unit = np.finfo(np.float32 if name == "float32" else np.float64).eps / 2
    print(
        f"{name}: best eps {eps:.0e} gives error {err:.1e}  "
        f"(theory: eps ~ u^(1/3) = {unit ** (1 / 3):.0e}, error ~ u^(2/3) = {unit ** (2 / 3):.0e})"
    )
at_default = {name: e[list(eps_values).index(1e-6)] for name, e in errors.items()}
print(
    f"at gradcheck's eps = 1e-6: float32 error {at_default['float32']:.1e}, "
    f"float64 error {at_default['float64']:.1e}"
)
# float64 reaches far below gradcheck's rtol = 1e-6; float32 never gets there.
assert best["float64"][1] < 1e-9, best
assert best["float32"][1] > 1e-6, best
assert at_default["float64"] < 1e-8 and at_default["float32"] > 1e-3, at_default
# Too small an eps is worse, not better: rounding wins. (In float32, x + 1e-8 == x: the
# perturbation vanishes, the difference is 0 and the error is |cos(x)| itself.)
assert errors["float64"][-1] > 100 * best["float64"][1]


def forward_difference(f, x, eps):
    """(f(x + eps e_i) - f(x)) / eps for every i: the one-sided formula, for the figure."""
    grad = np.zeros(x.shape)
    for i in range(x.size):
        shifted = x.copy()
        shifted[i] += eps
        grad[i] = (f(shifted) - f(x)) / eps
    return grad


fwd64 = [
    np.abs(forward_difference(lambda a: np.sin(a).sum(), points, e) - true_grad).max()
    for e in eps_values
]
FIG_DIR.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(6.4, 4.4))
for name, style in [("float32", "o-"), ("float64", "s-")]:
    ax.loglog(eps_values, np.maximum(errors[name], 1e-17), style, label=f"central, {name}")
ax.loglog(eps_values, fwd64, "^--", color="gray", label="forward, float64")
ax.axhline(1e-6, color="red", lw=0.8, ls=":", label="gradcheck rtol 1e-6")
ax.set_xlabel("eps")
ax.set_ylabel("max |numerical - exact| over 8 points")
ax.set_title("d/dx sin(x): truncation (right) against rounding (left)")
ax.legend(fontsize=8)
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(FIG_DIR / "error_vs_eps.png", dpi=120)
plt.close(fig)
print(f"figure: {(FIG_DIR / 'error_vs_eps.png').relative_to(ROOT)}")

# %% 3. gradcheck on a correct backward: softplus
section("3. gradcheck on a correct backward: softplus(x) = log(1 + e^x)")
# A new differentiable op is a Function with forward (arrays in, array out) and backward
# (dL/dy in, dL/dx out). d/dx log(1 + e^x) = e^x / (1 + e^x) = sigmoid(x).


class Softplus(Function):
    def forward(self, x):
        self.x = x
        return np.logaddexp(0.0, x)  # log(e^0 + e^x), without overflow for large x

    def backward(self, gy):
        return (gy / (1.0 + np.exp(-self.x)),)  # gy * sigmoid(x)


class SoftplusWrong(Softplus):
    def backward(self, gy):
        return (gy * np.exp(self.x),)  # forgot to divide by (1 + e^x)


def softplus(x):
    return Softplus.apply(x)


def softplus_wrong(x):
    return SoftplusWrong.apply(x)


x = md.tensor([[-2.0, -0.5, 0.3], [1.1, 2.0, -1.3]], requires_grad=True)  # float32
report = md.gradcheck(softplus, x)
print(f"softplus: {report}  (the float32 input was checked as a float64 copy)")
assert report.max_rel_error < 1e-6 and report.n_checks == x.numel()

# %% 4. When the checker fails: a deliberately wrong backward
section("4. When the checker fails: a deliberately wrong backward")
try:
    md.gradcheck(softplus_wrong, x)
except AssertionError as err:
    message = str(err)
    print(f"caught, as it should be:\n  {message}")
else:
    raise AssertionError("gradcheck accepted a wrong backward")
assert "softplus_wrong" in message and "input 0" in message

# A backward can also be wrong only on part of its domain. |x| has derivative sign(x);
# a backward that returns 1 everywhere is right for x > 0 and wrong for x < 0.


class AbsWrong(Function):
    def forward(self, x):
        return np.abs(x)

    def backward(self, gy):
        return (gy,)  # should be gy * sign(x)


def abs_wrong(x):
    return AbsWrong.apply(x)


positive = md.tensor([0.5, 1.0, 2.0, 3.0], requires_grad=True)
mixed = md.tensor([0.5, -1.0, 2.0, -3.0], requires_grad=True)
md.gradcheck(abs_wrong, positive)
print("abs_wrong on positive inputs only: gradcheck PASSES - the bug is never exercised")
try:
    md.gradcheck(abs_wrong, mixed)
except AssertionError as err:
    print(f"abs_wrong on mixed signs: caught\n  {err}")
else:
    raise AssertionError("gradcheck missed the wrong sign for negative inputs")
print("moral: check on inputs that reach every branch, and keep them away from kinks (x = 0)")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 1, drop the 2 of the central difference: (sin(x0 + eps) - sin(x0 - eps)) / eps.
#    Expect the error to stop shrinking with eps and to stay near cos(1) (the quotient tends to
#    twice f'(1)), so the order-of-convergence assert fails.
#
# 2. In section 2, extend eps_values down to 1e-15 (np.arange(1, 16)). Expect the float64 error
#    to keep climbing as u / eps, until near eps = 1e-15 it is as large as a good fraction of the
#    derivative itself: rounding, not truncation, rules the left of the plot.
#
# 3. In section 4, give AbsWrong the right backward (gy * np.sign(self.x)) and put 1e-7 into
#    `mixed`. Expect gradcheck to fail at that element although the backward is right: within
#    gradcheck's eps = 1e-6 of the kink at 0 the central difference straddles it and returns
#    about a tenth of the slope. Lesson 11 meets the same effect in second-order DARTS.

# %%
print("\nlesson 01: all checks passed")
