"""Tests of complexity.py: the expected weight count of the relaxed architecture.

complexity(alpha) = sum_cells sum_e sum_o softmax(alpha_e)_o params(o, C, stride)
                    / sum_cells sum_e max_o params(o, C, stride)

is checked against counts made by hand from the formulas of the operations, and
against the weights of the built modules; it scores 1 for the richest architecture
and stays in [0, 1]; its float64 gradient is checked numerically; the weights of a
hand-made genotype are counted by hand. A search with a fixed penalty (the paper's
baseline) records the complexity and ends lighter than the same search without it."""

import json

import numpy as np
import pytest
from scipy.special import expit, softmax

import minidarts
from minidarts.darts.complexity import Complexity, cell_plan
from minidarts.darts.genotype import Genotype, derive_genotype
from minidarts.darts.network import Network
from minidarts.darts.operations import PRIMITIVES
from minidarts.engine.autograd import Tensor
from minidarts.jobs.config import make_config
from minidarts.jobs.search import Search

KINDS = ("normal", "reduce")


def params_by_hand(op, C, stride):
    """Weights of one candidate operation on an edge with C channels (BN affine=False
    in the search: no weights), written out from its layers:
    sep_conv k: two (depthwise k x k + pointwise 1x1) pairs = 2 (k^2 C + C^2);
    dil_conv k: one pair = k^2 C + C^2; skip at stride 2 (FactorizedReduce, two 1x1
    convs C -> C/2) = C^2, identity otherwise; pools and none: 0."""
    if op in ("sep_conv_3x3", "sep_conv_5x5"):
        k = 3 if op == "sep_conv_3x3" else 5
        return 2 * (k * k * C + C * C)
    if op in ("dil_conv_3x3", "dil_conv_5x5"):
        k = 3 if op == "dil_conv_3x3" else 5
        return k * k * C + C * C
    if op == "skip_connect":
        return C * C if stride == 2 else 0
    assert op in ("none", "max_pool_3x3", "avg_pool_3x3")
    return 0


def cells_by_hand(C, layers):
    """(kind, channels) of each cell: reduction cells at layers // 3 and 2 layers // 3,
    channels doubled at each. layers = 1: one reduction cell at 2C; layers = 3: a normal
    cell at C, reduction cells at 2C and 4C."""
    return {1: [("reduce", 2 * C)], 3: [("normal", C), ("reduce", 2 * C), ("reduce", 4 * C)]}[
        layers
    ]


def edges_by_hand(steps, kind):
    """(node, input, stride) of every edge: input i < 2 of a reduction cell has stride 2."""
    return [
        (node, i, 2 if kind == "reduce" and i < 2 else 1)
        for node in range(steps)
        for i in range(node + 2)
    ]


def norm_by_hand(C, layers, steps, primitives=PRIMITIVES):
    return sum(
        max(params_by_hand(o, Cc, s) for o in primitives)
        for kind, Cc in cells_by_hand(C, layers)
        for _, _, s in edges_by_hand(steps, kind)
    )


def one_hot(choice, n_ops=8, big=60.0):
    """float64 alphas with `big` on the chosen op of each edge: softmax is one-hot up to
    exp(-big) ~ 1e-26."""
    alphas = {}
    for kind, ops in choice.items():
        a = np.zeros((len(ops), n_ops))
        a[np.arange(len(ops)), ops] = big
        alphas[kind] = Tensor(a)
    return alphas


def _quiet(message):
    pass


def _network(C, layers, steps, **kwargs):
    return Network(C=C, layers=layers, steps=steps, multiplier=2, **kwargs)


# --- the cost table ------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("steps", [2, 3])
def test_cell_plan_is_the_networks_layout(layers, steps):
    model = _network(4, layers, steps)
    plan = cell_plan(model)
    expected = [
        (kind, Cc, [s for _, _, s in edges_by_hand(steps, kind)])
        for kind, Cc in cells_by_hand(4, layers)
    ]
    assert plan == expected
    # and the strides are those of the built operations (a stride-2 skip is a
    # FactorizedReduce, a stride-1 skip an Identity)
    skip = PRIMITIVES.index("skip_connect")
    for cell, (_, _, strides) in zip(model.cells, plan):
        built = [2 if type(m._ops[skip]).__name__ == "FactorizedReduce" else 1 for m in cell._ops]
        assert built == strides


@pytest.mark.parametrize("layers", [1, 3])
def test_cost_table_counts_the_built_operations(layers):
    """cost[kind][e][o], summed over the cells of a kind, is the number of weights of the
    operation modules the network really built (and the hand formula)."""
    model = _network(4, layers, 2)
    c = Complexity(model)
    counted = {k: np.zeros((5, len(PRIMITIVES))) for k in KINDS}
    by_hand = {k: np.zeros((5, len(PRIMITIVES))) for k in KINDS}
    for cell, (kind, Cc) in zip(model.cells, cells_by_hand(4, layers)):
        for e, (mixed, (_, _, s)) in enumerate(zip(cell._ops, edges_by_hand(2, kind))):
            for o, op in enumerate(mixed._ops):
                counted[kind][e, o] += sum(p.numel() for p in op.parameters())
                by_hand[kind][e, o] += params_by_hand(PRIMITIVES[o], Cc, s)
    for k in KINDS:
        np.testing.assert_array_equal(np.array(c.cost_table[k]), counted[k])
        np.testing.assert_array_equal(np.array(c.cost_table[k]), by_hand[k])
    assert c.norm == norm_by_hand(4, layers, 2)
    if layers == 1:
        assert not np.any(c.cost_table["normal"])  # no normal cell, no normal cost


# --- values -------------------------------------------------------------------------


@pytest.mark.parametrize("C, layers, steps", [(2, 1, 2), (4, 3, 2), (6, 3, 3), (8, 1, 4)])
@pytest.mark.complexity
def test_one_hot_alphas_give_the_hand_count(C, layers, steps):
    """One op per edge (chosen at random): the complexity is that architecture's weight
    count over the richest one's, both counted by hand."""
    model = _network(C, layers, steps)
    c = Complexity(model)
    rng = np.random.default_rng(C + layers + steps)
    n_edges = len(edges_by_hand(steps, "normal"))
    for _ in range(5):
        choice = {k: rng.integers(0, len(PRIMITIVES), n_edges) for k in KINDS}
        expected = sum(
            params_by_hand(PRIMITIVES[choice[kind][e]], Cc, s)
            for kind, Cc in cells_by_hand(C, layers)
            for e, (_, _, s) in enumerate(edges_by_hand(steps, kind))
        )
        value = c(one_hot(choice))
        assert value.data.dtype == np.float64 and value.shape == ()
        norm = norm_by_hand(C, layers, steps)
        assert value.item() == pytest.approx(expected / norm, rel=1e-12, abs=1e-15)
        assert c.expected_params(one_hot(choice)) == pytest.approx(expected, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("C, layers, steps", [(4, 1, 2), (4, 3, 2), (2, 3, 4)])
@pytest.mark.complexity
def test_uniform_alphas_give_mean_cost_over_max_cost(C, layers, steps):
    c = Complexity(_network(C, layers, steps))
    n_edges = len(edges_by_hand(steps, "normal"))
    for value in (0.0, 3.7):  # any constant row is uniform
        alphas = {k: Tensor(np.full((n_edges, len(PRIMITIVES)), value)) for k in KINDS}
        mean = sum(
            np.mean([params_by_hand(o, Cc, s) for o in PRIMITIVES])
            for kind, Cc in cells_by_hand(C, layers)
            for _, _, s in edges_by_hand(steps, kind)
        )
        assert c(alphas).item() == pytest.approx(mean / norm_by_hand(C, layers, steps), rel=1e-12)


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.complexity
def test_richest_scores_one_lightest_zero_and_all_in_between(layers):
    c = Complexity(_network(4, layers, 3))
    n_edges = len(edges_by_hand(3, "normal"))
    sep5, none = PRIMITIVES.index("sep_conv_5x5"), PRIMITIVES.index("none")
    richest = one_hot({k: np.full(n_edges, sep5) for k in KINDS})
    assert c(richest).item() == pytest.approx(1.0, rel=1e-12)
    assert c(one_hot({k: np.full(n_edges, none) for k in KINDS})).item() == pytest.approx(
        0.0, abs=1e-15
    )
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 10.0, 100.0):
        for dtype in (np.float32, np.float64):
            for _ in range(10):
                a = {
                    k: Tensor((scale * rng.standard_normal((n_edges, 8))).astype(dtype))
                    for k in KINDS
                }
                value = c(a)
                assert value.data.dtype == dtype  # float32 in, float32 out
                assert 0.0 <= value.item() <= 1.0


@pytest.mark.complexity
def test_unused_cell_kind_does_not_count():
    """The paper's network (one reduction cell): the normal alpha changes nothing and gets
    no gradient at all (a zero one would still let Adam's weight decay move it)."""
    c = Complexity(_network(8, 1, 4))
    assert c.kinds == ("reduce",)
    rng = np.random.default_rng(1)
    a = {k: Tensor(rng.standard_normal((14, 8)), requires_grad=True) for k in KINDS}
    b = {"normal": Tensor(rng.standard_normal((14, 8)) * 5), "reduce": a["reduce"]}
    assert c(a).item() == c(b).item()
    c(a).backward()
    assert a["normal"].grad is None and np.abs(a["reduce"].grad).max() > 0
    assert c({"reduce": a["reduce"]}).item() == c(a).item()
    with pytest.raises(ValueError, match=r"Complexity: alphas has the cell types \['normal'\]"):
        c({"normal": a["normal"]})


@pytest.mark.complexity
def test_sigmoid_relaxation_counts_every_op_and_stays_in_unit_interval():
    """With sigmoid weights each op is on with probability sigmoid(alpha): the expected
    count is sum_o sigmoid(alpha_o) params(o), and the richest architecture has every
    op on, so the normaliser sums the costs instead of taking their maximum."""
    C, layers, steps = 4, 3, 2
    c = Complexity(_network(C, layers, steps, relaxation="sigmoid"))
    rng = np.random.default_rng(2)
    alphas = {k: rng.standard_normal((5, 8)) * 2 for k in KINDS}
    expected = sum(
        expit(alphas[kind][e, o]) * params_by_hand(op, Cc, s)
        for kind, Cc in cells_by_hand(C, layers)
        for e, (_, _, s) in enumerate(edges_by_hand(steps, kind))
        for o, op in enumerate(PRIMITIVES)
    )
    norm = sum(
        params_by_hand(op, Cc, s)
        for kind, Cc in cells_by_hand(C, layers)
        for _, _, s in edges_by_hand(steps, kind)
        for op in PRIMITIVES
    )
    value = c({k: Tensor(a) for k, a in alphas.items()}).item()
    assert value == pytest.approx(expected / norm, rel=1e-12)
    all_on = {k: Tensor(np.full((5, 8), 60.0)) for k in KINDS}
    assert c(all_on).item() == pytest.approx(1.0, rel=1e-12)
    assert 0 <= value <= 1


# --- gradient -------------------------------------------------------------------------


@pytest.mark.parametrize("layers, steps", [(3, 3), (1, 4)])
@pytest.mark.complexity
def test_gradcheck_complexity_float64(layers, steps):
    """d complexity / d alpha, both alphas, every element, by central differences."""
    c = Complexity(_network(4, layers, steps))
    n_edges = len(edges_by_hand(steps, "normal"))
    rng = np.random.default_rng(3)
    a_normal = Tensor(rng.standard_normal((n_edges, 8)), requires_grad=True)
    a_reduce = Tensor(rng.standard_normal((n_edges, 8)), requires_grad=True)

    def complexity(alpha_normal, alpha_reduce):
        return c({"normal": alpha_normal, "reduce": alpha_reduce})

    report = minidarts.gradcheck(complexity, a_normal, a_reduce)
    assert report.n_checks == 2 * n_edges * 8
    print(f"complexity gradcheck (layers {layers}, steps {steps}): {report}")


@pytest.mark.complexity
def test_gradient_moves_probability_to_lighter_operations():
    """At uniform alpha, d complexity / d alpha_{e,o} = (params_o - mean params_e) / (|O| norm):
    positive for the ops heavier than the edge's mean, negative for the lighter ones."""
    C, layers, steps = 4, 3, 2
    c = Complexity(_network(C, layers, steps))
    alphas = {k: Tensor(np.zeros((5, 8)), requires_grad=True) for k in KINDS}
    c(alphas).backward()
    norm = norm_by_hand(C, layers, steps)
    for kind in KINDS:
        cost = np.zeros((5, 8))
        for k2, Cc in cells_by_hand(C, layers):
            if k2 == kind:
                for e, (_, _, s) in enumerate(edges_by_hand(steps, kind)):
                    cost[e] += [params_by_hand(o, Cc, s) for o in PRIMITIVES]
        expected = (cost - cost.mean(axis=1, keepdims=True)) / (8 * norm)
        np.testing.assert_allclose(alphas[kind].grad, expected, rtol=1e-12, atol=1e-18)


# --- genotypes --------------------------------------------------------------------------


def test_genotype_params_of_a_hand_made_genotype():
    """Normal cell at C = 4; reduction cells at 8 and 16, where inputs 0 and 1 are stride 2.

    normal: sep_conv_3x3 <- 0: 2(9*4 + 16) = 104; skip <- 1 (stride 1): 0;
            dil_conv_5x5 <- 2: 25*4 + 16 = 116; max_pool <- 0: 0          -> 220
    reduce: skip <- 0 (stride 2): C^2; sep_conv_5x5 <- 1: 2(25C + C^2);
            dil_conv_3x3 <- 0: 9C + C^2; skip <- 2 (stride 1): 0
            C = 8: 64 + 528 + 136 = 728;  C = 16: 256 + 1312 + 400 = 1968"""
    model = _network(4, 3, 2)
    c = Complexity(model)
    genotype = Genotype(
        normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 0)],
        normal_concat=[2, 3],
        reduce=[("skip_connect", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 0), ("skip_connect", 2)],
        reduce_concat=[2, 3],
    )
    by_formula = 0
    for kind, Cc in cells_by_hand(4, 3):
        gene = genotype.normal if kind == "normal" else genotype.reduce
        for op, i in gene:
            by_formula += params_by_hand(op, Cc, 2 if kind == "reduce" and i < 2 else 1)
    assert by_formula == 220 + 728 + 1968
    assert c.genotype_params(genotype) == by_formula
    # the same from the modules the search network built for those edges
    first_edge = {0: 0, 1: 2}  # node -> index of its edge from input 0
    built = 0
    for cell in model.cells:
        gene = genotype.reduce if cell.reduction else genotype.normal
        for pos, (op, i) in enumerate(gene):
            mixed = cell._ops[first_edge[pos // 2] + i]
            built += sum(p.numel() for p in mixed._ops[PRIMITIVES.index(op)].parameters())
    assert built == by_formula
    # the paper's one-cell network has no normal cell: only the reduce gene counts
    one_cell = Complexity(_network(4, 1, 2))
    assert one_cell.genotype_params(genotype) == 728


def test_genotype_of_reads_softmax_of_alpha():
    c = Complexity(_network(4, 1, 2))
    rng = np.random.default_rng(4)
    alphas = {k: Tensor(rng.standard_normal((5, 8)).astype(np.float32)) for k in KINDS}
    expected = derive_genotype(
        softmax(alphas["normal"].data, axis=1),
        softmax(alphas["reduce"].data, axis=1),
        steps=2,
        multiplier=2,
    )
    assert c.genotype_of(alphas) == expected


# --- the fixed-penalty baseline in a search -----------------------------------------------

# A raised architecture learning rate makes 8 steps enough for a clear effect (measured
# over seeds 0-2: complexity 0.30-0.32 without the penalty, 0.198 with penalty 10).
PENALTY = dict(epochs=2, plots=False, alpha_lr=0.05, eval_batches=1)


@pytest.fixture(scope="module")
def penalty_runs(tmp_path_factory):
    runs = {}
    for penalty in (0.0, 10.0):
        folder = tmp_path_factory.mktemp("penalty") / "run"
        search = Search(
            make_config("tiny", {**PENALTY, "penalty": penalty}), folder=str(folder), log=_quiet
        )
        search.run()
        runs[penalty] = search, folder
    return runs


def test_penalty_search_records_complexity(penalty_runs):
    search, folder = penalty_runs[10.0]
    assert search.architect.complexity is search.complexity
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert 0 <= r["val_acc"] <= 1 and 0 <= r["complexity"] <= 1
        assert isinstance(r["genotype_params"], int) and r["genotype_params"] >= 0
        assert len(r["genotype"]["reduce"]) == 4
    last = records[-1]
    assert last["complexity"] == pytest.approx(search.complexity(search.model.alphas).item())
    assert last["genotype_rule"] == "expected-cost"
    for key, rule in (("genotype", "expected-cost"), ("darts_genotype", "darts")):
        genotype = search.complexity.genotype_of(search.model.alphas, rule)
        assert last[key]["reduce"] == [[op, i] for op, i in genotype.reduce]
        assert last[f"{key}_params"] == search.complexity.genotype_params(genotype)


def test_penalty_pushes_complexity_down(penalty_runs):
    plain, _ = penalty_runs[0.0]
    penalised, _ = penalty_runs[10.0]
    assert plain.architect.complexity is None  # plain DARTS: no penalty term
    c_plain = plain.history[-1]["complexity"]
    c_pen = penalised.history[-1]["complexity"]
    assert c_pen < c_plain - 0.05, (c_plain, c_pen)
    assert penalised.history[-1]["genotype_params"] < plain.history[-1]["genotype_params"]
    # the penalty lowered the complexity at every epoch, from the same start, and the
    # architecture loss carries it: about 10 * complexity (~2) above the plain one
    for a, b in zip(plain.history, penalised.history):
        assert b["complexity"] < a["complexity"]
        assert b["arch_loss"] > a["arch_loss"] + 1.0


def test_penalty_search_leaves_the_unused_normal_alpha_alone(penalty_runs):
    """The tiny network is one reduction cell: its normal alpha takes part in nothing, so
    the search must not move it (it did, by Adam's weight decay on a zero gradient, while
    the complexity term also covered the absent normal cells)."""
    fresh = Network(C=4, layers=1, steps=2, multiplier=2, seed=0)
    for search, _ in penalty_runs.values():
        np.testing.assert_array_equal(
            search.model.alphas["normal"].data, fresh.alphas["normal"].data
        )
        assert not np.array_equal(search.model.alphas["reduce"].data, fresh.alphas["reduce"].data)
