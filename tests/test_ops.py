"""Every op of the engine, against plain NumPy and against central differences.

One table, OPS, drives three tests on every device:

- test_forward_matches_numpy: the float64 forward equals a NumPy/SciPy reference;
- test_gradcheck: minidarts.engine.gradcheck (float64, default tolerances: relative error
  <= 1e-6) accepts the backward;
- test_float32_stays_float32: float32 inputs give float32 outputs and gradients,
  finite, close to the reference.

A row is  op(name, fn, ref, shapes, make=...):  `fn` takes minidarts Tensors, `ref`
takes NumPy arrays, `shapes` has one shape per input, `make` optionally one input
maker per input (default `distinct`). To test a new op, add one line.
"""

import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import scipy.special

import minidarts as md
import minidarts.nn.functional as F
from minidarts.engine.gradcheck import numerical_grad

# --- input makers: (rng, shape) -> numpy array ----------------------------------------


def distinct(rng, shape):
    """Values in about [-2, 2], pairwise at least 0.6 * (4 / size) apart and none near 0,
    in random order: no ties for max, no kink of relu, every element distinguishable."""
    n = int(np.prod(shape, dtype=np.int64))
    step = 4.0 / max(n, 1)
    v = (rng.permutation(n) - (n - 1) / 2) * step + rng.uniform(0.2, 0.4, n) * step
    return v.reshape(shape)


def positive(rng, shape):
    """Uniform in [0.5, 2]: away from the singularities of log, sqrt, 1/x, x**-p."""
    return rng.uniform(0.5, 2.0, shape)


def shifted(offset):
    """distinct + offset, e.g. logits near 1000 where a naive exp overflows."""
    return lambda rng, shape: distinct(rng, shape) + offset


def scaled(factor):
    """distinct * factor, e.g. logits spread over [-2000, 2000]."""
    return lambda rng, shape: distinct(rng, shape) * factor


def targets(num_classes):
    """Integer class indices in [0, num_classes), int64."""
    return lambda rng, shape: rng.integers(0, num_classes, shape).astype(np.int64)


class Op(NamedTuple):
    name: str
    fn: Callable  # Tensors -> Tensor
    ref: Callable  # numpy arrays -> numpy array
    shapes: tuple  # one shape per input
    make: tuple  # one maker per input


def op(name, fn, ref, shapes, make=()):
    """One table row. `fn` is renamed to `name` so gradcheck's messages name the op."""
    fn.__name__ = name
    make = tuple(make) + (distinct,) * (len(shapes) - len(make))
    return Op(name, fn, ref, tuple(tuple(s) for s in shapes), make)


def on(x, data):
    """A constant (index, mask) on the device of tensor x."""
    return md.tensor(np.asarray(data), device=x.device)


def log_softmax_np(a, axis):
    return scipy.special.log_softmax(a, axis=axis)


def cross_entropy_np(z, t):
    return -np.mean(log_softmax_np(z, 1)[np.arange(len(t)), t])


# PyTorch's losses by their documented formulas, per sample (or element), then reduced
REDUCE_NP = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}


def ce_np(reduction):
    """loss_n = log sum_c e^z[n, c] - z[n, t_n]."""
    return lambda z, t: REDUCE_NP[reduction](
        scipy.special.logsumexp(z, axis=1) - z[np.arange(len(t)), t]
    )


def nll_np(reduction):
    """loss_n = -x[n, t_n]."""
    return lambda x, t: REDUCE_NP[reduction](-x[np.arange(len(t)), t])


def mse_np(reduction):
    """loss_i = (x_i - y_i)^2."""
    return lambda x, y: REDUCE_NP[reduction]((x - y) ** 2)


def dropout_np(p, seed):
    """x * [u < 1 - p] / (1 - p), u ~ U[0, 1) from default_rng(seed)."""
    return lambda x: x * (np.random.default_rng(seed).random(x.shape) < 1 - p) / (1 - p)


MASK = np.array(
    [[True, False, True, False], [False, False, True, True], [True, True, False, False]]
)
P = positive
T5 = targets(5)

# fmt: off
OPS = [
    # --- arithmetic, with broadcasting and Python numbers on either side -------------------
    op("add", lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (3, 4)]),
    op("add_bcast_3x1_1x4", lambda a, b: a + b, lambda a, b: a + b, [(3, 1), (1, 4)]),
    op("add_bcast_234_4", lambda a, b: a + b, lambda a, b: a + b, [(2, 3, 4), (4,)]),
    op("add_bcast_0d", lambda a, b: a + b, lambda a, b: a + b, [(), (3, 4)]),
    op("add_number_right", lambda x: x + 1.5, lambda x: x + 1.5, [(3, 4)]),
    op("add_number_left", lambda x: 2 + x, lambda x: 2 + x, [(3, 4)]),
    op("sub", lambda a, b: a - b, lambda a, b: a - b, [(3, 4), (3, 4)]),
    op("sub_bcast_3x1_1x4", lambda a, b: a - b, lambda a, b: a - b, [(3, 1), (1, 4)]),
    op("sub_bcast_4_234", lambda a, b: a - b, lambda a, b: a - b, [(4,), (2, 3, 4)]),
    op("sub_number_left", lambda x: 2 - x, lambda x: 2 - x, [(3, 4)]),
    op("sub_number_right", lambda x: x - 2, lambda x: x - 2, [(3, 4)]),
    op("mul", lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 4)]),
    op("mul_bcast_3x1_1x4", lambda a, b: a * b, lambda a, b: a * b, [(3, 1), (1, 4)]),
    op("mul_bcast_234_4", lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (4,)]),
    op("mul_bcast_234_31", lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (3, 1)]),
    op("mul_number_left", lambda x: 3 * x, lambda x: 3 * x, [(3, 4)]),
    op("div", lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (3, 4)], [distinct, P]),
    op("div_bcast_3x1_1x4", lambda a, b: a / b, lambda a, b: a / b, [(3, 1), (1, 4)], [P, P]),
    op("div_bcast_234_4", lambda a, b: a / b, lambda a, b: a / b, [(2, 3, 4), (4,)], [P, P]),
    op("div_number_left", lambda x: 1 / x, lambda x: 1 / x, [(3, 4)], [P]),
    op("div_number_right", lambda x: x / 3, lambda x: x / 3, [(3, 4)]),
    op("neg", lambda x: -x, lambda x: -x, [(3, 4)]),
    op("pow_int", lambda x: x**3, lambda x: x**3, [(3, 4)]),
    op("pow_half", lambda x: x**0.5, lambda x: x**0.5, [(3, 4)], [P]),
    op("pow_negative", lambda x: x**-1.5, lambda x: x**-1.5, [(3, 4)], [P]),
    op("pow_tensor", lambda a, b: a**b, lambda a, b: a**b, [(3, 4), (3, 4)], [P]),
    op("pow_tensor_bcast", lambda a, b: a**b, lambda a, b: a**b, [(3, 1), (4,)], [P]),
    op("pow_number_base", lambda x: 2**x, lambda x: 2**x, [(3, 4)]),
    op("exp", md.exp, np.exp, [(3, 4)]),
    op("log", md.log, np.log, [(3, 4)], [P]),
    op("sqrt", md.sqrt, np.sqrt, [(3, 4)], [P]),
    # --- matmul ---------------------------------------------------------------------------
    op("matmul_2d", lambda a, b: a @ b, np.matmul, [(3, 4), (4, 5)]),
    op("matmul_batched_3d", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (2, 4, 5)]),
    op("matmul_bcast_batch", lambda a, b: a @ b, np.matmul, [(2, 1, 3, 4), (5, 4, 2)]),
    op("matmul_3d_2d", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4, 5)]),
    op("matmul_vec_mat", lambda a, b: a @ b, np.matmul, [(4,), (4, 5)]),
    op("matmul_mat_vec", lambda a, b: a @ b, np.matmul, [(3, 4), (4,)]),
    op("matmul_vec_vec", lambda a, b: a @ b, np.matmul, [(4,), (4,)]),
    op("matmul_vec_batched", lambda a, b: a @ b, np.matmul, [(4,), (2, 4, 3)]),
    op("matmul_batched_vec", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4,)]),
    op("matmul_big_random_directions", md.matmul, np.matmul, [(30, 40), (40, 5)]),
    # --- reductions: sum / mean / max rows are generated below -----------------------------
    # --- shapes ---------------------------------------------------------------------------
    op("reshape_minus1_first", lambda x: x.reshape(-1, 6), lambda x: x.reshape(-1, 6), [(2, 3, 4)]),
    op("reshape_minus1_last", lambda x: x.reshape((4, -1)), lambda x: x.reshape(4, -1),
       [(2, 3, 4)]),
    op("reshape_flat", lambda x: md.reshape(x, 24), lambda x: x.reshape(24), [(2, 3, 4)]),
    op("flatten_1", lambda x: x.flatten(1), lambda x: x.reshape(2, -1), [(2, 3, 4)]),
    op("transpose_0_2", lambda x: x.transpose(0, 2), lambda x: x.swapaxes(0, 2), [(2, 3, 4)]),
    op("transpose_neg", lambda x: md.transpose(x, -1, -2), lambda x: x.swapaxes(-1, -2),
       [(2, 3, 4)]),
    op("transpose_T", lambda x: x.T, lambda x: x.T, [(3, 4)]),
    op("permute_201", lambda x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1), [(2, 3, 4)]),
    op("permute_neg", lambda x: md.permute(x, (-1, 0, 1)), lambda x: x.transpose(2, 0, 1),
       [(2, 3, 4)]),
    # --- indexing and slicing ---------------------------------------------------------------
    op("index_int", lambda x: x[1], lambda x: x[1], [(3, 4)]),
    op("index_negative_ints", lambda x: x[-1, -2], lambda x: x[-1, -2], [(3, 4)]),
    op("slice_basic", lambda x: x[1:, :3], lambda x: x[1:, :3], [(3, 4)]),
    op("slice_negative_steps", lambda x: x[::-1, ::-2], lambda x: x[::-1, ::-2], [(3, 4)]),
    op("slice_3d_mixed", lambda x: x[:, 1::2, ::-1], lambda x: x[:, 1::2, ::-1], [(2, 4, 3)]),
    op("index_ellipsis_none", lambda x: x[..., None, 1], lambda x: x[..., None, 1], [(2, 3, 4)]),
    op("index_array_repeated", lambda x: x[on(x, [0, 2, 2, 1, 0])], lambda x: x[[0, 2, 2, 1, 0]],
       [(3, 4)]),
    op("index_list_repeated", lambda x: x[[2, 2, 0]], lambda x: x[[2, 2, 0]], [(3, 4)]),
    op("index_pairs_repeated", lambda x: x[on(x, [0, 0, 2, 1]), on(x, [1, 1, 3, 1])],
       lambda x: x[[0, 0, 2, 1], [1, 1, 3, 1]], [(3, 4)]),
    op("index_array_and_slice", lambda x: x[1:, on(x, [3, 0, 3])], lambda x: x[1:, [3, 0, 3]],
       [(3, 4)]),
    op("index_bool_mask", lambda x: x[on(x, MASK)], lambda x: x[MASK], [(3, 4)]),
    op("index_bool_rows", lambda x: x[on(x, [True, False, True])], lambda x: x[[True, False, True]],
       [(3, 4)]),
    # --- cat, stack, pad ----------------------------------------------------------------------
    op("cat_dim0", lambda a, b: md.cat([a, b]), lambda a, b: np.concatenate([a, b]),
       [(2, 3), (4, 3)]),
    op("cat_dim0_same_sizes", lambda a, b: md.cat((a, b), 0), lambda a, b: np.concatenate([a, b]),
       [(2, 3), (2, 3)]),
    op("cat_dim1", lambda a, b: md.cat([a, b], dim=1), lambda a, b: np.concatenate([a, b], 1),
       [(2, 3), (2, 5)]),
    op("cat_dim_neg_3_inputs", lambda a, b, c: md.cat([a, b, c], dim=-1),
       lambda a, b, c: np.concatenate([a, b, c], -1), [(2, 3, 1), (2, 3, 2), (2, 3, 4)]),
    op("stack_dim0", lambda a, b: md.stack([a, b]), lambda a, b: np.stack([a, b]),
       [(2, 3), (2, 3)]),
    op("stack_dim1_3_inputs", lambda a, b, c: md.stack([a, b, c], dim=1),
       lambda a, b, c: np.stack([a, b, c], 1), [(2, 3), (2, 3), (2, 3)]),
    op("stack_dim_neg", lambda a, b: md.stack([a, b], dim=-1), lambda a, b: np.stack([a, b], -1),
       [(2, 3), (2, 3)]),
    op("pad_last_dim", lambda x: F.pad(x, (1, 2)), lambda x: np.pad(x, [(0, 0), (1, 2)]),
       [(2, 3)]),
    op("pad_last_two_dims", lambda x: F.pad(x, (1, 1, 2, 0)),
       lambda x: np.pad(x, [(0, 0), (2, 0), (1, 1)]), [(2, 3, 4)]),
    op("pad_three_dims_value", lambda x: F.pad(x, (0, 1, 1, 0, 2, 1), value=0.5),
       lambda x: np.pad(x, [(2, 1), (1, 0), (0, 1)], constant_values=0.5), [(2, 3, 4)]),
    # --- activations ----------------------------------------------------------------------------
    op("relu", F.relu, lambda x: np.maximum(x, 0), [(3, 4)]),
    op("relu_method", lambda x: x.relu(), lambda x: np.maximum(x, 0), [(2, 3, 4)]),
    op("sigmoid", F.sigmoid, scipy.special.expit, [(3, 4)]),
    op("sigmoid_wide", F.sigmoid, scipy.special.expit, [(3, 4)], [scaled(20)]),
    op("tanh", F.tanh, np.tanh, [(3, 4)]),
    # --- softmax, log_softmax, cross_entropy (large inputs: no overflow) -------------------------
    op("softmax_dim0", lambda x: F.softmax(x, 0), lambda x: scipy.special.softmax(x, 0),
       [(2, 3, 4)]),
    op("softmax_dim1", lambda x: F.softmax(x, dim=1), lambda x: scipy.special.softmax(x, 1),
       [(2, 3, 4)]),
    op("softmax_dim_neg", lambda x: x.softmax(-1), lambda x: scipy.special.softmax(x, -1),
       [(2, 3, 4)]),
    op("softmax_near_1000", lambda x: F.softmax(x, -1), lambda x: scipy.special.softmax(x, -1),
       [(3, 5)], [shifted(1000)]),
    op("softmax_spread_1000", lambda x: F.softmax(x, 0), lambda x: scipy.special.softmax(x, 0),
       [(3, 5)], [scaled(1000)]),
    op("log_softmax_dim0", lambda x: F.log_softmax(x, 0), lambda x: log_softmax_np(x, 0),
       [(2, 3, 4)]),
    op("log_softmax_dim1", lambda x: F.log_softmax(x, 1), lambda x: log_softmax_np(x, 1),
       [(2, 3, 4)]),
    op("log_softmax_dim_neg", lambda x: x.log_softmax(-1), lambda x: log_softmax_np(x, -1),
       [(2, 3, 4)]),
    op("log_softmax_near_1000", lambda x: F.log_softmax(x, -1), lambda x: log_softmax_np(x, -1),
       [(3, 5)], [shifted(1000)]),
    op("log_softmax_near_minus_1000", lambda x: F.log_softmax(x, -1),
       lambda x: log_softmax_np(x, -1), [(3, 5)], [shifted(-1000)]),
    # log_softmax / cross_entropy of logits spread over +-1000 have outputs of size ~1000, whose
    # rounding (1e-13) swamps central differences at eps = 1e-6: see test_huge_logits_spread.
    op("cross_entropy", F.cross_entropy, cross_entropy_np, [(6, 5), (6,)], [distinct, T5]),
    op("cross_entropy_near_1000", F.cross_entropy, cross_entropy_np, [(6, 5), (6,)],
       [shifted(1000), T5]),
    # --- the losses with reduction= (PyTorch's formulas; the fused mean is the row above) ---------
    *[op(f"loss_cross_entropy_{r}", lambda z, t, r=r: F.cross_entropy(z, t, reduction=r),
         ce_np(r), [(6, 5), (6,)], [distinct, T5]) for r in ("sum", "none")],
    *[op(f"loss_nll_{r}", lambda x, t, r=r: F.nll_loss(x, t, reduction=r), nll_np(r),
         [(6, 5), (6,)], [distinct, T5]) for r in ("mean", "sum", "none")],
    *[op(f"loss_mse_{r}", lambda x, y, r=r: F.mse_loss(x, y, reduction=r), mse_np(r),
         [(3, 4), (3, 4)]) for r in ("mean", "sum", "none")],
    # --- dropout, its mask drawn from a fresh generator at each call ----------------------------
    op("dropout_p0.3", lambda x: F.dropout(x, 0.3, rng=np.random.default_rng(7)),
       dropout_np(0.3, 7), [(4, 5)]),
    # --- F.linear ---------------------------------------------------------------------------------
    op("linear_bias", F.linear, lambda x, w, b: x @ w.T + b, [(5, 4), (3, 4), (3,)]),
    op("linear_no_bias", F.linear, lambda x, w: x @ w.T, [(5, 4), (3, 4)]),
    op("linear_3d_input", F.linear, lambda x, w, b: x @ w.T + b, [(2, 5, 4), (3, 4), (3,)]),
]
# fmt: on

_REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max}
for _red, _np_red in _REDUCTIONS.items():
    for _dim in (None, 1, -1, (0, 2), (-1, 0)):
        for _keep in (False, True):
            OPS.append(
                op(
                    f"{_red}_dim={_dim}_keepdim={_keep}".replace(" ", ""),
                    lambda x, r=_red, d=_dim, k=_keep: getattr(x, r)(dim=d, keepdim=k),
                    lambda x, f=_np_red, d=_dim, k=_keep: f(x, axis=d, keepdims=k),
                    [(2, 3, 4)],
                )
            )
OPS.append(op("sum_function_default", md.sum, np.sum, [(3, 4)]))
OPS.append(op("mean_function_dim0", lambda x: md.mean(x, 0), lambda x: x.mean(0), [(3, 4)]))
OPS.append(op("max_function_dim1", lambda x: md.max(x, 1), lambda x: x.max(1), [(3, 4)]))


def make_inputs(row):
    """The row's NumPy inputs, float64 (or int64 targets), the same on every run."""
    rng = np.random.default_rng(zlib.crc32(row.name.encode()))
    return [make(rng, shape) for make, shape in zip(row.make, row.shapes)]


def to_float32(arrays):
    return [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]


# Classroom tasks (python -m minidarts assign): the rows that exercise a backward pass
# a student writes carry that task's marker, so `pytest -m backward_mul` grades it.
TASK_OF_ROW = {
    "mul": "backward_mul",
    "matmul": "backward_matmul",
    "softmax": "backward_softmax",
    "cross_entropy": "backward_cross_entropy",
}


def _task_marks(name):
    for prefix, task in TASK_OF_ROW.items():
        if name == prefix or name.startswith(prefix + "_"):
            return [getattr(pytest.mark, task)]
    return []


ROWS = [pytest.param(row, id=row.name, marks=_task_marks(row.name)) for row in OPS]


def test_table_names_are_unique():
    names = [row.name for row in OPS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("row", OPS, ids=lambda row: row.name)
def test_forward_matches_numpy(row, device):
    arrays = make_inputs(row)
    out = row.fn(*[md.tensor(a, device=device) for a in arrays])
    expected = np.asarray(row.ref(*arrays))
    assert isinstance(out, md.Tensor)
    assert out.device == device
    assert out.dtype == np.float64
    assert out.shape == expected.shape
    got = out.numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("row", ROWS)
def test_gradcheck(row, device):
    tensors = [md.tensor(a, device=device) for a in make_inputs(row)]
    report = md.gradcheck(row.fn, *tensors)  # default tolerances: rtol 1e-6, atol 1e-8
    assert report.n_checks > 0
    assert report.max_rel_error <= 1e-6


@pytest.mark.parametrize("row", ROWS)
def test_float32_stays_float32(row, device):
    arrays = to_float32(make_inputs(row))
    tensors = [md.tensor(a, device=device, requires_grad=a.dtype == np.float32) for a in arrays]
    out = row.fn(*tensors)
    assert out.dtype == np.float32, f"{row.name}: float32 in, {out.dtype} out"
    expected = np.asarray(
        row.ref(*[a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays])
    )
    got = out.numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    for t in tensors:
        if t.requires_grad:
            assert t.grad is not None and t.grad.dtype == np.float32
            assert np.isfinite(md.to_numpy(t.grad)).all()


def test_max_relative_error_over_the_table():
    """Measure once, on the CPU, the worst gradcheck error over every row (printed with -s)."""
    errors = {}
    for row in OPS:
        report = md.gradcheck(row.fn, *[md.tensor(a) for a in make_inputs(row)])
        errors[row.name] = report.max_rel_error
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    print(f"\ngradcheck over {len(OPS)} ops: max relative error {worst[0][1]:.3g}; worst: {worst}")
    assert worst[0][1] <= 1e-6


# --- specific behaviour --------------------------------------------------------------------


def test_max_ties_share_the_gradient():
    x = md.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    x.max(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])


def test_repeated_integer_index_adds_gradients():
    x = md.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 2, 2, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 3.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_spread(dtype, device):
    """Logits over +-1e4 (exp overflows even float64 at 710): finite outputs equal to SciPy's,
    and the gradients equal central differences of the float64 NumPy references."""
    z = (distinct(np.random.default_rng(0), (4, 5)) * 5000).astype(dtype)
    t = np.array([0, 4, 2, 2])
    z64 = z.astype(np.float64)
    p = scipy.special.softmax(z64, axis=1)
    x = md.tensor(z, device=device, requires_grad=True)
    y = F.log_softmax(x, dim=1)
    np.testing.assert_allclose(y.numpy(), log_softmax_np(z64, 1), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), 1 - 5 * p, rtol=1e-6, atol=1e-6)
    x.grad = None
    loss = F.cross_entropy(x, md.tensor(t, device=device))
    np.testing.assert_allclose(loss.item(), cross_entropy_np(z64, t), rtol=1e-6)
    loss.backward()
    # the reference is numerical, not the closed form (that is a classroom task's answer)
    reference = numerical_grad(lambda a: cross_entropy_np(a, t), z64.copy())
    np.testing.assert_allclose(md.to_numpy(x.grad), reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.softmax(x, 1).numpy(), p, rtol=1e-6, atol=1e-30)
    for out in (y, loss):
        assert out.dtype == dtype


# --- clear errors ----------------------------------------------------------------------------


def test_matmul_mismatched_inner_dims():
    a, b = md.tensor(np.ones((3, 4))), md.tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) do not match"):
        a @ b


def test_matmul_batch_dims_that_do_not_broadcast():
    a, b = md.tensor(np.ones((2, 3, 4))), md.tensor(np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"matmul: the batch dims .* cannot be broadcast"):
        a @ b


def test_add_broadcasting_failure():
    a, b = md.tensor(np.ones((3, 4))), md.tensor(np.ones(5))
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\) and \(5,\) cannot be broadcast"):
        a + b


def test_reshape_to_incompatible_shape():
    x = md.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape: cannot view .* shape \(2, 3\) \(6 elements\)"):
        x.reshape(4, 2)


def test_cross_entropy_float_targets():
    logits = md.tensor(np.zeros((4, 3)))
    with pytest.raises(TypeError, match=r"cross_entropy: target must hold integer.*float"):
        F.cross_entropy(logits, md.tensor([0.0, 1.0, 2.0, 1.0]))


@pytest.mark.parametrize("shape", [(3,), (4, 1), (5,)])
def test_cross_entropy_wrong_target_shape(shape):
    logits = md.tensor(np.zeros((4, 3)))
    target = md.tensor(np.zeros(shape, dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: target must have shape \(4,\)"):
        F.cross_entropy(logits, target)


@pytest.mark.parametrize("bad", [3, -1])
def test_cross_entropy_out_of_range_target(bad):
    logits = md.tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"cross_entropy: target values must be in \[0, 2\]"):
        F.cross_entropy(logits, md.tensor([0, 1, bad, 2]))


def test_linear_feature_mismatch():
    with pytest.raises(ValueError, match=r"linear: input has 4 features"):
        F.linear(md.tensor(np.ones((5, 4))), md.tensor(np.ones((3, 6))))
