"""Tests of genotype.py: DARTS's rule for reading the discrete cell off softmax(alpha),
the printed DARTS form, and the JSON files.

The rule (DARTS, Liu et al. 2019): for every intermediate node keep the two incoming
edges whose strongest non-'none' operation has the largest weight, each with that
operation. Weights are softmax(alpha) of each edge; the expected genotypes below are
worked out by hand from hand-made alphas.
"""

import json
from collections import namedtuple

import numpy as np
import pytest
from scipy.special import softmax

from minidarts.darts.genotype import (
    Genotype,
    derive_genotype,
    expected_cost_op,
    genotype_from_dict,
    genotype_to_dict,
    genotype_to_str,
    load_genotype,
    parse_cell,
    parse_cell_by_cost,
    save_genotype,
)
from minidarts.darts.operations import PRIMITIVES

OP = {name: i for i, name in enumerate(PRIMITIVES)}
N_OPS = len(PRIMITIVES)

# DARTS's published second-order cell (genotypes.py of quark0/darts), in its printed form.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def by_node(gene):
    """The kept (op, input) pairs grouped per node, as sets (the order within a node
    carries no meaning: the node sums its two inputs)."""
    return [set(gene[k : k + 2]) for k in range(0, len(gene), 2)]


def alpha_rows(spec, n_edges, base=0.0):
    """An (n_edges, N_OPS) alpha: `base` everywhere, then spec[edge] = {op: value}."""
    alpha = np.full((n_edges, N_OPS), base)
    for edge, ops in spec.items():
        for name, value in ops.items():
            alpha[edge, OP[name]] = value
    return alpha


@pytest.mark.genotype
def test_known_answer_two_nodes():
    # steps=2: node 0 has edges 0, 1 (inputs 0, 1); node 1 has edges 2, 3, 4 (inputs 0, 1, 2).
    alpha = alpha_rows(
        {
            0: {"sep_conv_3x3": 3.0},
            1: {"dil_conv_5x5": 2.0},
            2: {"avg_pool_3x3": 1.0},  # the weakest edge of node 1: dropped
            3: {"skip_connect": 4.0},
            4: {"max_pool_3x3": 2.5, "sep_conv_5x5": 2.4},
        },
        5,
    )
    gene = parse_cell(softmax(alpha, axis=1), steps=2)
    assert len(gene) == 4
    assert by_node(gene) == [
        {("sep_conv_3x3", 0), ("dil_conv_5x5", 1)},
        {("skip_connect", 1), ("max_pool_3x3", 2)},
    ]


@pytest.mark.genotype
def test_known_answer_four_nodes_keeps_the_two_strongest_edges():
    rng = np.random.default_rng(0)
    n_edges = 14
    # Small noise everywhere, then one clearly strongest operation per edge with a
    # strength that is distinct per edge, so the answer is unique.
    alpha = 0.01 * rng.standard_normal((n_edges, N_OPS))
    names = [p for p in PRIMITIVES if p != "none"]
    strength = rng.permutation(n_edges) * 0.3 + 1.0
    best = [names[e % len(names)] for e in range(n_edges)]
    for e in range(n_edges):
        alpha[e, OP[best[e]]] = strength[e]
    expected, start = [], 0
    for node in range(4):
        n_in = node + 2
        order = sorted(range(n_in), key=lambda i: -strength[start + i])[:2]
        expected.append({(best[start + i], i) for i in order})
        start += n_in
    gene = parse_cell(softmax(alpha, axis=1), steps=4)
    assert by_node(gene) == expected


@pytest.mark.genotype
def test_none_is_never_chosen_even_when_largest():
    # Every edge is dominated by 'none'; node 1's edge from input 0 has the strongest
    # real operation although its 'none' weight is the largest of all.
    alpha = alpha_rows(
        {
            0: {"none": 9.0, "avg_pool_3x3": 1.0},
            1: {"none": 8.0, "sep_conv_5x5": 0.5},
            2: {"none": 20.0, "dil_conv_3x3": 3.0},
            3: {"none": 5.0, "skip_connect": 0.2},
            4: {"none": 5.0, "max_pool_3x3": 2.0},
        },
        5,
    )
    w = softmax(alpha, axis=1)
    assert (w.argmax(axis=1) == OP["none"]).all()
    gene = parse_cell(w, steps=2)
    assert all(op != "none" for op, _ in gene), f"'none' was chosen: {gene}"
    # strengths: node 1 edges 2, 3, 4 -> max non-none softmax weight per row
    s = [w[e, 1:].max() for e in (2, 3, 4)]
    keep = sorted(range(3), key=lambda i: -s[i])[:2]
    names = {0: "dil_conv_3x3", 1: "skip_connect", 2: "max_pool_3x3"}
    assert by_node(gene) == [
        {("avg_pool_3x3", 0), ("sep_conv_5x5", 1)},
        {(names[i], i) for i in keep},
    ]


@pytest.mark.genotype
def test_rule_reads_softmax_not_raw_alpha():
    """softmax is shift-invariant per edge, raw alpha is not: an edge whose operations
    all have large raw alpha (a big offset) but no favourite is weak, an edge with a small
    offset and one clear favourite is strong. Both readings agree on each edge's best
    operation but disagree on which edges a node keeps."""
    # steps=2: node 1 keeps 2 of its 3 edges (2, 3, 4 from inputs 0, 1, 2).
    alpha = np.zeros((5, N_OPS))
    alpha[0, OP["sep_conv_3x3"]] = 1.0
    alpha[1, OP["sep_conv_3x3"]] = 1.0
    # edge 2: offset 10 on every op, sep_conv_5x5 slightly ahead -> raw max 10.5, weak softmax
    alpha[2, :] = 10.0
    alpha[2, OP["sep_conv_5x5"]] = 10.5
    # edge 3: offset 0, skip_connect far ahead -> raw max 3, softmax ~0.74
    alpha[3, OP["skip_connect"]] = 3.0
    # edge 4: offset 0, dil_conv_3x3 ahead -> raw max 2.5, softmax ~0.64
    alpha[4, OP["dil_conv_3x3"]] = 2.5
    w = softmax(alpha, axis=1)
    # same best operation per edge under both readings
    assert (w.argmax(axis=1) == alpha.argmax(axis=1)).all()
    from_softmax = by_node(parse_cell(w, steps=2))[1]
    from_raw = by_node(parse_cell(alpha, steps=2))[1]
    assert from_softmax == {("skip_connect", 1), ("dil_conv_3x3", 2)}
    assert from_raw == {("sep_conv_5x5", 0), ("skip_connect", 1)}  # the known bug's answer
    assert from_softmax != from_raw


@pytest.mark.genotype
def test_uniform_weights_break_ties_by_lowest_index():
    # At initialisation softmax(alpha) is nearly uniform; exact ties go to the lower
    # edge and operation index (documented stable order).
    gene = parse_cell(np.full((14, N_OPS), 1.0 / N_OPS), steps=4)
    assert by_node(gene) == [{("max_pool_3x3", 0), ("max_pool_3x3", 1)}] * 4


@pytest.mark.genotype
def test_derive_genotype_both_cells_and_concat():
    rng = np.random.default_rng(1)
    wn = softmax(rng.standard_normal((14, N_OPS)), axis=1)
    wr = softmax(rng.standard_normal((14, N_OPS)), axis=1)
    g = derive_genotype(wn, wr, steps=4, multiplier=4)
    assert g.normal == parse_cell(wn, 4) and g.reduce == parse_cell(wr, 4)
    assert g.normal_concat == [2, 3, 4, 5] and g.reduce_concat == [2, 3, 4, 5]
    g2 = derive_genotype(wn[:5], wr[:5], steps=2, multiplier=1)
    assert g2.normal_concat == [3] and len(g2.normal) == 4


@pytest.mark.genotype
def test_printed_form_is_darts_form_and_evaluates_back():
    DartsGenotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    g = eval(DARTS_V2, {"Genotype": DartsGenotype})
    text = genotype_to_str(g)
    assert text == DARTS_V2
    back = eval(text, {"Genotype": DartsGenotype})
    assert back == g and tuple(back) == tuple(Genotype(*g))
    # a derived genotype prints in the same form and reads back equal
    rng = np.random.default_rng(2)
    derived = derive_genotype(
        softmax(rng.standard_normal((14, N_OPS)), axis=1),
        softmax(rng.standard_normal((14, N_OPS)), axis=1),
    )
    text = genotype_to_str(derived)
    assert text.startswith("Genotype(normal=[('") and "normal_concat=[2, 3, 4, 5]" in text
    assert "reduce=[('" in text and text.endswith("reduce_concat=[2, 3, 4, 5])")
    assert tuple(eval(text, {"Genotype": DartsGenotype})) == tuple(derived)


@pytest.mark.genotype
@pytest.mark.parametrize("steps, k", [(4, 2), (3, 1), (5, 3)])
def test_the_rule_holds_on_random_weights(steps, k):
    """On random softmax weights (no ties), every node's kept pairs obey the rule: k
    distinct inputs of that node (all of them where it has fewer), each with its
    strongest operation other than 'none', listed strongest first, and no input left
    out is stronger than one kept. (A gene written down for one example fails here.)"""
    rng = np.random.default_rng(steps * 10 + k)
    none = OP["none"]
    for _ in range(20):
        weights = softmax(rng.normal(size=(sum(2 + j for j in range(steps)), N_OPS)), axis=1)
        gene = parse_cell(weights, steps=steps, k=k)
        counts = [min(k, j + 2) for j in range(steps)]  # node j has j + 2 inputs
        assert len(gene) == sum(counts)
        start = 0
        for node, count in enumerate(counts):
            rows = weights[start : start + node + 2]
            ops = np.delete(rows, none, axis=1)
            strength = ops.max(axis=1)
            kept = gene[sum(counts[:node]) : sum(counts[:node]) + count]
            inputs = [i for _, i in kept]
            assert len(set(inputs)) == count and all(0 <= i < node + 2 for i in inputs)
            for name, i in kept:
                assert name != "none" and rows[i, OP[name]] == strength[i]
            assert [strength[i] for i in inputs] == sorted(strength[inputs], reverse=True)
            left_out = [i for i in range(node + 2) if i not in inputs]
            assert all(strength[i] < min(strength[inputs]) for i in left_out)
            start += node + 2


def test_json_round_trip(tmp_path):
    g = eval(DARTS_V2, {"Genotype": Genotype})
    path = tmp_path / "g.json"
    save_genotype(g, path)
    data = json.loads(path.read_text())
    assert data["darts"] == DARTS_V2
    assert data["normal"][0] == ["sep_conv_3x3", 0]
    back = load_genotype(path)
    assert back == g
    assert genotype_from_dict(genotype_to_dict(g)) == g


def test_parse_cell_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"parse_cell.*\(14, 8\).*\(13, 8\)"):
        parse_cell(np.zeros((13, N_OPS)), steps=4)
    with pytest.raises(ValueError, match=r"parse_cell.*\(5, 8\)"):
        parse_cell(np.zeros((5, 7)), steps=2)


def test_parse_cell_rejects_weights_that_are_not_finite():
    """NaN compares false with everything: ranked, it gave a cell of max pools."""
    weights = np.full((14, N_OPS), 1 / N_OPS)
    weights[3, 2] = np.nan
    with pytest.raises(ValueError, match="parse_cell: the weights hold NaN or inf"):
        parse_cell(weights, steps=4)
    weights[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        derive_genotype(weights, weights, 4, 4)


def test_bad_json_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"normal": [["sep_conv_3x3", 0],')
    with pytest.raises(ValueError, match="broken.json.*not a genotype JSON"):
        load_genotype(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("reduce"), r"missing keys \['reduce'\]"),
        (lambda d: d["normal"].__setitem__(0, ["conv_7x7", 0]), "unknown operation 'conv_7x7'"),
        (lambda d: d["normal"].__setitem__(1, ["none", 1]), "unknown operation 'none'"),
        (lambda d: d["reduce"].__setitem__(0, ["skip_connect", 2]), r"inputs 0\.\.1, got 2"),
        (lambda d: d["reduce"].__setitem__(6, ["skip_connect", -1]), r"inputs 0\.\.4, got -1"),
        (lambda d: d["normal"].__setitem__(2, ["skip_connect"]), r"expected \[op, input\]"),
        (lambda d: d["normal"].__setitem__(3, ["skip_connect", "1"]), r"expected \[op, input\]"),
        (lambda d: d["reduce"].__setitem__(4, "skip_connect"), r"expected \[op, input\]"),
    ],
)
def test_bad_genotype_contents_are_clear_errors(tmp_path, change, message):
    g = eval(DARTS_V2, {"Genotype": Genotype})
    d = genotype_to_dict(g)
    change(d)
    with pytest.raises(ValueError, match=message):
        genotype_from_dict(d)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=message):
        load_genotype(path)


def test_a_file_that_disagrees_with_itself_is_refused(tmp_path):
    """A user who edits the 'darts' line (the cells are what is read) changed nothing,
    without a word; cells outside the file's own 'primitives' were not checked."""
    g = eval(DARTS_V2, {"Genotype": Genotype})
    path = tmp_path / "g.json"
    save_genotype(g, path, primitives=PRIMITIVES)
    data = json.loads(path.read_text())
    path.write_text(
        json.dumps({**data, "darts": DARTS_V2.replace("sep_conv_3x3", "max_pool_3x3", 1)})
    )
    with pytest.raises(ValueError, match="g.json: its 'darts' line does not match its cells"):
        load_genotype(path)
    narrow = [p for p in PRIMITIVES if p != "dil_conv_3x3"]
    path.write_text(json.dumps({**data, "primitives": narrow}))
    with pytest.raises(ValueError, match="its cells name dil_conv_3x3, which its 'primitives'"):
        load_genotype(path)
    path.write_text(json.dumps({**data, "primitives": "all"}))
    with pytest.raises(ValueError, match="'primitives' must be a list of operation names"):
        load_genotype(path)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "darts"}))
    assert load_genotype(path) == g  # the cells alone are a genotype


def test_json_that_is_not_an_object_is_a_clear_error(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="genotype"):
        load_genotype(path)
    path.write_text("42")
    with pytest.raises(ValueError, match="genotype"):
        load_genotype(path)


# --- the expected-cost rule (complexity-controlled searches) -------------------------

# weight counts of the 8 operations on an edge, in PRIMITIVES order (the numbers of a
# C = 8 stride-1 edge: none, pools and skip 0, sep 3x3 272, sep 5x5 528, dil 3x3 136,
# dil 5x5 264)
COSTS = [0, 0, 0, 0, 272, 528, 136, 264]


@pytest.mark.parametrize("seed", range(20))
def test_expected_cost_op_is_nearest_to_the_expected_count(seed):
    row = softmax(np.random.default_rng(seed).normal(scale=2.0, size=8))
    o = expected_cost_op(row, COSTS)
    assert PRIMITIVES[o] != "none"
    expected = float(np.dot(row, COSTS))
    # by brute force: no real operation is nearer, and of the equally near ones it is
    # the most probable
    gaps = {k: abs(COSTS[k] - expected) for k in range(1, 8)}
    assert gaps[o] == pytest.approx(min(gaps.values()))
    assert row[o] == max(row[k] for k in gaps if gaps[k] == gaps[o])


def test_expected_cost_op_by_hand():
    # weight on 'none' and the pools: E = 0.10 * 272 + 0.28 * 528 + 0.05 * (136 + 264)
    # = 195.0, nearest dil 3x3 (136, gap 59) rather than dil 5x5 (264, gap 69); DARTS's
    # rule would take the strongest op, the 5x5 separable convolution
    row = [0.30, 0.12, 0.05, 0.05, 0.10, 0.28, 0.05, 0.05]
    assert PRIMITIVES[expected_cost_op(row, COSTS)] == "dil_conv_3x3"
    assert PRIMITIVES[int(np.argmax(row[1:])) + 1] == "sep_conv_5x5"
    # almost all on 'none': E near 0, the most probable parameter-free op
    row = [0.93, 0.01, 0.03, 0.01, 0.005, 0.005, 0.005, 0.005]
    assert PRIMITIVES[expected_cost_op(row, COSTS)] == "avg_pool_3x3"
    # uniform: E = 1200 / 8 = 150, nearest dil 3x3 (136)
    assert PRIMITIVES[expected_cost_op([1 / 8] * 8, COSTS)] == "dil_conv_3x3"


@pytest.mark.genotype
def test_expected_cost_keeps_darts_edges_and_follows_the_cost_down():
    rng = np.random.default_rng(3)
    w = softmax(rng.normal(size=(14, 8)), axis=1)
    costs = [COSTS] * 14
    darts_gene = parse_cell(w, 4)
    gene = parse_cell_by_cost(w, costs, 4)
    assert [i for _, i in gene] == [i for _, i in darts_gene]  # the same kept edges
    assert all(op != "none" for op, _ in gene)
    # moving weight to 'none' step by step never raises the cell's weight count
    index = {p: k for k, p in enumerate(PRIMITIVES)}
    previous = None
    for shift in np.linspace(0, 0.99, 12):
        moved = w * (1 - shift)
        moved[:, 0] += shift
        gene = parse_cell_by_cost(moved, costs, 4)
        total = sum(COSTS[index[op]] for op, _ in gene)
        assert previous is None or total <= previous
        previous = total
    assert total == 0  # all but 'none' gone: a parameter-free cell


@pytest.mark.genotype
def test_derive_genotype_rules():
    w = softmax(np.random.default_rng(0).normal(size=(14, 8)), axis=1)
    tables = {"normal": [COSTS] * 14, "reduce": [COSTS] * 14}
    g = derive_genotype(w, w, 4, 4, rule="expected-cost", costs=tables)
    assert g.reduce == parse_cell_by_cost(w, tables["reduce"], 4)
    assert derive_genotype(w, w, 4, 4) == derive_genotype(w, w, 4, 4, rule="darts")
    with pytest.raises(ValueError, match="needs the cost tables"):
        derive_genotype(w, w, 4, 4, rule="expected-cost")
    with pytest.raises(ValueError, match="rule must be one of"):
        derive_genotype(w, w, 4, 4, rule="argmax")
