"""Tests of cell.py and network.py: the DARTS search network (supernetwork).

Shapes for normal and reduction cells and 1- or 3-channel images, the architecture
kept apart from the weights, the alphas argument of forward, and a float64 gradient
check of the whole network's loss with respect to every alpha entry and a sample of
weights (eqs. 1-2 end to end)."""

import numpy as np
import pytest
from scipy.special import softmax

import minidarts
from minidarts.darts.cell import Cell, num_edges
from minidarts.darts.genotype import derive_genotype
from minidarts.darts.network import Network, relax
from minidarts.darts.operations import PRIMITIVES
from minidarts.engine.autograd import Tensor
from minidarts.nn import functional as F

TINY = dict(C=4, steps=2, multiplier=2)


def _images(n, channels, size=12, seed=0):
    rng = np.random.default_rng(seed)
    return Tensor(rng.standard_normal((n, channels, size, size)).astype(np.float32))


@pytest.mark.parametrize("layers, reductions", [(1, [True]), (3, [False, True, True])])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.cell
def test_output_shape(layers, reductions, in_channels):
    model = Network(layers=layers, in_channels=in_channels, **TINY)
    assert [cell.reduction for cell in model.cells] == reductions
    # channels double at each reduction; the classifier sees multiplier * C_last
    C_last = TINY["C"] * 2 ** sum(reductions)
    assert model.classifier.weight.shape == (10, TINY["multiplier"] * C_last)
    logits = model(_images(3, in_channels))
    assert logits.shape == (3, 10) and logits.data.dtype == np.float32
    assert np.isfinite(logits.data).all()


@pytest.mark.cell
def test_paper_network_is_one_reduction_cell_with_14_edges():
    model = Network(C=8, layers=1, steps=4, multiplier=4, stem_multiplier=3, in_channels=1)
    assert len(model.cells) == 1 and model.cells[0].reduction
    assert len(model.cells[0]._ops) == 14
    assert model.stem[0].weight.shape == (24, 1, 3, 3)
    assert model(_images(2, 1, size=28)).shape == (2, 10)


def test_decidedness_is_the_mean_largest_weight_over_the_cells_the_network_has():
    model = Network(C=4, layers=1, steps=4, multiplier=4, stem_multiplier=3, in_channels=1)
    n_ops = len(PRIMITIVES)
    zeros = np.zeros((num_edges(4), n_ops), dtype=np.float32)
    uniform = {k: Tensor(zeros.copy()) for k in ("normal", "reduce")}
    assert model.decidedness(uniform) == pytest.approx(1 / n_ops)
    # one edge of the reduction cell all but decided: it alone moves the mean
    a = zeros.copy()
    a[3, 5] = 50.0
    decided = {"normal": Tensor(zeros.copy()), "reduce": Tensor(a)}
    expected = (1.0 + (num_edges(4) - 1) / n_ops) / num_edges(4)
    assert model.decidedness(decided) == pytest.approx(expected, rel=1e-6)
    # the one-cell network has no normal cell: its alpha does not count
    decided["normal"] = Tensor(np.full_like(zeros, 0.0) + np.eye(num_edges(4), n_ops) * 50)
    assert model.decidedness(decided) == pytest.approx(expected, rel=1e-6)
    expected_rows = softmax(a, axis=1).max(axis=1).mean()
    assert model.decidedness(decided) == pytest.approx(expected_rows, rel=1e-6)


@pytest.mark.parametrize("steps", [2, 4])
def test_alphas_are_architecture_not_weights(steps):
    model = Network(C=4, steps=steps, multiplier=2, layers=1)
    normal, reduce = model.arch_parameters()
    assert normal is model.alphas["normal"] and reduce is model.alphas["reduce"]
    for a in (normal, reduce):
        assert a.shape == (num_edges(steps), len(PRIMITIVES))
        assert a.requires_grad and a.data.dtype == np.float32
        assert 0 < np.abs(a.data).max() < 1e-2  # DARTS: 1e-3 * randn, nearly uniform weights
    params = list(model.parameters())
    assert all(p is not normal and p is not reduce for p in params)
    assert all(p.shape != normal.shape for p in params)
    assert not any("alpha" in name for name, _ in model.named_parameters())
    # ... but the network's state: saving it keeps the architecture
    assert [k for k in model.state_dict() if "alpha" in k] == ["alphas.normal", "alphas.reduce"]
    assert model.num_parameters() == sum(p.numel() for p in params)


@pytest.mark.cell
def test_same_seed_same_network_other_seed_other_network():
    a, b, c = (Network(layers=1, seed=s, **TINY) for s in (5, 5, 6))
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]), k
    for kind in ("normal", "reduce"):
        assert np.array_equal(a.alphas[kind].data, b.alphas[kind].data)
        assert not np.array_equal(a.alphas[kind].data, c.alphas[kind].data)
    assert not np.array_equal(a.stem[0].weight.data, c.stem[0].weight.data)
    x = _images(2, 1)
    assert np.array_equal(a(x).data, b(x).data)


@pytest.mark.cell
def test_alphas_argument_replaces_the_networks_own():
    model = Network(layers=3, **TINY)
    rng = np.random.default_rng(1)
    given = {
        k: Tensor(rng.standard_normal(a.shape).astype(np.float32), requires_grad=True)
        for k, a in model.alphas.items()
    }
    x, y = _images(4, 1, seed=2), np.array([1, 2, 3, 4])
    out_given = model(x, given)
    out_own = model(x)
    assert not np.allclose(out_given.data, out_own.data)
    F.cross_entropy(out_given, y).backward()
    assert all(a.grad is not None for a in given.values())
    assert all(a.grad is None for a in model.alphas.values())  # own alphas untouched
    # the same numbers in the network's own alphas give the same output
    for k, a in model.alphas.items():
        a.data[...] = given[k].data
    np.testing.assert_array_equal(model(x).data, out_given.data)


@pytest.mark.cell
def test_every_weight_and_alpha_gets_a_gradient():
    model = Network(layers=3, **TINY)
    F.cross_entropy(model(_images(4, 1)), np.array([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.isfinite(p.grad).all(), name
    for a in model.arch_parameters():
        assert a.grad is not None and np.abs(a.grad).max() > 0


def test_relaxed_weights_are_softmax_of_alpha():
    model = Network(layers=1, **TINY)
    rng = np.random.default_rng(3)
    for a in model.arch_parameters():
        a.data[...] = rng.standard_normal(a.shape) * 3
    w = model.relaxed_weights()
    for kind, a in model.alphas.items():
        np.testing.assert_allclose(w[kind], softmax(a.data.astype(np.float64), axis=1), rtol=1e-5)
        np.testing.assert_allclose(w[kind].sum(axis=1), 1.0, rtol=1e-5)


def test_genotype_of_a_network_reads_softmax_not_raw_alpha():
    """Node 1 of the cell: edge 2 has the largest raw alpha (offset 10 on every op) but
    a flat softmax; edges 3 and 4 have small raw alphas but clear favourites. The
    network's genotype must keep edges 3 and 4 (softmax), not 2 (raw alpha)."""
    model = Network(layers=1, **TINY)
    op = {name: i for i, name in enumerate(PRIMITIVES)}
    alpha = np.zeros((5, len(PRIMITIVES)), np.float32)
    alpha[0, op["sep_conv_3x3"]] = alpha[1, op["sep_conv_3x3"]] = 1.0
    alpha[2, :] = 10.0
    alpha[2, op["sep_conv_5x5"]] = 10.5
    alpha[3, op["skip_connect"]] = 3.0
    alpha[4, op["dil_conv_3x3"]] = 2.5
    for a in model.arch_parameters():
        a.data[...] = alpha
    w = model.relaxed_weights()
    g = derive_genotype(w["normal"], w["reduce"], steps=2, multiplier=2)
    assert set(g.reduce[2:]) == {("skip_connect", 1), ("dil_conv_3x3", 2)}
    assert set(g.normal[:2]) == {("sep_conv_3x3", 0), ("sep_conv_3x3", 1)}


def test_relax():
    a = Tensor(np.array([[0.0, 1.0, -2.0]], np.float32))
    np.testing.assert_allclose(relax(a).data, softmax(a.data, axis=1), rtol=1e-6)
    np.testing.assert_allclose(relax(a, "sigmoid").data, 1 / (1 + np.exp(-a.data)), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown relaxation 'tanh'"):
        relax(a, "tanh")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(C=0), "C must be a positive integer"),
        (dict(in_channels=0), "in_channels must be a positive integer"),
        (dict(layers=2.0), "layers must be a positive integer"),
        (dict(steps=2, multiplier=3), r"multiplier \(3\) cannot exceed steps \(2\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"Network: {message}"):
        Network(**kwargs)


def test_gradcheck_whole_supernetwork_float64():
    """d cross_entropy / d (every alpha entry, stem conv weight, a depthwise weight)
    of a whole 3-cell network (normal + 2 reduction cells, all 8 operations on every
    edge, BN in training mode), by central differences in float64."""
    model = Network(C=2, layers=3, steps=2, multiplier=2, in_channels=1, seed=0)
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    model.train()
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 1, 8, 8)))
    y = np.array([0, 3, 7, 9])
    # alphas far from uniform, so the softmax Jacobian is not degenerate
    a_normal = Tensor(rng.standard_normal(model.alphas["normal"].shape), requires_grad=True)
    a_reduce = Tensor(rng.standard_normal(model.alphas["reduce"].shape), requires_grad=True)
    stem_conv = model.stem[0]
    reduction_cell = model.cells[1]
    assert reduction_cell.reduction
    sep = reduction_cell._ops[0]._ops[PRIMITIVES.index("sep_conv_3x3")]
    depthwise = sep.op[0].op[1]  # first DilConv block: ReLU, depthwise, 1x1, BN
    assert depthwise.groups == depthwise.in_channels and depthwise.kernel_size == (3, 3)
    w_stem = Tensor(stem_conv.weight.data.copy(), requires_grad=True)
    w_dw = Tensor(depthwise.weight.data.copy(), requires_grad=True)

    def supernet_loss(alpha_normal, alpha_reduce, stem_weight, depthwise_weight):
        # gradcheck passes float64 copies; put them in the network in place of its own
        stem_conv._parameters["weight"] = stem_weight
        depthwise._parameters["weight"] = depthwise_weight
        logits = model(x, {"normal": alpha_normal, "reduce": alpha_reduce})
        return F.cross_entropy(logits, y)

    report = minidarts.gradcheck(supernet_loss, a_normal, a_reduce, w_stem, w_dw)
    n = a_normal.numel() + a_reduce.numel() + w_stem.numel() + w_dw.numel()
    assert report.n_checks == n  # every element, no random directions
    print(f"supernetwork gradcheck: {report}")


def test_seed_none_follows_manual_seed_and_a_seed_leaves_the_global_stream_alone():
    minidarts.manual_seed(1)
    a = Network(layers=1, seed=None, **TINY)
    minidarts.manual_seed(2)
    b = Network(layers=1, seed=None, **TINY)
    assert not np.array_equal(a.stem[0].weight.data, b.stem[0].weight.data)
    minidarts.manual_seed(3)
    expected = minidarts.engine.random.get_rng().standard_normal(4)
    minidarts.manual_seed(3)
    Network(layers=1, seed=7, **TINY)  # drawn from its own generator
    assert np.array_equal(minidarts.engine.random.get_rng().standard_normal(4), expected)


@pytest.mark.cell
@pytest.mark.parametrize("steps, multiplier", [(3, 2), (4, 3)])
def test_cell_is_the_weighted_dag_of_equation_1(steps, multiplier):
    """With the operations 'none' and 'skip_connect' (the identity at stride 1), node j
    of a normal cell is sum over its inputs i < j of w[edge(i, j), skip] * h_i (eq. 1),
    h_0, h_1 the preprocessed inputs; the output concatenates the last `multiplier`
    nodes. Computed here by hand, edge by edge, in DARTS's edge order."""
    minidarts.manual_seed(5)
    cell = Cell(steps, multiplier, 3, 3, 3, False, False, primitives=("none", "skip_connect"))
    rng = np.random.default_rng(6)
    s0, s1 = (Tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32)) for _ in range(2))
    w = rng.uniform(0.1, 1.0, (num_edges(steps), 2)).astype(np.float32)
    out = cell(s0, s1, Tensor(w))
    states = [cell.preprocess0(s0).data, cell.preprocess1(s1).data]
    edge = 0
    for _ in range(steps):
        node = np.zeros_like(states[0])
        for h in list(states):
            node = node + w[edge, 1] * h
            edge += 1
        states.append(node)
    expected = np.concatenate(states[-multiplier:], axis=1)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6)
