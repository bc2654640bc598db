"""nn.ParameterDict / nn.ParameterList against torch.nn's documented semantics, and
the hypernetworks as Modules (issue 16): named_parameters, state_dict, to,
requires_grad_ as for any layer."""

import numpy as np
import pytest

from minidarts import nn
from minidarts.darts.hypernet import LambdaInput, LinearHypernet, MLPHypernet, PiecewiseHypernet
from minidarts.engine.autograd import Tensor


def _p(*shape, seed=0):
    return nn.Parameter(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


class _Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.d = nn.ParameterDict({"a": _p(2, 3), "b": _p(4, seed=1)})
        self.l = nn.ParameterList([_p(1), _p(2, seed=2)])


def test_parameter_dict_is_a_mapping_in_insertion_order():
    # torch: ParameterDict keeps insertion order; d[k], `in`, len, keys/values/items
    a, b = _p(2), _p(3)
    d = nn.ParameterDict({"z": a})
    d["a"] = b
    assert list(d) == ["z", "a"] and list(d.keys()) == ["z", "a"]
    assert d["z"] is a and d["a"] is b and "z" in d and "q" not in d and len(d) == 2
    assert list(d.values()) == [a, b] and list(d.items()) == [("z", a), ("a", b)]
    d.update([("z", b)])  # replacing keeps the place
    assert list(d) == ["z", "a"] and d["z"] is b
    with pytest.raises(KeyError, match="no key 'q'.*\\['z', 'a'\\]"):
        d["q"]


def test_parameter_dict_refuses_what_would_go_wrong_silently():
    d = nn.ParameterDict()
    with pytest.raises(TypeError, match="expected an nn.Parameter, got ndarray"):
        d["x"] = np.zeros(3)  # a constant that would become learnable
    with pytest.raises(KeyError, match="without '.'"):
        d["a.b"] = _p(1)  # would break state_dict's dotted names
    with pytest.raises(KeyError, match="attribute of the module"):
        d["training"] = _p(1)


def test_parameter_list_indexes_like_a_list():
    ps = [_p(1), _p(2), _p(3)]
    lst = nn.ParameterList(ps[:2]).append(ps[2])
    assert len(lst) == 3 and list(lst) == ps and lst[-1] is ps[2]
    assert list(lst[1:]) == ps[1:]
    q = _p(1, seed=5)
    lst[0] = q
    assert lst[0] is q and [n for n, _ in lst.named_parameters()] == ["0", "1", "2"]
    with pytest.raises(IndexError):
        lst[3] = q
    with pytest.raises(TypeError, match="nn.Parameter"):
        lst.append(Tensor(np.zeros(2)))


def test_containers_register_with_their_parent():
    h = _Holder()
    names = [n for n, _ in h.named_parameters()]
    assert names == ["d.a", "d.b", "l.0", "l.1"]
    state = h.state_dict()
    assert list(state) == names and state["d.a"].shape == (2, 3)
    other = _Holder()
    for p in other.parameters():
        p.data[...] = 7
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.d["a"].data, h.d["a"].data)
    np.testing.assert_array_equal(other.l[1].data, h.l[1].data)
    assert "ParameterDict(a: (2, 3), b: (4,))" in repr(h)
    with pytest.raises(NotImplementedError, match="index it"):
        h.d()


# --- the hypernetworks are Modules ------------------------------------------------------


def _hypernets():
    rng = np.random.default_rng
    return {
        "linear": LinearHypernet(2, 8, rng(0)),
        "piecewise": PiecewiseHypernet(2, 8, rng(0), pivots=3, lambda_min=1e-2, lambda_max=10),
        "mlp": MLPHypernet(2, 8, rng(0), hidden=(4,), lambda_input=LambdaInput("log", 1e-2, 10)),
    }


@pytest.mark.parametrize("kind", ["linear", "piecewise", "mlp"])
def test_hypernet_is_a_module(kind):
    h = _hypernets()[kind]
    assert isinstance(h, nn.Module)
    names = [n for n, _ in h.named_parameters()]
    expected = {
        "linear": ["b1.normal", "b1.reduce", "b2.normal", "b2.reduce"],
        # parameters by cell type (the optimiser's saved order); state_dict pivot by pivot
        "piecewise": [f"A{j}.{k}" for k in ("normal", "reduce") for j in range(3)],
        "mlp": ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"],
    }[kind]
    assert names == expected
    assert sorted(h.state_dict()) == sorted(expected)
    # a state taken, changed, loaded into a fresh one: the same alpha(lambda)
    for j, p in enumerate(h.parameters()):
        p.data[...] = np.random.default_rng(j).standard_normal(p.shape)
    fresh = _hypernets()[kind]
    assert not np.allclose(fresh(0.5)["reduce"].data, h(0.5)["reduce"].data)
    fresh.load_state_dict(h.state_dict())
    for lam in (1e-2, 0.5, 10.0):
        np.testing.assert_array_equal(fresh(lam)["reduce"].data, h(lam)["reduce"].data)
    assert h.to("cpu") is h
    # frozen: backward leaves the parameters without a gradient
    h.requires_grad_(False)
    out = h(0.5)["normal"].sum()
    assert not out.requires_grad
    h.requires_grad_(True)
    h(0.5)["normal"].sum().backward()
    assert any(p.grad is not None and np.any(p.grad) for p in h.parameters())
    h.zero_grad()
    assert all(p.grad is None for p in h.parameters())


def test_piecewise_pivots_by_cell_type():
    h = _hypernets()["piecewise"]
    named = dict(h.named_parameters())
    assert [p is named[f"A{j}.reduce"] for j, p in enumerate(h.A["reduce"])] == [True] * 3
