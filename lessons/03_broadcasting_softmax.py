"""Lesson 03: broadcasting, matrix products, softmax and cross-entropy, and their gradients.

1. Broadcasting. x of shape (2, 3, 4) plus b of shape (3, 1): NumPy stretches b to
   (2, 3, 4), so every b[i, 0] is USED 2 * 4 times. The chain rule sums over uses, so

       dL/db[i, 0] = sum over n, k of dL/dy[n, i, k]

   i.e. the upstream gradient summed over the axes that b was broadcast along (the new
   leading axis, and every axis where b has size 1). minidarts calls this `unbroadcast`.

2. Matrix product Y = X W, X (N, D), W (D, K). Y[n, k] = sum_d X[n, d] W[d, k], so with
   G = dL/dY

       dL/dX = G W^T   (N, K)(K, D) -> (N, D),      dL/dW = X^T G   (D, N)(N, K) -> (D, K).

   The shapes alone almost force the formulas. A W shared by a batch of products (X of
   shape (B, N, D)) is broadcast: its gradient is summed over the batch.

3. Softmax p_i = e^{z_i} / sum_j e^{z_j}. Its Jacobian is

       dp_i/dz_j = p_i (delta_ij - p_j),    J = diag(p) - p p^T,

   and backward never forms J: for an upstream g = dL/dp,

       dL/dz = J^T g = p * (g - <g, p>).

   Subtracting max(z) first changes nothing (numerator and denominator both get e^{-m})
   and keeps e^z from overflowing.

4. Cross-entropy of logits z against the class t:

       L = -log p_t = -z_t + log sum_j e^{z_j},   dL/dz_j = p_j - [j = t],

   i.e. dCE/dlogits = softmax(z) - onehot(t): the predicted distribution minus the true
   one. For a batch the loss is the mean, so each row's gradient is divided by N. For a
   linear classifier z = x W^T + b this gives dL/dW = (P - Y)^T X / N, dL/db = mean(P - Y).

Run from the repository root:  python lessons/03_broadcasting_softmax.py
"""

import sys
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # minidarts is not pip-installed: import it from the repo

import numpy as np  # noqa: E402

import minidarts as md  # noqa: E402
import minidarts.nn.functional as F  # noqa: E402
from minidarts.engine.ops import unbroadcast  # noqa: E402

md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU
rng = np.random.default_rng(3)


def section(title):
    print(f"\n=== {title} ===")


def leaf(*shape):
    """A float64 leaf tensor of standard normal values that wants a gradient."""
    return md.tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)


def same(a, b, rtol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-14)


# %% 1. Broadcasting: the gradient of a stretched tensor is a sum
section("1. Broadcasting: the gradient of a stretched tensor is a sum")
x, b = leaf(2, 3, 4), leaf(3, 1)
y = x + b  # b is stretched to (2, 3, 4)
g = rng.standard_normal(y.shape)  # some upstream gradient dL/dy
y.backward(g)
by_hand = g.sum(axis=0).sum(axis=1, keepdims=True)  # over the new axis and b's size-1 axis
print(f"x {x.shape} + b {b.shape} -> y {y.shape}; each b[i, 0] is used 2 * 4 = 8 times")
print(f"dL/db by hand (sum over axes 0 and 2):   {by_hand.ravel().round(4)}")
print(f"dL/db from the library:                  {b.grad.ravel().round(4)}")
same(b.grad, by_hand)
same(unbroadcast(g, (3, 1)), by_hand)
same(x.grad, g)  # x was not stretched: its gradient passes straight through
print("a bias of shape (4,) on a batch (N, 4) is the same rule: its gradient is dL/dy.sum(0)")
bias, h = leaf(4), leaf(5, 4)
g_out = rng.standard_normal((5, 4))
(h + bias).backward(g_out)
same(bias.grad, g_out.sum(axis=0))


def bcast(x, b):
    return x * b + b


print(f"gradcheck x * b + b: {md.gradcheck(bcast, leaf(2, 3, 4), leaf(3, 1))}")

# %% 2. Matrix products: the gradients dX and dW
section("2. Matrix products: dX = G W^T, dW = X^T G")
X, W = leaf(5, 3), leaf(3, 2)
Y = X @ W
G = rng.standard_normal(Y.shape)
Y.backward(G)
print(f"X {X.shape} @ W {W.shape} = Y {Y.shape}; G = dL/dY {G.shape}")
print(f"G @ W^T has shape {(G @ W.numpy().T).shape} = X's;  X^T @ G has {(X.numpy().T @ G).shape}")
same(X.grad, G @ W.numpy().T)
same(W.grad, X.numpy().T @ G)

Xb, Wshared = leaf(4, 5, 3), leaf(3, 2)  # 4 products sharing one W
Yb = Xb @ Wshared
Gb = rng.standard_normal(Yb.shape)
Yb.backward(Gb)
dW = sum(Xb.numpy()[i].T @ Gb[i] for i in range(4))  # one term per use of W
same(Wshared.grad, dW)
print("batched (4, 5, 3) @ (3, 2): the shared W's gradient is the sum of the 4 X_i^T G_i")


def mm(a, w):
    return a @ w


print(f"gradcheck X @ W:           {md.gradcheck(mm, leaf(5, 3), leaf(3, 2))}")
print(f"gradcheck batched, shared: {md.gradcheck(mm, leaf(4, 5, 3), leaf(3, 2))}")

# %% 3. Softmax: the Jacobian diag(p) - p p^T, and backward without it
section("3. Softmax: the Jacobian diag(p) - p p^T, and backward without it")
z = leaf(4)
p = F.softmax(z, dim=0)
pv = p.numpy()
J = np.diag(pv) - np.outer(pv, pv)  # J[i, j] = dp_i / dz_j
print(f"z = {z.numpy().round(3)}\np = softmax(z) = {pv.round(4)}  (sums to {pv.sum():.12f})")
# Row i of J is the gradient of p_i: one backward with the upstream gradient e_i.
J_lib = np.zeros((4, 4))
for i in range(4):
    z.zero_grad()
    p = F.softmax(z, dim=0)
    p.backward(np.eye(4)[i])
    J_lib[i] = z.grad
print("Jacobian by hand (rows = outputs p_i, columns = inputs z_j):")
print(np.array2string(J, precision=4, suppress_small=True))
same(J_lib, J)
print("the library's backward, fed e_0 .. e_3, reproduces it row by row")
g = rng.standard_normal(4)
same(J.T @ g, pv * (g - (g * pv).sum()))
print("and J^T g = p * (g - <g, p>): backward needs O(n), not the n x n matrix")

big = np.array([1000.0, 1001.0, 1002.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum()
stable = F.softmax(md.tensor(big), dim=0).numpy()
print(f"logits {big}: naive exp(z)/sum -> {naive} (overflow); library -> {stable.round(4)}")
assert np.isnan(naive).all() and np.isfinite(stable).all()
same(stable, F.softmax(md.tensor(big - 1000.0), dim=0).numpy())


def softmax_rows(t):
    return F.softmax(t, dim=1)


print(f"gradcheck softmax over rows of a (3, 5): {md.gradcheck(softmax_rows, leaf(3, 5))}")

# %% 4. Cross-entropy: dCE/dlogits is softmax minus onehot
section("4. Cross-entropy: dCE/dlogits = softmax - onehot")
N, K = 6, 4
logits = leaf(N, K)
target = md.tensor(rng.integers(0, K, size=N))
loss = F.cross_entropy(logits, target)
loss.backward()
P = F.softmax(logits, dim=1).numpy()
onehot = np.eye(K)[target.numpy()]
by_hand = (P - onehot) / N  # the mean over N rows divides by N
print(f"targets {target.numpy()}; loss = {loss.item():.6f}")
print(f"row 0: softmax {P[0].round(4)} - onehot {onehot[0]} = {(P[0] - onehot[0]).round(4)}")
same(logits.grad, by_hand)
same(loss.item(), -np.log(P[np.arange(N), target.numpy()]).mean())
print("library gradient = (softmax - onehot) / N")

# The fused op against the same loss composed from log_softmax and indexing: the
# chain rule through the pieces must give the same gradient.
composed = leaf(N, K)
composed.data[...] = logits.data
(-F.log_softmax(composed, dim=1)[np.arange(N), target.numpy()]).mean().backward()
same(composed.grad, logits.grad)
print("-log_softmax(z)[t] averaged, built from pieces, gives the same gradient")


def ce(t):
    return F.cross_entropy(t, target)


print(f"gradcheck cross_entropy: {md.gradcheck(ce, leaf(N, K))}")

# %% 5. All together: a linear classifier, gradients by hand, a few descent steps
section("5. All together: a linear classifier, gradients by hand, a few descent steps")
# Three Gaussian blobs in 2-D, z = x W^T + b (F.linear's convention: W is (K, D)).
centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
labels = rng.integers(0, 3, size=60)
points = centres[labels] + 0.5 * rng.standard_normal((60, 2))
xs, ys = md.tensor(points, dtype=np.float64), md.tensor(labels)
Wc = md.tensor(np.zeros((3, 2)), requires_grad=True)
bc = md.tensor(np.zeros(3), requires_grad=True)

loss = F.cross_entropy(F.linear(xs, Wc, bc), ys)
loss.backward()
residual = (F.softmax(F.linear(xs, Wc, bc), dim=1).numpy() - np.eye(3)[labels]) / 60
same(Wc.grad, residual.T @ points)
same(bc.grad, residual.sum(axis=0))
print("dL/dW = (P - Y)^T X / N and dL/db = mean(P - Y), as the library computes")

losses = [loss.item()]
for _ in range(30):
    Wc.zero_grad()
    bc.zero_grad()
    loss = F.cross_entropy(F.linear(xs, Wc, bc), ys)
    loss.backward()
    Wc.data -= 0.5 * Wc.grad  # plain gradient descent
    bc.data -= 0.5 * bc.grad
    losses.append(loss.item())
with md.no_grad():
    accuracy = (F.linear(xs, Wc, bc).argmax(dim=1).numpy() == labels).mean()
print(f"loss {losses[0]:.4f} (= log 3 = {np.log(3):.4f}) -> {losses[-1]:.4f} after 30 steps")
print(f"training accuracy {accuracy:.2f}")
assert abs(losses[0] - np.log(3)) < 1e-12 and losses[-1] < 0.3 * losses[0] and accuracy > 0.9


def classifier(x, w, b):
    return F.cross_entropy(F.linear(x, w, b), ys)


print(f"gradcheck linear + cross_entropy: {md.gradcheck(classifier, xs, Wc, bc)}")

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. In section 1, give b the shape (1, 3, 1) instead of (3, 1). Expect the library's b.grad to
#    keep that shape and to equal g.sum(axis=(0, 2), keepdims=True); the by-hand line, written
#    for (3, 1), must change.
#
# 2. In section 4, multiply the logits by 1000 before the loss (logits.data *= 1000). Expect a
#    finite loss (the library works with log-sum-exp) and gradient rows that are exactly 0 where
#    the target already has the largest logit: softmax - onehot with a one-hot softmax.
#
# 3. In section 5, put the third blob on the second (centres[2] = centres[1]). Expect the
#    training accuracy to fall well below 0.9, since two classes now share one blob and no linear
#    classifier tells them apart; the accuracy assert fails.

# %%
print("\nlesson 03: all checks passed")
