"""Tests of the sigmoid relaxation of Fair DARTS beside DARTS's softmax: the zero-one
loss (value, float64 gradient check of the whole architecture loss, its effect), the
genotype rule on sigmoid weights (DARTS's top 2 edges, with Fair DARTS's threshold
recorded), the complexity of sigmoid weights, the config and `--relaxation sigmoid`
end to end.

Why it matters (the paper's discussion): with softmax, the operations of one edge
compete for a total weight of 1, so an edge with several good operations looks weaker
than an edge with one; sigmoid weights are independent, and the zero-one loss pushes
each of them to 0 or 1."""

import json

import numpy as np
import pytest
from scipy.special import expit

import minidarts
from minidarts.__main__ import main
from minidarts.darts.architect import Architect, zero_one_loss
from minidarts.darts.complexity import Complexity
from minidarts.darts.genotype import (
    FAIR_DARTS_THRESHOLD,
    derive_genotype,
    load_genotype,
    parse_cell,
    save_genotype,
    threshold_cell,
    threshold_record,
)
from minidarts.darts.network import Network
from minidarts.darts.operations import PRIMITIVES
from minidarts.engine.autograd import Tensor
from minidarts.jobs.config import make_config, resolved_zero_one_weight
from minidarts.jobs.search import Search
from minidarts.nn import optim

OP = {name: i for i, name in enumerate(PRIMITIVES)}
KINDS = ("normal", "reduce")


def test_zero_one_loss_value():
    rng = np.random.default_rng(0)
    a = {k: rng.standard_normal((5, 8)) * 2 for k in KINDS}
    both = np.concatenate([a["normal"].ravel(), a["reduce"].ravel()])
    value = zero_one_loss({k: Tensor(v) for k, v in a.items()}).item()
    assert value == pytest.approx(-np.mean((expit(both) - 0.5) ** 2), rel=1e-12)
    reduce_only = zero_one_loss({k: Tensor(v) for k, v in a.items()}, kinds=("reduce",))
    assert reduce_only.item() == pytest.approx(-np.mean((expit(a["reduce"]) - 0.5) ** 2))
    # bounded: 0 when every weight is 0.5, -1/4 when every weight is 0 or 1
    assert zero_one_loss({k: Tensor(np.zeros((5, 8))) for k in KINDS}).item() == 0.0
    ends = {k: Tensor(np.where(v > 0, 50.0, -50.0)) for k, v in a.items()}
    assert zero_one_loss(ends).item() == pytest.approx(-0.25, rel=1e-12)


def test_gradcheck_sigmoid_architecture_loss_float64():
    """d/dalpha of L_val + lambda * complexity + w01 * zero_one with sigmoid weights, a
    whole 3-cell network (normal and reduction cells), every alpha entry, float64."""
    model = Network(C=2, layers=3, steps=2, multiplier=2, relaxation="sigmoid", seed=0)
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data = t.data.astype(np.float64)
    architect = Architect(model, None, complexity=Complexity(model), zero_one_weight=10.0)
    rng = np.random.default_rng(1)
    x, y = Tensor(rng.standard_normal((4, 1, 8, 8))), np.array([0, 3, 7, 9])
    a_normal = Tensor(rng.standard_normal((5, 8)), requires_grad=True)
    a_reduce = Tensor(rng.standard_normal((5, 8)), requires_grad=True)

    def sigmoid_arch_loss(alpha_normal, alpha_reduce):
        return architect.loss(x, y, 0.1, {"normal": alpha_normal, "reduce": alpha_reduce})[0]

    report = minidarts.gradcheck(sigmoid_arch_loss, a_normal, a_reduce)
    assert report.n_checks == 80
    print(f"sigmoid architecture loss gradcheck: {report}")


def test_zero_one_loss_pushes_weights_to_zero_or_one():
    """Adam on the zero-one loss alone: every weight leaves 0.5 on its own side."""
    rng = np.random.default_rng(2)
    alpha = Tensor(rng.uniform(-0.5, 0.5, (5, 8)), requires_grad=True)
    opt = optim.Adam([alpha], lr=0.1)
    start = expit(alpha.data.copy())
    for _ in range(100):
        opt.zero_grad()
        zero_one_loss({"reduce": alpha}, kinds=("reduce",)).backward()
        opt.step()
    end = expit(alpha.data)
    assert np.all(np.sign(end - 0.5) == np.sign(start - 0.5))
    assert np.all(np.abs(end - 0.5) > 0.45)


def test_zero_one_loss_needs_sigmoid():
    model = Network(C=2, layers=1, steps=2, multiplier=2)
    with pytest.raises(ValueError, match="zero-one loss acts on sigmoid weights"):
        Architect(model, None, zero_one_weight=1.0)
    sigmoid = Network(C=2, layers=1, steps=2, multiplier=2, relaxation="sigmoid")
    assert Architect(sigmoid, None, zero_one_weight=1.0).penalty(sigmoid.alphas) is not None
    assert Architect(sigmoid, None).penalty(sigmoid.alphas) is None


def _cell(rows):
    """(5, 8) sigmoid weights of a 2-node cell from {edge: {op: weight}}, others 0.1."""
    w = np.full((5, 8), 0.1)
    for e, ops in rows.items():
        for name, v in ops.items():
            w[e, OP[name]] = v
    return w


def test_genotype_rule_on_sigmoid_weights():
    """Top 2 edges per node by their strongest non-none weight; 'none' never chosen even
    when it is the largest; the threshold record lists every (node, input, op) above
    0.85, which may be any number per node."""
    w = _cell(
        {
            0: {"none": 0.99, "skip_connect": 0.6},
            1: {"sep_conv_3x3": 0.9, "dil_conv_3x3": 0.88},
            2: {"avg_pool_3x3": 0.3},
            3: {"max_pool_3x3": 0.7},
            4: {"sep_conv_5x5": 0.86},
        }
    )
    gene = parse_cell(w, steps=2)
    assert gene == [
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_5x5", 2),
        ("max_pool_3x3", 1),
    ]
    kept = threshold_cell(w, steps=2)
    assert FAIR_DARTS_THRESHOLD == 0.85
    assert [(k["node"], k["input"], k["op"]) for k in kept] == [
        (0, 1, "sep_conv_3x3"),
        (0, 1, "dil_conv_3x3"),
        (1, 2, "sep_conv_5x5"),
    ]
    assert kept[0]["weight"] == 0.9
    assert threshold_cell(w, steps=2, threshold=0.95) == []  # 'none' at 0.99 does not count
    record = threshold_record(w, np.full((5, 8), 0.5), steps=2)
    assert record["threshold"] == 0.85 and record["reduce"] == [] and record["normal"] == kept
    with pytest.raises(ValueError, match=r"threshold_cell: weights must have shape \(5, 8\)"):
        threshold_cell(np.zeros((4, 8)), steps=2)


def test_threshold_record_travels_in_the_genotype_json(tmp_path):
    w = _cell({1: {"sep_conv_3x3": 0.9}})
    genotype = derive_genotype(w, w, steps=2, multiplier=2)
    extra = {"sigmoid_threshold": threshold_record(w, w, steps=2)}
    save_genotype(genotype, tmp_path / "g.json", extra)
    saved = json.loads((tmp_path / "g.json").read_text())
    assert saved["sigmoid_threshold"]["reduce"] == [
        {"node": 0, "input": 1, "op": "sep_conv_3x3", "weight": 0.9}
    ]
    assert load_genotype(tmp_path / "g.json") == genotype  # DARTS's fields, unchanged
    with pytest.raises(ValueError, match=r"extra keys \['darts'\] would replace"):
        save_genotype(genotype, tmp_path / "h.json", {"darts": "x"})


def test_softmax_and_sigmoid_read_the_same_alpha_differently():
    """Node 0: edge 0 has three strong operations (alpha 3), edge 1 one (alpha 2.5). The
    softmax shares an edge's weight among its operations, so edge 1 looks stronger
    (0.64 against 0.31); the independent sigmoids rank edge 0 first (0.95 against 0.92).
    Edge 2 of node 1 is the weakest under both rules."""
    alpha = np.zeros((5, 8), np.float32)
    alpha[0, [OP["sep_conv_3x3"], OP["sep_conv_5x5"], OP["dil_conv_3x3"]]] = 3.0
    alpha[1, OP["skip_connect"]] = 2.5
    alpha[2, OP["avg_pool_3x3"]] = 1.0
    alpha[3, OP["dil_conv_5x5"]] = 2.0
    alpha[4, OP["max_pool_3x3"]] = 2.0
    genes = {}
    for relaxation in ("softmax", "sigmoid"):
        model = Network(C=2, layers=1, steps=2, multiplier=2, relaxation=relaxation)
        for a in model.arch_parameters():
            a.data[...] = alpha
        genes[relaxation] = Complexity(model).genotype_of(model.alphas).reduce
    assert genes["softmax"][:2] == [("skip_connect", 1), ("sep_conv_3x3", 0)]
    assert genes["sigmoid"][:2] == [("sep_conv_3x3", 0), ("skip_connect", 1)]
    for gene in genes.values():
        assert {i for _, i in gene[2:]} == {1, 2}


def test_complexity_of_sigmoid_weights():
    """sum_o sigmoid(alpha_o) params(o) / sum over all ops: 0 with every op off, 1 with
    every op on (the richest architecture), and a one-op-per-edge architecture scores
    its own weight count over that norm."""
    model = Network(C=4, layers=1, steps=2, multiplier=2, relaxation="sigmoid")
    c = Complexity(model)
    table = np.array(c.cost_table["reduce"])
    assert c.norm == table.sum()
    off = {k: Tensor(np.full((5, 8), -60.0, np.float32)) for k in KINDS}
    on = {k: Tensor(np.full((5, 8), 60.0, np.float32)) for k in KINDS}
    assert c(off).item() == pytest.approx(0.0, abs=1e-12)
    assert c(on).item() == pytest.approx(1.0, rel=1e-6)
    choice = [OP["sep_conv_5x5"], OP["skip_connect"], OP["dil_conv_3x3"], 0, OP["avg_pool_3x3"]]
    one = np.full((5, 8), -60.0, np.float32)
    one[np.arange(5), choice] = 60.0
    value = c({k: Tensor(one) for k in KINDS}).item()
    assert value == pytest.approx(table[np.arange(5), choice].sum() / table.sum(), rel=1e-6)
    assert value < table.max(axis=1).sum() / table.sum()  # below softmax's richest too


def test_config_relaxation_and_zero_one_weight():
    assert make_config().relaxation == "softmax"
    assert resolved_zero_one_weight(make_config()) == 0.0
    assert resolved_zero_one_weight(make_config(None, {"relaxation": "sigmoid"})) == 10.0
    cfg = make_config(None, {"relaxation": "sigmoid", "zero_one_weight": 0})
    assert resolved_zero_one_weight(cfg) == 0.0
    cfg = make_config(None, {"relaxation": "sigmoid", "zero_one_weight": 2})
    assert resolved_zero_one_weight(cfg) == 2.0 and isinstance(cfg.zero_one_weight, float)
    with pytest.raises(ValueError, match="relaxation must be 'softmax' or 'sigmoid'"):
        make_config(None, {"relaxation": "tanh"})
    with pytest.raises(ValueError, match="zero_one_weight is Fair DARTS's loss"):
        make_config(None, {"zero_one_weight": 1.0})
    with pytest.raises(ValueError, match="zero_one_weight must be >= 0"):
        make_config(None, {"relaxation": "sigmoid", "zero_one_weight": -1.0})


def test_search_wires_the_relaxation_through(tmp_path):
    """A sigmoid search: sigmoid network, complexity normalised for sigmoid weights, and
    an Architect with the zero-one loss at Fair DARTS's weight (0 for softmax)."""
    cfg = make_config("tiny", {"relaxation": "sigmoid", "plots": False})
    search = Search(cfg, folder=str(tmp_path / "s"), log=lambda m: None)
    assert search.model.relaxation == "sigmoid" and search.complexity.relaxation == "sigmoid"
    assert search.architect.zero_one_weight == 10.0
    plain = Search(make_config("tiny"), folder=str(tmp_path / "p"), log=lambda m: None)
    assert plain.model.relaxation == "softmax" and plain.architect.zero_one_weight == 0.0
    assert plain.architect.penalty(plain.model.alphas) is None


def test_cli_sigmoid_search_end_to_end(tmp_path, capsys):
    """`--relaxation sigmoid --order 2`: a sigmoid network, the zero-one loss at its
    default weight 10, sigmoid weights in the records, and the threshold record in the
    genotype JSON beside a DARTS-shaped genotype."""
    argv = ["search", "--preset", "tiny", "--no-plots", "--out", str(tmp_path), "--name", "s"]
    assert main([*argv, "--relaxation", "sigmoid", "--order", "2"]) == 0
    capsys.readouterr()
    run = tmp_path / "s"
    config = json.loads((run / "config.json").read_text())
    assert config["relaxation"] == "sigmoid" and config["order"] == 2
    assert config["zero_one_weight"] is None  # resolved to Fair DARTS's 10 at run time
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    weights = np.array(record["alpha"]["reduce"])
    assert np.all((weights > 0) & (weights < 1))
    assert not np.allclose(weights.sum(axis=1), 1.0)  # independent, not a distribution
    assert np.isfinite(record["arch_loss"])
    saved = json.loads((run / "genotype.json").read_text())
    assert saved["sigmoid_threshold"]["threshold"] == 0.85
    model_weights = {k: np.array(v) for k, v in record["alpha"].items()}
    expected = threshold_record(model_weights["normal"], model_weights["reduce"], steps=2)
    assert saved["sigmoid_threshold"] == json.loads(json.dumps(expected))
    genotype = load_genotype(run / "genotype.json")
    assert len(genotype.reduce) == 4
    code = main(["search", "--preset", "tiny", "--zero-one-weight", "1", "--out", str(tmp_path)])
    assert code == 1 and "relaxation = 'sigmoid'" in capsys.readouterr().err
