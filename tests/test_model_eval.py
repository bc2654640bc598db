"""Tests of model_eval.py: the discrete evaluation network of a genotype.

Shapes for 1 and 3 cells and 1- or 3-channel images, the cell wiring against a
hand computation, one operation per kept edge with affine BN and no alpha, the
parameter count against a formula built from operations.op_param_count, clear
errors for bad genotypes, and a float64 gradient check of the whole network's
loss with respect to a sample of its weights."""

import numpy as np
import pytest

import minidarts
from minidarts import nn
from minidarts.darts.eval_network import EvalCell, EvalNetwork, genotype_param_count
from minidarts.darts.genotype import Genotype
from minidarts.darts.operations import (
    DilConv,
    FactorizedReduce,
    Pool,
    ReLUConvBN,
    SepConv,
    op_param_count,
)
from minidarts.engine.autograd import Tensor
from minidarts.nn import functional as F

# A 4-node genotype (the paper's cell size) using every kind of operation.
GENOTYPE = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 2),
        ("skip_connect", 0),
        ("avg_pool_3x3", 1),
        ("skip_connect", 0),
        ("dil_conv_5x5", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("sep_conv_5x5", 1),
        ("dil_conv_5x5", 2),
        ("skip_connect", 1),
        ("avg_pool_3x3", 0),
        ("skip_connect", 2),
        ("dil_conv_3x3", 3),
        ("sep_conv_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

# A 2-node genotype that concatenates only its last node, for the small tests.
SMALL = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("max_pool_3x3", 0)],
    normal_concat=[2, 3],
    reduce=[("sep_conv_3x3", 0), ("skip_connect", 1), ("avg_pool_3x3", 2), ("max_pool_3x3", 1)],
    reduce_concat=[3],
)


def _images(n, channels, size=12, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return Tensor(rng.standard_normal((n, channels, size, size)).astype(dtype))


@pytest.mark.parametrize("layers, reductions", [(1, [True]), (3, [False, True, True])])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape(layers, reductions, in_channels):
    C = 4
    model = EvalNetwork(GENOTYPE, C=C, layers=layers, in_channels=in_channels)
    assert [cell.reduction for cell in model.cells] == reductions
    assert model.stem[0].weight.shape == (3 * C, in_channels, 3, 3)
    # channels double at each reduction; the classifier sees len(concat) * C_last
    C_last = C * 2 ** sum(reductions)
    assert model.classifier.weight.shape == (10, 4 * C_last)
    x = _images(3, in_channels, size=12)
    logits = model(x)
    assert logits.shape == (3, 10) and logits.data.dtype == np.float32
    assert np.isfinite(logits.data).all()
    # each reduction cell halves H and W
    s = model.stem(x)
    s0 = s1 = s
    size = 12
    for cell in model.cells:
        s0, s1 = s1, cell(s0, s1)
        size = (size + 1) // 2 if cell.reduction else size
        assert s1.shape[2:] == (size, size)


def test_cells_hold_one_operation_per_kept_edge_with_affine_bn():
    model = EvalNetwork(GENOTYPE, C=4, layers=3)
    kinds = {"sep": SepConv, "dil": DilConv, "max": Pool, "avg": Pool}
    for cell in model.cells:
        gene = GENOTYPE.reduce if cell.reduction else GENOTYPE.normal
        assert len(cell._ops) == len(gene) == 8
        for (name, index), op in zip(gene, cell._ops):
            stride = 2 if cell.reduction and index < 2 else 1
            if name == "skip_connect":
                expected = FactorizedReduce if stride == 2 else nn.Identity
                assert type(op) is expected, (name, index)
            else:
                assert isinstance(op, kinds[name[:3]]), name
            if isinstance(op, Pool):
                assert op.stride == stride
    # preprocess0 of the cell after a reduction cell must reduce too
    assert isinstance(model.cells[0].preprocess0, ReLUConvBN)
    assert isinstance(model.cells[2].preprocess0, FactorizedReduce)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.affine and bn.weight is not None for bn in bns)
    # no architecture parameters anywhere: only weights and BN statistics
    assert not hasattr(model, "alphas")
    assert not any("alpha" in name for name in model.state_dict())


def test_cell_computes_the_genotype_dag():
    """x2 = sep(s0) + skip(s1), x3 = dil(x2) + maxpool(s0); output [x2, x3] (normal
    concat 2, 3), recomputed here from the cell's own modules."""
    cell = EvalCell(SMALL, 6, 6, 3, reduction=False, reduction_prev=False)
    a, b = _images(2, 6, seed=1), _images(2, 6, seed=2)
    out = cell(a, b)
    s0, s1 = cell.preprocess0(a).data, cell.preprocess1(b).data
    sep, skip, dil, pool = cell._ops
    x2 = sep(Tensor(s0)).data + s1
    x3 = dil(Tensor(x2)).data + pool(Tensor(s0)).data
    assert out.shape == (2, 6, 12, 12)
    np.testing.assert_allclose(out.data, np.concatenate([x2, x3], axis=1), rtol=1e-5, atol=1e-6)


def test_concat_picks_the_listed_nodes():
    """The reduce cell of SMALL concatenates node 3 only: C channels out, not 2C."""
    model = EvalNetwork(SMALL, C=4, layers=1)
    assert model.cells[0].multiplier == 1
    assert model.classifier.weight.shape == (10, 8)
    assert model(_images(2, 1)).shape == (2, 10)


def _formula(genotype, C, layers, in_channels, num_classes=10, stem_multiplier=3):
    """Weights of the evaluation network from op_param_count: stem conv + BN, per cell
    the two preprocessing layers and its kept operations, the classifier."""
    C_curr = stem_multiplier * C
    total = in_channels * C_curr * 9 + 2 * C_curr
    C_pp, C_p, C_curr = C_curr, C_curr, C
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C_curr *= 2 if reduction else 1
        # preprocess0: FactorizedReduce (two 1x1 convs C_pp -> C/2, BN) after a reduction
        # cell, else ReLUConvBN (a 1x1 conv C_pp -> C, BN): the same count either way
        total += C_pp * C_curr + 2 * C_curr
        total += C_p * C_curr + 2 * C_curr
        gene = genotype.reduce if reduction else genotype.normal
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        for name, index in gene:
            stride = 2 if reduction and index < 2 else 1
            total += op_param_count(name, C_curr, stride, affine=True)
        C_pp, C_p = C_p, len(concat) * C_curr
    return total + C_p * num_classes + num_classes


@pytest.mark.parametrize("genotype", [GENOTYPE, SMALL], ids=["4-node", "2-node"])
@pytest.mark.parametrize("C, layers, in_channels", [(4, 1, 1), (8, 2, 1), (4, 3, 3), (6, 5, 1)])
def test_param_count(genotype, C, layers, in_channels):
    model = EvalNetwork(genotype, C=C, layers=layers, in_channels=in_channels)
    n = nn.count_parameters(model)
    assert n == sum(p.numel() for p in model.parameters())
    assert genotype_param_count(genotype, C, layers, in_channels) == n
    assert _formula(genotype, C, layers, in_channels) == n


def test_param_count_grows_with_heavier_operations():
    light = GENOTYPE._replace(reduce=[("max_pool_3x3", i) for _, i in GENOTYPE.reduce])
    heavy = GENOTYPE._replace(reduce=[("sep_conv_5x5", i) for _, i in GENOTYPE.reduce])
    counts = [genotype_param_count(g, 8, 1) for g in (light, GENOTYPE, heavy)]
    assert counts[0] < counts[1] < counts[2]


def test_param_count_leaves_the_global_generator_alone():
    minidarts.manual_seed(7)
    expected = nn.Linear(3, 3).weight.data.copy()
    minidarts.manual_seed(7)
    genotype_param_count(GENOTYPE, 4, 3)
    assert np.array_equal(nn.Linear(3, 3).weight.data, expected)


def test_same_seed_same_weights():
    a, b, c = (EvalNetwork(SMALL, C=4, layers=2, seed=s) for s in (3, 3, 4))
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k]), k
    assert not np.array_equal(a.stem[0].weight.data, c.stem[0].weight.data)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(reduce=[("sep_conv_3x3", 0)]), "two per node"),
        (dict(reduce=[]), "non-empty list"),
        (dict(reduce=[("none", 0), ("skip_connect", 1)]), "unknown operation 'none'"),
        (dict(reduce=[("conv_7x7", 0), ("skip_connect", 1)]), "unknown operation 'conv_7x7'"),
        (dict(reduce=[("sep_conv_3x3", 0), ("skip_connect", 2)]), r"node 0 can take inputs 0\.\.1"),
        (dict(reduce=[("sep_conv_3x3", 0), ("skip_connect", "1")]), "node 0 can take inputs"),
        (dict(reduce_concat=[2, 4]), r"concat must list distinct states in 0\.\.3"),
        (dict(reduce_concat=[]), "concat must list"),
        (dict(reduce_concat=[2, 2]), "concat must list"),
    ],
)
def test_bad_genotype_is_a_clear_error(change, message):
    genotype = SMALL._replace(**change)
    with pytest.raises(ValueError, match=rf"EvalCell \(reduce cell\): .*{message}"):
        EvalNetwork(genotype, C=4, layers=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(C=0), "C must be a positive integer"),
        (dict(layers=1.5), "layers must be a positive integer"),
        (dict(in_channels=True), "in_channels must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"EvalNetwork: {message}"):
        EvalNetwork(SMALL, **kwargs)
    with pytest.raises(TypeError, match="EvalNetwork: genotype must be a Genotype"):
        EvalNetwork({"normal": []})


def test_gradcheck_whole_network_float64():
    """d cross_entropy / d (stem conv weight, a depthwise weight and a BN scale in a
    reduction cell, the 1x1 conv of a FactorizedReduce, the classifier) of a 3-cell
    network (normal + 2 reduction cells, BN in training mode), in float64."""
    model = EvalNetwork(SMALL, C=2, layers=3, in_channels=1, seed=0)
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    model.train()
    rng = np.random.default_rng(0)
    x = _images(4, 1, size=8, seed=3, dtype=np.float64)
    y = np.array([0, 3, 7, 9])
    reduction = model.cells[1]
    assert reduction.reduction
    sep = reduction._ops[0]  # ('sep_conv_3x3', 0) at stride 2
    assert isinstance(sep, SepConv)
    factorized = model.cells[2].preprocess0
    assert isinstance(factorized, FactorizedReduce)
    targets = [
        (model.stem[0], "weight"),
        (sep.op[0].op[1], "weight"),  # depthwise 3x3, stride 2
        (sep.op[1].op[3], "weight"),  # the BN scale (affine) ending the second block
        (factorized.conv_2, "weight"),
        (model.classifier, "weight"),
    ]
    weights = []
    for module, name in targets:
        w = module._parameters[name].data.copy()
        if name == "weight" and isinstance(module, nn.BatchNorm2d):
            w = w + 0.1 * rng.standard_normal(w.shape)  # not all ones
        weights.append(Tensor(w, requires_grad=True))

    def eval_network_loss(*ws):
        # gradcheck passes float64 copies; put them in the network in place of its own
        for (module, name), w in zip(targets, ws):
            module._parameters[name] = w
        return F.cross_entropy(model(x), y)

    report = minidarts.gradcheck(eval_network_loss, *weights)
    assert report.n_checks == sum(w.numel() for w in weights)  # every element
    print(f"evaluation network gradcheck: {report}")
