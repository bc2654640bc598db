"""The autograd engine: gradient sums and accumulation, retain_grad, deep graphs,
no_grad / detach, dtypes, and its error messages."""

import gc

import numpy as np
import pytest

import minidarts as md
import minidarts.nn.functional as F
from minidarts.engine import backend

X = np.array([[0.5, -1.25, 2.0], [1.5, 0.75, -0.5]])


def leaf(device, data=X, dtype=None):
    return md.tensor(data, device=device, dtype=dtype, requires_grad=True)


# --- a tensor used more than once gets the sum of the gradients ----------------------------


REUSED = {  # f(x) using x more than once, and df/dx
    "x*x": (lambda x: x * x, lambda a: 2 * a),
    "x+x": (lambda x: x + x, lambda a: 2 + 0 * a),
    "x*x*x": (lambda x: x * x * x, lambda a: 3 * a**2),
    "exp(x)+x**2": (lambda x: md.exp(x) + x**2, lambda a: np.exp(a) + 2 * a),
    "x/x": (lambda x: x / x, lambda a: 0 * a),
    "tanh(x)*x": (lambda x: F.tanh(x) * x, lambda a: (1 - np.tanh(a) ** 2) * a + np.tanh(a)),
    "x[0]+x[1]": (lambda x: x[0] + x[1], lambda a: np.ones_like(a)),
    "(x*x)**(x*x)": (
        lambda x: (x * x) ** (x * x),
        lambda a: (a * a) ** (a * a) * (np.log(a * a) + 1) * 2 * a,
    ),
}


@pytest.mark.parametrize("name", list(REUSED))
def test_reused_tensor_gets_summed_gradient(name, device):
    fn, grad = REUSED[name]
    x = leaf(device)
    fn(x).sum().backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), grad(X), rtol=1e-6, atol=1e-7)


def test_diamond_graph(device):
    """y = 2x feeds both branches of z = y*y + y: dz/dx = (2y + 1) * 2."""
    x = leaf(device, dtype=np.float64)
    y = x * 2
    (y * y + y).sum().backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), (4 * X + 1) * 2)


def test_gradients_accumulate_over_two_backward_calls(device):
    x = leaf(device, dtype=np.float64)
    (x * x).sum().backward()
    (3 * x).sum().backward()  # a second graph on the same leaf
    np.testing.assert_allclose(md.to_numpy(x.grad), 2 * X + 3)
    x.zero_grad()
    assert x.grad is None
    (3 * x).sum().backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), 3 + 0 * X)


def test_backward_twice_through_the_same_graph_accumulates(device):
    x = leaf(device, dtype=np.float64)
    loss = (x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), 4 * X)


def test_grad_is_a_copy_not_shared_between_leaves():
    """The same gradient array reaches both leaves of a + b; scaling one in place
    (as clip_grad_norm_ does) must not change the other."""
    a, b = leaf("cpu"), leaf("cpu")
    (a + b).sum().backward()
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, np.ones_like(X))


def test_retain_grad_on_an_intermediate(device):
    x = leaf(device, dtype=np.float64)
    y = (x * 3).retain_grad()
    h = y + 1  # intermediate without retain_grad
    (h * h).sum().backward()
    np.testing.assert_allclose(md.to_numpy(y.grad), 2 * (3 * X + 1))
    np.testing.assert_allclose(md.to_numpy(x.grad), 6 * (3 * X + 1))
    assert h.grad is None
    assert not y.is_leaf and x.is_leaf


def test_only_inputs_that_require_grad_get_gradients(device):
    x = leaf(device)
    c = md.tensor(X, device=device)  # a constant
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(md.to_numpy(x.grad), X, rtol=1e-6)


def test_backward_with_an_explicit_gradient(device):
    x = leaf(device, dtype=np.float64)
    g = np.arange(6.0).reshape(2, 3)
    (x * x).backward(backend.asarray(g, device=device))
    np.testing.assert_allclose(md.to_numpy(x.grad), 2 * X * g)


# --- a graph 10,000 ops deep ----------------------------------------------------------------


def test_graph_10000_ops_deep(device):
    """y = x * c, 10,000 times: dy/dx = c^10000, with no RecursionError on the way back
    (Python's default recursion limit is 1000) nor when the graph is freed."""
    c, depth = 1.0001, 10_000
    x = md.tensor([0.5, 2.0], device=device, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(depth):
        y = y * c
    y.sum().backward()
    np.testing.assert_allclose(md.to_numpy(x.grad), [c**depth] * 2, rtol=1e-9)
    del y
    gc.collect()


def test_graph_10000_uses_of_one_leaf(device):
    """y = x + x + ... (10,001 terms) as a chain 10,000 deep: dy/dx = 10,001."""
    x = md.tensor([1.0, -2.0], device=device, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + x
    y.sum().backward()
    np.testing.assert_array_equal(md.to_numpy(x.grad), [10_001.0, 10_001.0])


# --- errors -----------------------------------------------------------------------------------


def test_backward_on_non_scalar_without_gradient():
    x = leaf("cpu")
    with pytest.raises(RuntimeError, match=r"backward\(\) without a gradient needs a one-element"):
        (x * 2).backward()


def test_backward_with_a_gradient_of_the_wrong_shape():
    x = leaf("cpu")
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(2, 3\)"):
        (x * 2).backward(np.ones(3, dtype=np.float32))


def test_backward_on_a_tensor_that_does_not_require_grad():
    x = md.tensor(X)
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2).sum().backward()


@pytest.mark.parametrize("data", [[1, 2, 3], np.array([1, 2], dtype=np.int32), [True, False]])
def test_requires_grad_on_a_non_float_tensor(data):
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients"):
        md.tensor(data, requires_grad=True)


@pytest.mark.parametrize("data", ["abc", None, [object()]])
def test_a_tensor_of_no_numbers_is_refused(data):
    with pytest.raises(TypeError, match=r"a tensor holds numbers, got data of dtype"):
        md.tensor(data)


def test_backward_returning_the_wrong_number_of_gradients():
    class Bad(md.Function):
        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            return (gy,)

    a, b = leaf("cpu"), leaf("cpu")
    with pytest.raises(RuntimeError, match=r"Bad.backward returned 1 gradients for 2 inputs"):
        Bad.apply(a, b).sum().backward()


def test_unsupported_input_type():
    with pytest.raises(TypeError, match="cannot use an input of type str"):
        md.exp("x")


# --- no_grad and detach -----------------------------------------------------------------------


def test_no_grad_records_no_graph(device):
    x = leaf(device)
    with md.no_grad():
        assert not md.is_grad_enabled()
        y = x * 2 + 1
    assert md.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with md.no_grad():
            raise ZeroDivisionError("inside no_grad")
    assert md.is_grad_enabled()


def test_no_grad_nested():
    with md.no_grad():
        with md.no_grad():
            pass
        assert not md.is_grad_enabled()
    assert md.is_grad_enabled()


def test_no_grad_as_decorator():
    @md.no_grad()
    def step(t):
        """Doubles t."""
        assert not md.is_grad_enabled()
        return t * 2

    x = leaf("cpu")
    y = step(x)
    assert not y.requires_grad
    assert md.is_grad_enabled()
    assert step.__name__ == "step" and step.__doc__ == "Doubles t."

    @md.no_grad()
    def fails():
        raise KeyError("inside")

    with pytest.raises(KeyError):
        fails()
    assert md.is_grad_enabled()


def test_detach_cuts_the_graph(device):
    x = leaf(device, dtype=np.float64)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), X)
    (d * x).sum().backward()  # d is a constant: d(d * x)/dx = d, not 2x
    np.testing.assert_allclose(md.to_numpy(x.grad), X)


# --- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, dtype",
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        ([[1, 2], [3, 4.5]], np.float32),
        (3, np.int64),
        ([1, 2, 3], np.int64),
        (np.zeros(2, dtype=np.float64), np.float64),
        (np.zeros(2, dtype=np.float32), np.float32),
        (np.zeros(2, dtype=np.int32), np.int32),
        (np.zeros(2, dtype=np.int64), np.int64),
    ],
    ids=[
        "float",
        "float_list",
        "mixed_list",
        "int",
        "int_list",
        "f64_array",
        "f32_array",
        "i32_array",
        "i64_array",
    ],
)
def test_tensor_dtype_defaults(data, dtype):
    assert md.tensor(data).dtype == dtype


def test_tensor_dtype_argument_and_copy():
    a = np.array([1.0, 2.0])
    t = md.tensor(a)
    a[0] = 100.0  # tensor() copies, as torch.tensor
    assert t.numpy()[0] == 1.0
    assert md.tensor([1, 2], dtype=np.float64).dtype == np.float64


def test_float32_stays_float32_through_a_training_step(device):
    """A small MLP step in float32: every intermediate and every gradient is float32,
    also with Python floats (float64 in Python) and numpy float64 scalars mixed in."""
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((8, 5)), device=device, dtype=np.float32)
    w1 = md.tensor(rng.standard_normal((6, 5)), device=device, dtype=np.float32, requires_grad=True)
    b1 = md.tensor(np.zeros(6), device=device, dtype=np.float32, requires_grad=True)
    w2 = md.tensor(rng.standard_normal((3, 6)), device=device, dtype=np.float32, requires_grad=True)
    y = md.tensor(rng.integers(0, 3, 8), device=device)
    h = F.relu(F.linear(x, w1, b1)) * 0.5 + np.float64(0.1)
    h = F.sigmoid(h) - 1.0 / (1.0 + h**2) + md.sqrt(h * h + 1e-3) + md.exp(-h).log()
    logits = F.linear(h.tanh(), w2)
    loss = F.cross_entropy(logits, y) + 1e-4 * (w1**2).sum() + (2.0**logits).mean()
    for t in (h, logits, loss, F.softmax(logits, 1), F.log_softmax(logits, 1)):
        assert t.dtype == np.float32
    loss.backward()
    for p in (w1, b1, w2):
        assert p.grad.dtype == np.float32
        assert np.isfinite(md.to_numpy(p.grad)).all()


def test_python_numbers_take_the_tensor_dtype():
    for dtype in (np.float32, np.float64):
        x = md.tensor([1.0, 2.0], dtype=dtype)
        for y in (x + 1, 1 - x, x * 2.5, 3 / x, x**2, 2**x, x / np.float64(3.0)):
            assert y.dtype == dtype


def test_item_and_repr():
    t = md.tensor([[2.5]], requires_grad=True)
    assert t.item() == 2.5
    assert "requires_grad=True" in repr(t)
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element"):
        md.tensor([1.0, 2.0]).item()


@pytest.mark.parametrize(
    "constant", [np.float64(2.0), np.float32(2.0), np.int64(2), np.array(2.0)], ids=repr
)
def test_numpy_scalars_are_constants_of_the_tensors_dtype(constant):
    """NumPy 2 treats np.float64 as a strong type; a constant must not turn float32
    training into float64 (nor be refused)."""
    x = md.tensor([1.0, 3.0], requires_grad=True)
    for y in (x * constant, constant * x, x + constant, x / constant, x**constant):
        assert y.dtype == np.float32
    (x**constant).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.array([1.0, 3.0]) ** (2 - 1) * 1.0 * 1, rtol=1e-6)
