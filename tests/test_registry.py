"""The open search space: operations.register_operation.

A registered operation is searched with by naming it in `primitives`; its weight count
comes from building it (never from its name), so an 11x11 separable convolution and a
1x1 convolution are counted exactly as the built modules, in op_param_count and in the
complexity's cost table; a count given at registration is used instead; an operation
swapped in behind an old name is counted afresh; an unknown name fails with the
registered ones listed; a genotype of custom operations saves and loads."""

import numpy as np
import pytest

import minidarts as md
import minidarts.nn.functional as F
from minidarts.darts import operations
from minidarts.darts.architect import Architect
from minidarts.darts.complexity import Complexity, cell_plan
from minidarts.darts.eval_network import EvalNetwork
from minidarts.darts.genotype import load_genotype, save_genotype
from minidarts.darts.mixed_op import MixedOp
from minidarts.darts.network import Network
from minidarts.darts.operations import (
    PRIMITIVES,
    ReLUConvBN,
    SepConv,
    UnknownOperationError,
    op_param_count,
    register_operation,
)
from minidarts.engine import random
from minidarts.nn import optim

SPACE = PRIMITIVES + ("sep_conv_11x11", "conv_1x1")


@pytest.fixture
def registry():
    """Register the two new operations; put the registry back as it was afterwards."""
    saved_ops, saved_counts = dict(operations.OPS), dict(operations._GIVEN_COUNTS)
    register_operation(
        "sep_conv_11x11", lambda C, stride, affine: SepConv(C, C, 11, stride, 5, affine)
    )
    register_operation("conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine))
    yield
    operations.OPS.clear()
    operations.OPS.update(saved_ops)
    operations._GIVEN_COUNTS.clear()
    operations._GIVEN_COUNTS.update(saved_counts)


def built(name, C, stride, affine):
    return sum(p.numel() for p in operations.OPS[name](C, stride, affine).parameters())


@pytest.mark.parametrize("C", [4, 16])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [False, True])
def test_new_operations_are_counted_as_built(registry, C, stride, affine):
    bn = 2 * C if affine else 0
    # sep_conv_kxk = 2 (k^2 C + C^2 + BN); conv 1x1 = C^2 + BN: the built modules agree
    assert op_param_count("sep_conv_11x11", C, stride, affine) == 2 * (121 * C + C * C + bn)
    assert op_param_count("sep_conv_11x11", C, stride, affine) == built(
        "sep_conv_11x11", C, stride, affine
    )
    assert op_param_count("conv_1x1", C, stride, affine) == C * C + bn
    assert op_param_count("conv_1x1", C, stride, affine) == built("conv_1x1", C, stride, affine)


def test_the_issues_numbers(registry):
    # the name-parsing count read k = 1 off 'sep_conv_11x11' and gave 2 (16 + 256) = 544
    assert op_param_count("sep_conv_11x11", 16, 1) == 4384


def test_counting_by_building_leaves_the_global_generator_alone(registry):
    state = random.get_state()
    op_param_count("sep_conv_11x11", 24, 2, affine=True)
    assert random.get_state() == state


def test_complexity_costs_match_the_mixed_ops_of_a_network(registry):
    model = Network(C=2, layers=3, steps=2, multiplier=2, primitives=SPACE, seed=0)
    complexity = Complexity(model)
    counted = {k: np.zeros((5, len(SPACE))) for k in ("normal", "reduce")}
    for cell, (kind, _, _) in zip(model.cells, cell_plan(model)):
        for e, mixed in enumerate(cell._ops):
            for o, op in enumerate(mixed._ops):
                counted[kind][e, o] += sum(p.numel() for p in op.parameters())
    for kind in counted:
        np.testing.assert_array_equal(np.array(complexity.cost_table[kind]), counted[kind])
    assert complexity.cost_table["reduce"][0][SPACE.index("sep_conv_11x11")] > 0


def test_a_search_step_and_a_retraining_with_the_new_operations(registry, tmp_path):
    model = Network(C=2, layers=1, steps=2, multiplier=2, primitives=SPACE, seed=0)
    complexity = Complexity(model)
    a_opt = optim.Adam(model.arch_parameters(), lr=0.05)
    architect = Architect(model, a_opt, complexity=complexity)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((4, 1, 12, 12)), dtype=np.float32)
    y = md.tensor(np.array([0, 1, 2, 3]))
    before = model.alphas["reduce"].numpy().copy()
    architect.step(x, y, lam=0.1)
    assert not np.array_equal(model.alphas["reduce"].numpy(), before)

    # give the new operations the largest alpha: the derived cell takes them
    big = model.alphas["reduce"].data
    big[:, SPACE.index("sep_conv_11x11")] = 5.0
    genotype = complexity.genotype_of(model.alphas)
    assert {op for op, _ in genotype.reduce} == {"sep_conv_11x11"}
    assert complexity.genotype_params(genotype) == 4 * op_param_count("sep_conv_11x11", 4, 2)

    path = tmp_path / "genotype.json"
    save_genotype(genotype, path, primitives=SPACE)
    assert load_genotype(path) == genotype  # every registered operation may be named
    assert load_genotype(path, primitives=SPACE) == genotype
    with pytest.raises(ValueError, match="unknown operation '(sep_conv_11x11|conv_1x1)'"):
        load_genotype(path, primitives=PRIMITIVES)

    net = EvalNetwork(genotype, C=2, layers=1, seed=0)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert np.isfinite(loss.item())


def test_a_given_count_is_used_and_replaced_with_the_builder(registry):
    register_operation("conv_1x1", operations.OPS["conv_1x1"], param_count=7)
    assert op_param_count("conv_1x1", 16, 1) == 7
    register_operation(
        "conv_1x1", operations.OPS["conv_1x1"], param_count=lambda C, stride, affine: 3 * C
    )
    assert op_param_count("conv_1x1", 16, 1) == 48
    register_operation("conv_1x1", operations.OPS["conv_1x1"])  # no count: built again
    assert op_param_count("conv_1x1", 16, 1) == 256


def test_an_operation_swapped_behind_an_old_name_is_counted_afresh(registry):
    assert op_param_count("sep_conv_3x3", 8, 1) == 2 * (9 * 8 + 64)
    register_operation("sep_conv_3x3", operations.OPS["sep_conv_11x11"])
    assert op_param_count("sep_conv_3x3", 8, 1) == 2 * (121 * 8 + 64)
    model = Network(C=2, layers=1, steps=2, multiplier=2, seed=0)
    row = Complexity(model).cost_table["reduce"][2]  # an edge at stride 1, C = 4
    assert row[PRIMITIVES.index("sep_conv_3x3")] == 2 * (121 * 4 + 16)


def test_the_complexity_looks_the_count_up_at_call_time(monkeypatch):
    monkeypatch.setattr(operations, "op_param_count", lambda name, C, stride: 1)
    model = Network(C=2, layers=1, steps=2, multiplier=2, seed=0)
    assert Complexity(model).cost_table["reduce"][0] == [1] * len(PRIMITIVES)


def test_an_unknown_operation_names_the_registered_ones():
    with pytest.raises(UnknownOperationError) as err:
        op_param_count("conv_7x7", 16, 1)
    msg = str(err.value)
    assert msg.startswith("unknown operation 'conv_7x7': the registered operations are none,")
    assert "sep_conv_3x3" in msg and "register_operation" in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="unknown operation 'conv_7x7'.*dil_conv_5x5"):
        MixedOp(4, 1, PRIMITIVES + ("conv_7x7",))
    with pytest.raises(ValueError, match="unknown operation 'conv_7x7'"):
        Network(C=2, layers=1, steps=2, multiplier=2, primitives=("none", "conv_7x7"))


def test_register_operation_refuses_bad_arguments():
    with pytest.raises(ValueError, match="'none' is the absent edge"):
        register_operation("none", lambda C, stride, affine: None)
    with pytest.raises(TypeError, match="builder must be callable"):
        register_operation("x", 3)
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="param_count must be"):
            register_operation("x", lambda C, stride, affine: None, param_count=bad)
    for name in ("", " x", 5):
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            register_operation(name, lambda C, stride, affine: None)
    assert "x" not in operations.OPS
