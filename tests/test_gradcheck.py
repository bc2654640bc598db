"""The gradient checker itself: it must reject wrong backward passes, say where, and its
numerical derivative must be right on its own."""

import re

import numpy as np
import pytest

import minidarts as md
from minidarts import Function
from minidarts.engine import backend

# gradcheck's message: "... input I (shape S), WHERE: analytic gradient A, numerical N (...)"
VALUES = re.compile(r"analytic gradient (\S+), numerical (\S+) \(")


def _values(excinfo):
    match = VALUES.search(str(excinfo.value))
    assert match, str(excinfo.value)
    return float(match.group(1)), float(match.group(2))


class SquareWrongAt(Function):
    """y = x^2 with a backward that is right (2 x gy) except at one flat element `bad`,
    where it adds `error`; bad=None gives the correct backward."""

    bad, error = None, 0.0

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        gx = 2 * self.x * gy
        if self.bad is not None:
            gx.reshape(-1)[self.bad] += self.error
        return (gx,)


def square_wrong_at(bad, error):
    cls = type("SquareWrongAt", (SquareWrongAt,), {"bad": bad, "error": error})

    def wrong_square(x):
        return cls.apply(x).sum()

    return wrong_square


class MulWrongSecond(Function):
    """y = a * b whose gradient for b forgets the factor a (returns gy)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        return gy * self.b, gy


def wrong_mul(a, b):
    return MulWrongSecond.apply(a, b)


def _distinct(shape, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2 + 0.3) / n * 4).reshape(shape)


def test_correct_backward_passes_every_element(device):
    x = md.tensor(_distinct((3, 4)), device=device)
    report = md.gradcheck(square_wrong_at(None, 0.0), x)
    assert report.n_checks == 12
    assert report.max_rel_error <= 1e-6


def test_wrong_backward_is_rejected_with_a_precise_message(device):
    x_np = _distinct((3, 4))
    x = md.tensor(x_np, device=device)
    with pytest.raises(AssertionError) as excinfo:
        md.gradcheck(square_wrong_at(6, 0.5), x)  # flat element 6 of (3, 4) is (1, 2)
    message = str(excinfo.value)
    assert "wrong_square" in message
    assert "input 0 (shape (3, 4))" in message
    assert "element (1, 2)" in message
    analytic, numerical = _values(excinfo)
    # both values: gradcheck scales the scalar output by a random v, so the right derivative
    # is numerical = v * 2 x[1, 2] and the wrong one analytic = numerical + 0.5
    assert abs(analytic - numerical - 0.5) < 1e-8
    assert abs(numerical) > 1e-3


def test_wrong_gradient_of_the_second_input_names_input_1(device):
    a = md.tensor(_distinct((2, 3), 1), device=device)
    b = md.tensor(_distinct((2, 3), 2), device=device)
    with pytest.raises(AssertionError, match=r"gradcheck failed for wrong_mul: input 1 \(shape"):
        md.gradcheck(wrong_mul, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_input(dtype, device):
    """A transposed (Fortran-ordered) input is checked like any other: gradcheck must
    perturb its elements in the array the function reads, not in a copy."""
    x = md.tensor(_distinct((3, 4)), dtype=dtype, device=device).T
    assert not x.data.flags.c_contiguous
    report = md.gradcheck(square_wrong_at(None, 0.0), x)
    assert report.n_checks == 12 and report.max_rel_error <= 1e-6


def test_only_inputs_that_require_grad_are_checked():
    a = md.tensor(_distinct((2, 3), 1), requires_grad=True)
    b = md.tensor(_distinct((2, 3), 2))  # its (wrong) gradient is not looked at
    report = md.gradcheck(wrong_mul, a, b)
    assert report.n_checks == 6


def test_large_input_uses_random_directions_and_passes_when_right(device):
    x = md.tensor(_distinct((50, 50)), device=device)  # 2500 elements > max_elements=1000
    report = md.gradcheck(square_wrong_at(None, 0.0), x)
    assert report.n_checks == 16  # n_directions, not one check per element
    assert report.max_rel_error <= 1e-6


@pytest.mark.parametrize("error", [1.0, 1e-3])
def test_wrong_gradient_on_one_element_of_a_large_input_is_caught(error, device):
    x = md.tensor(_distinct((50, 50)), device=device)
    with pytest.raises(AssertionError, match=r"wrong_square: input 0 .*random direction \d+ of 16"):
        md.gradcheck(square_wrong_at(1234, error), x)


def test_nan_gradient_is_rejected():
    x = md.tensor(_distinct((2, 2)))
    with pytest.raises(AssertionError, match="analytic gradient nan"):
        md.gradcheck(square_wrong_at(3, float("nan")), x)


def test_inputs_are_cast_to_float64_copies():
    seen = []

    def spy(x):
        seen.append(x.dtype)
        return x * x

    x = md.tensor(_distinct((2, 3)), dtype=np.float32)
    before = x.numpy().copy()
    md.gradcheck(spy, x)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_array_equal(x.numpy(), before)  # the caller's tensor is untouched
    assert x.dtype == np.float32 and x.grad is None


def test_no_floating_input_is_an_error():
    with pytest.raises(ValueError, match="no floating-point input"):
        md.gradcheck(lambda t: t * 2.0, md.tensor([1, 2, 3]))


def test_output_not_depending_on_the_inputs_is_an_error():
    with pytest.raises(AssertionError, match="does not depend on any checked input"):
        md.gradcheck(lambda t: t.detach() * 2.0, md.tensor([1.0, 2.0]))


# --- numerical_grad on its own --------------------------------------------------------------


@pytest.mark.numerical_grad
def test_numerical_grad_matches_a_known_derivative():
    """f(x) = sum(sin(x) x^2),  df/dx = cos(x) x^2 + 2 x sin(x)."""
    x = np.linspace(-2.0, 3.0, 12).reshape(3, 4)
    before = x.copy()
    g = md.numerical_grad(lambda a: np.sum(np.sin(a) * a**2), x)
    exact = np.cos(before) * before**2 + 2 * before * np.sin(before)
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, exact, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(x, before)  # perturbed in place, then restored


@pytest.mark.numerical_grad
def test_numerical_grad_of_a_nonlinear_function_of_all_elements():
    """f(x) = log(sum(e^x)),  df/dx = softmax(x): every element depends on every other."""
    x = np.array([0.3, -1.2, 2.0, 0.7])
    g = md.numerical_grad(lambda a: np.log(np.exp(a).sum()), x)
    np.testing.assert_allclose(g, np.exp(x) / np.exp(x).sum(), rtol=1e-8)


@pytest.mark.numerical_grad
def test_numerical_grad_on_the_device(device):
    x = backend.asarray(np.linspace(0.5, 2.0, 6), device=device)
    g = md.numerical_grad(lambda a: float((a**3).sum()), x)
    np.testing.assert_allclose(md.to_numpy(g), 3 * md.to_numpy(x) ** 2, rtol=1e-8)


def test_numerical_grad_rejects_a_non_contiguous_array():
    x = np.ones((3, 4)).T
    with pytest.raises(ValueError, match="C-contiguous"):
        md.numerical_grad(lambda a: a.sum(), x)
