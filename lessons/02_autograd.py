"""Lesson 02: a Tensor and reverse-mode autograd on a small graph, by hand and by the library.

Take three numbers a, b, c and

    f = (a*b + exp(a)) * c.

Name every intermediate result; the computation is then a graph (a DAG) of simple steps:

    u = a * b          a --+--> [*] u --+
    v = exp(a)         b --'            +--> [+] s --+
    s = u + v          a --> [exp] v ---+            +--> [*] f
    f = s * c          c ----------------------------+

The chain rule says how a change in an input travels to f. Reverse mode starts at the
end, where df/df = 1, and walks the graph backwards, multiplying by each step's local
derivative:

    df/ds = c                    (f = s * c)
    df/dc = s
    df/du = df/ds * 1            (s = u + v)
    df/dv = df/ds * 1
    df/db = df/du * a            (u = a * b)
    df/da = df/du * b  +  df/dv * exp(a)        (v = exp(a), dv/da = exp(a))

a is used twice (in u and in v), so its gradient is the SUM over the two paths: the
multivariate chain rule. Altogether

    df/da = c (b + e^a),   df/db = c a,   df/dc = a b + e^a.

One backward sweep gives the derivative with respect to EVERY input, at a cost of a small
multiple of the forward pass; that is why training (one loss, millions of weights) uses
reverse mode. minidarts does exactly this: each operation on Tensors records a Function
node (`tensor._ctx`) holding its inputs and a `backward` that maps dL/d(output) to
dL/d(inputs); `f.backward()` visits the nodes in reverse topological order and sums the
gradients arriving at each tensor.

Run from the repository root:  python lessons/02_autograd.py
"""

import math
import sys
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # minidarts is not pip-installed: import it from the repo

import numpy as np  # noqa: E402

import minidarts as md  # noqa: E402

md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU


def section(title):
    print(f"\n=== {title} ===")


def close(x, y, rtol=1e-12):
    return math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=1e-15)


# %% 1. Forward pass by hand (plain Python floats)
section("1. Forward pass by hand (plain Python floats)")
a, b, c = 0.5, -1.2, 2.0
u = a * b
v = math.exp(a)
s = u + v
f = s * c
print(f"a = {a}, b = {b}, c = {c}")
print(f"u = a*b = {u:.6f},  v = exp(a) = {v:.6f},  s = u + v = {s:.6f},  f = s*c = {f:.6f}")

# %% 2. Backward pass by hand: the chain rule, from f back to the inputs
section("2. Backward pass by hand: the chain rule, from f back to the inputs")
df_df = 1.0
df_ds = df_df * c
df_dc = df_df * s
df_du = df_ds * 1.0
df_dv = df_ds * 1.0
df_db = df_du * a
df_da = df_du * b + df_dv * math.exp(a)  # two paths into a: add them
by_hand = {"a": df_da, "b": df_db, "c": df_dc}
print(f"df/ds = c = {df_ds:.6f},  df/du = df/dv = {df_du:.6f}")
print(f"df/da = df/du*b + df/dv*exp(a) = {df_da:.6f}")
print(f"df/db = df/du*a = {df_db:.6f},  df/dc = s = {df_dc:.6f}")
closed_form = {"a": c * (b + math.exp(a)), "b": c * a, "c": a * b + math.exp(a)}
for name in "abc":
    assert close(by_hand[name], closed_form[name]), name
print("the sweep agrees with the closed forms c(b + e^a), c a, a b + e^a")

# %% 3. The same with minidarts Tensors: f.backward()
section("3. The same with minidarts Tensors: f.backward()")
# float64 so that the comparison can be tight; requires_grad marks the leaves we want
# gradients for.
ta = md.tensor(a, requires_grad=True, dtype=np.float64)
tb = md.tensor(b, requires_grad=True, dtype=np.float64)
tc = md.tensor(c, requires_grad=True, dtype=np.float64)
tu = (ta * tb).retain_grad()  # intermediates keep .grad only when asked
tv = md.exp(ta).retain_grad()
ts = (tu + tv).retain_grad()
tf = ts * tc
tf.backward()
print(f"f = {tf.item():.6f}")
print(f"{'':>8} | {'by hand':>12} | {'library':>12}")
rows = [("df/da", df_da, ta), ("df/db", df_db, tb), ("df/dc", df_dc, tc)]
rows += [("df/du", df_du, tu), ("df/dv", df_dv, tv), ("df/ds", df_ds, ts)]
for label, hand, t in rows:
    print(f"{label:>8} | {hand:12.8f} | {t.grad.item():12.8f}")
    assert close(hand, t.grad.item()), label
assert close(tf.item(), f)

# %% 4. The graph the library recorded
section("4. The graph the library recorded")
# Each non-leaf tensor remembers the Function that made it (tensor._ctx) and that
# Function remembers its input tensors (fn.inputs). Walking those links is the graph.
names = {id(t): n for n, t in [("a", ta), ("b", tb), ("c", tc), ("u", tu), ("v", tv)]}
names.update({id(ts): "s", id(tf): "f"})


def show(t, depth=0):
    pad = "    " * depth
    if t.is_leaf:
        print(f"{pad}{names[id(t)]}  (leaf, value {t.item():.4f})")
        return
    fn = t._ctx
    args = ", ".join(names[id(i)] for i in fn.inputs)
    print(f"{pad}{names[id(t)]} = {type(fn).__name__}({args})")
    for i in fn.inputs:
        show(i, depth + 1)


show(tf)

# %% 5. Reverse mode, step by step: our own backward() over the recorded graph
section("5. Reverse mode, step by step: our own backward() over the recorded graph")
# This is what Tensor.backward does, in a dozen lines: order the nodes so every tensor
# comes after its inputs, then walk that order backwards, asking each Function for the
# gradients of its inputs and summing what arrives at each tensor.


def topological_order(root):
    order, seen = [], set()

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        if not t.is_leaf:
            for i in t._ctx.inputs:
                visit(i)
        order.append(t)

    visit(root)
    return order


def my_backward(root):
    grads = {id(root): np.ones_like(root.data)}  # df/df = 1
    for t in reversed(topological_order(root)):
        g = grads[id(t)]
        print(f"  at {names[id(t)]}: df/d{names[id(t)]} = {float(g):+.6f}")
        if t.is_leaf:
            continue
        for inp, gi in zip(t._ctx.inputs, t._ctx.backward(g)):
            grads[id(inp)] = grads.get(id(inp), 0.0) + gi  # the sum over paths
    return grads


mine = my_backward(tf)
for label, t in [("a", ta), ("b", tb), ("c", tc)]:
    assert close(mine[id(t)], t.grad.item()), label
print("our sweep gives the library's gradients (a was visited once, after both its uses)")

# %% 6. Vectors, accumulation and no_grad
section("6. Vectors, accumulation and no_grad")
rng = np.random.default_rng(0)
va, vb, vc = (
    md.tensor(rng.standard_normal(5), requires_grad=True, dtype=np.float32) for _ in range(3)
)
loss = ((va * vb + md.exp(va)) * vc).sum()  # the same f per element, summed
loss.backward()
ea, eb, ec = (t.numpy().astype(np.float64) for t in (va, vb, vc))
np.testing.assert_allclose(va.grad, ec * (eb + np.exp(ea)), rtol=1e-5)
np.testing.assert_allclose(vb.grad, ec * ea, rtol=1e-5)
np.testing.assert_allclose(vc.grad, ea * eb + np.exp(ea), rtol=1e-5)
assert va.grad.dtype == np.float32  # float32 in, float32 gradients out
print(f"float32 vectors of 5: gradients match the closed forms (dtype {va.grad.dtype})")

first = va.grad.copy()
((va * vb + md.exp(va)) * vc).sum().backward()  # a second backward ADDS to .grad
np.testing.assert_allclose(va.grad, 2 * first, rtol=1e-6)
print(".grad accumulates over backward() calls: after two, it is twice the gradient")
va.zero_grad()
assert va.grad is None
print("zero_grad() clears it (optimisers do this before every step)")

with md.no_grad():
    y = (va * vb).sum()
assert not y.requires_grad and y.is_leaf
print("inside md.no_grad() nothing is recorded: y has no graph, y.requires_grad = False")

# %% 7. gradcheck: the library's backward against central differences
section("7. gradcheck: the library's backward against central differences")


def f_of(a, b, c):
    return (a * b + md.exp(a)) * c


report = md.gradcheck(f_of, va, vb, vc)
print(f"f(a, b, c) on vectors of 5: {report}")
assert report.n_checks == 15 and report.max_rel_error < 1e-6

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. Give a a third use: f = (a*b + exp(a) + a*a) * c. Expect df/da = c (b + e^a + 2a) (update
#    the sweep of section 2 and closed_form); section 4's graph shows a under three Functions,
#    and section 5's sweep still reaches a once, after all its uses have been added up.
#
# 2. Remove .retain_grad() from tu in section 3. Expect tu.grad to be None after backward (the
#    table fails on it): the library keeps gradients of intermediate tensors only when asked.
#
# 3. In section 6, call backward twice without zero_grad and then take a gradient step by hand.
#    Expect a step twice as long as intended: this is why every optimiser step starts with
#    zero_grad().

# %%
print("\nlesson 02: all checks passed")
