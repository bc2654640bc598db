"""Genotype: the discrete cell read off the relaxed one, by DARTS's derivation rule
or, for complexity-controlled searches, by the expected-cost rule (at the end).

After the search, each intermediate node keeps its two strongest incoming
edges, and each kept edge its strongest operation, 'none' excluded:

    strength(edge) = max over o != none of softmax(alpha_edge)_o
    node j keeps the 2 edges with the largest strength, each with its argmax op.

The rule reads softmax(alpha), not raw alpha (reading raw alpha is a known bug of
some public DARTS code). The result is printed in DARTS's own form,

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=[2, 3, 4, 5])

so that other DARTS code can take it, and saved as JSON.

With the sigmoid relaxation (Fair DARTS) the weights are sigmoid(alpha), each in
(0, 1) and independent of the others. Fair DARTS keeps every operation whose
weight exceeds a threshold (0.85), which gives cells with any number of inputs
per node. Here the genotype keeps DARTS's shape, so that the evaluation network
and other DARTS code take it unchanged: the same rule, on sigmoid weights,

    strength(edge) = max over o != none of sigmoid(alpha_edge)_o
    node j keeps the 2 edges with the largest strength, each with its argmax op,

and threshold_record() lists beside it, in the genotype JSON, which operations
pass Fair DARTS's threshold.
"""

import json
import math
from collections import namedtuple

from .operations import PRIMITIVES, operation_names

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

FAIR_DARTS_THRESHOLD = 0.85  # Fair DARTS keeps the operations with sigmoid(alpha) above this


def parse_cell(weights, steps=4, primitives=PRIMITIVES, k=2):
    """The kept (operation, input node) pairs of one cell, k per intermediate node.

    weights: (num_edges, num_ops) array-like of relaxed weights (softmax(alpha), or
    sigmoid(alpha) with the sigmoid relaxation), the edges of node 0 first. DARTS's rule:
    an edge is as strong as its best operation other than 'none'; each node keeps its k
    strongest incoming edges, strongest first, each with that operation. Ties are broken
    by the lower edge / operation index (a stable order)."""
    rows = [[float(w) for w in row] for row in weights]
    expected = sum(2 + i for i in range(steps))
    if len(rows) != expected or any(len(r) != len(primitives) for r in rows):
        raise ValueError(
            f"parse_cell: weights must have shape ({expected}, {len(primitives)}) for "
            f"{steps} nodes, got ({len(rows)}, {len(rows[0]) if rows else 0})"
        )
    if not all(math.isfinite(w) for row in rows for w in row):
        # NaN compares false with everything: a ranking of them would be an arbitrary cell
        raise ValueError(
            "parse_cell: the weights hold NaN or inf (a search that diverged?); no "
            "genotype can be derived from them"
        )
    # BEGIN SOLUTION genotype: gene, the (op name, input) pairs of DARTS's rule, node by node
    # HINT: node j has j + 2 inputs, rows start..start + j + 2; pick with max/sorted and a
    # HINT: key of (weight, -index) or (-strength, index) for the lower-index tie-break
    candidates = [i for i, name in enumerate(primitives) if name != "none"]
    gene, start = [], 0
    for node in range(steps):
        n_inputs = node + 2
        edges = rows[start : start + n_inputs]
        best_op = [max(candidates, key=lambda o, r=r: (r[o], -o)) for r in edges]
        strength = [edges[i][best_op[i]] for i in range(n_inputs)]
        kept = sorted(range(n_inputs), key=lambda i: (-strength[i], i))[:k]
        for i in kept:  # strongest first, as DARTS lists them
            gene.append((primitives[best_op[i]], i))
        start += n_inputs
    return gene
    # END SOLUTION


def threshold_cell(weights, steps=4, primitives=PRIMITIVES, threshold=FAIR_DARTS_THRESHOLD):
    """Fair DARTS's rule on one cell: every (node, input, operation) whose weight
    exceeds `threshold`, 'none' excluded, as dicts {node, input, op, weight}, in edge
    and operation order. weights: (num_edges, num_ops) sigmoid(alpha). A node may
    get any number of inputs, none included."""
    rows = [[float(w) for w in row] for row in weights]
    expected = sum(2 + i for i in range(steps))
    if len(rows) != expected or any(len(r) != len(primitives) for r in rows):
        raise ValueError(
            f"threshold_cell: weights must have shape ({expected}, {len(primitives)}) for "
            f"{steps} nodes, got ({len(rows)}, {len(rows[0]) if rows else 0})"
        )
    kept, e = [], 0
    for node in range(steps):
        for i in range(node + 2):
            for o, name in enumerate(primitives):
                if name != "none" and rows[e][o] > threshold:
                    kept.append({"node": node, "input": i, "op": name, "weight": rows[e][o]})
            e += 1
    return kept


def threshold_record(
    weights_normal, weights_reduce, steps=4, primitives=PRIMITIVES, threshold=FAIR_DARTS_THRESHOLD
):
    """What Fair DARTS's threshold rule would keep in both cell types (JSON-ready):
    {'threshold': t, 'normal': [...], 'reduce': [...]}, entries as threshold_cell's."""
    return {
        "threshold": threshold,
        "normal": threshold_cell(weights_normal, steps, primitives, threshold),
        "reduce": threshold_cell(weights_reduce, steps, primitives, threshold),
    }


RULES = ("darts", "expected-cost")


def edge_index(steps):
    """(node, input) -> edge number, in the order the cell lays out its edges."""
    index, e = {}, 0
    for node in range(steps):
        for i in range(node + 2):
            index[(node, i)] = e
            e += 1
    return index


def expected_cost_op(row, cost_row, primitives=PRIMITIVES):
    """The operation of one edge under the expected-cost rule: the op whose weight
    count is nearest to the edge's expected weight count under its relaxed weights,

        E_e = sum_o p_{e,o} * params(o),     op_e = argmin_{o != none} |params(o) - E_e|,

    ties going to the most probable of the tied operations. As probability moves to
    'none' and the pools, E_e falls and the discrete edge follows it down, which
    DARTS's argmax over the non-'none' operations does not see; and, unlike an argmax,
    an undecided edge is not read as its single largest weight."""
    rows = [float(w) for w in row]
    costs = [float(c) for c in cost_row]
    expected = sum(p * c for p, c in zip(rows, costs)) / sum(rows)
    real = [o for o in range(len(rows)) if primitives[o] != "none"]
    gap = min(abs(costs[o] - expected) for o in real)
    tied = [o for o in real if abs(costs[o] - expected) == gap]
    return max(tied, key=lambda o: (rows[o], -o))


def parse_cell_by_cost(weights, costs, steps=4, primitives=PRIMITIVES):
    """The expected-cost rule on one cell, for complexity-controlled searches: the
    kept edges are DARTS's (two per node, by the strongest non-'none' weight), and
    each takes expected_cost_op of its relaxed weights. costs: (num_edges, num_ops)
    weight counts of every operation on every edge (Complexity.cost_table)."""
    gene = parse_cell(weights, steps, primitives)
    rows = [list(r) for r in weights]
    edge_of = edge_index(steps)
    out = []
    for pos, (_, i) in enumerate(gene):
        e = edge_of[(pos // 2, i)]
        out.append((primitives[expected_cost_op(rows[e], costs[e], primitives)], i))
    return out


def derive_genotype(
    weights_normal,
    weights_reduce,
    steps=4,
    multiplier=4,
    primitives=PRIMITIVES,
    rule="darts",
    costs=None,
):
    """The Genotype of a searched network from its relaxed weights of both cell types.

    rule "darts": DARTS's rule (parse_cell); "expected-cost": parse_cell_by_cost, which
    needs costs = {'normal': table, 'reduce': table} of per-edge weight counts."""
    concat = list(range(2 + steps - multiplier, steps + 2))
    if rule == "darts":
        normal = parse_cell(weights_normal, steps, primitives)
        reduce = parse_cell(weights_reduce, steps, primitives)
    elif rule == "expected-cost":
        if costs is None:
            raise ValueError("derive_genotype: the expected-cost rule needs the cost tables")
        normal = parse_cell_by_cost(weights_normal, costs["normal"], steps, primitives)
        reduce = parse_cell_by_cost(weights_reduce, costs["reduce"], steps, primitives)
    else:
        raise ValueError(f"derive_genotype: rule must be one of {RULES}, got {rule!r}")
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat)


def genotype_to_str(genotype):
    """DARTS's printed form: Genotype(normal=[('op', i), ...], normal_concat=[...], ...)."""
    return (
        f"Genotype(normal={[tuple(e) for e in genotype.normal]!r}, "
        f"normal_concat={list(genotype.normal_concat)!r}, "
        f"reduce={[tuple(e) for e in genotype.reduce]!r}, "
        f"reduce_concat={list(genotype.reduce_concat)!r})"
    )


def describe_genotype(genotype, kinds=("normal", "reduce")):
    """The printed form of the cells a network really has: DARTS's form when it has
    both types; with one reduction cell (the paper's search network) the normal half
    comes from an alpha that never entered the loss, so it is named as unused
    instead of being printed as a result."""
    if "normal" in kinds:
        return genotype_to_str(genotype)
    return (
        f"Genotype(reduce={[tuple(e) for e in genotype.reduce]!r}, "
        f"reduce_concat={list(genotype.reduce_concat)!r}; normal: untrained, unused)"
    )


def unused_marker(kinds):
    """The entry save_genotype writes beside a genotype derived from a network with the
    cell types `kinds`: {'unused': [...]} naming each half the network lacked (the
    one-cell network's normal cell), {} when it had both. DARTS's file format needs
    both halves, so a half whose alpha never entered the loss is kept but marked: every
    writer of a search's genotype (the search, its sweep) marks it the same way, and
    `train` refuses to build cells from it (unused_halves reads it back)."""
    unused = [k for k in ("normal", "reduce") if k not in kinds]
    return {"unused": unused} if unused else {}


def unused_halves(path):
    """The cell types a genotype JSON marks as unused (save_genotype's 'unused')."""
    with open(path) as f:
        data = json.load(f)
    unused = data.get("unused", []) if isinstance(data, dict) else []
    return [k for k in unused if k in ("normal", "reduce")]


def genotype_to_dict(genotype):
    """A JSON-ready dict ({'normal': [[op, input], ...], ...})."""
    return {
        "normal": [[op, int(i)] for op, i in genotype.normal],
        "normal_concat": [int(i) for i in genotype.normal_concat],
        "reduce": [[op, int(i)] for op, i in genotype.reduce],
        "reduce_concat": [int(i) for i in genotype.reduce_concat],
    }


def genotype_from_dict(d, primitives=None):
    """Inverse of genotype_to_dict, checking every operation name and input index.
    `primitives`: the operations a gene may name ('none' never); None for every
    registered one (operations.register_operation), looked up at call time."""
    primitives = operation_names() if primitives is None else tuple(primitives)
    if not isinstance(d, dict):
        raise ValueError(
            "genotype: expected an object with keys normal, normal_concat, reduce, "
            f"reduce_concat, got a {type(d).__name__}"
        )
    missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(d)
    if missing:
        raise ValueError(f"genotype: missing keys {sorted(missing)}")
    cells = {}
    for cell in ("normal", "reduce"):
        gene = []
        for pos, entry in enumerate(d[cell]):
            if (
                not isinstance(entry, (list, tuple))
                or len(entry) != 2
                or isinstance(entry[1], bool)
                or not isinstance(entry[1], int)
            ):
                raise ValueError(f"genotype {cell}[{pos}]: expected [op, input], got {entry!r}")
            op, i = entry
            node = pos // 2
            if op not in primitives or op == "none":
                known = ", ".join(p for p in primitives if p != "none")
                raise ValueError(
                    f"genotype {cell}[{pos}]: unknown operation {op!r}; expected one of "
                    f"{known} (a custom operation must be registered with "
                    "register_operation before its genotype loads)"
                )
            if not 0 <= i < node + 2:
                raise ValueError(
                    f"genotype {cell}[{pos}]: node {node} can take inputs 0..{node + 1}, got {i}"
                )
            gene.append((op, i))
        cells[cell] = gene
    return Genotype(
        cells["normal"], list(d["normal_concat"]), cells["reduce"], list(d["reduce_concat"])
    )


def save_genotype(genotype, path, extra=None, primitives=None):
    """Write the genotype as JSON, with DARTS's printed form beside it, the search
    space (`primitives`, when given: the operation names it was searched over) and the
    entries of `extra` (a dict, e.g. the sigmoid threshold record) after them."""
    data = genotype_to_dict(genotype)
    data["darts"] = genotype_to_str(genotype)
    if primitives is not None:
        data["primitives"] = [str(p) for p in primitives]
    clash = set(extra or {}) & set(data)
    if clash:
        raise ValueError(f"save_genotype: extra keys {sorted(clash)} would replace the genotype's")
    data.update(extra or {})
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def load_genotype(path, primitives=None):
    """Read a genotype JSON written by save_genotype. `primitives`: the operations its
    genes may name; None for every registered one, so a genotype of custom operations
    loads once they are registered (operations.register_operation)."""
    with open(path) as f:
        text = f.read()
    if text.lstrip().startswith("Genotype("):
        raise ValueError(
            f"{path}: DARTS's text form (genotype.txt), kept for reading; load the "
            "genotype.json written beside it"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a genotype JSON file ({e})") from None
    genotype = genotype_from_dict(data, primitives)
    _check_agrees(path, data, genotype)
    return genotype


def _check_agrees(path, data, genotype):
    """The entries save_genotype writes beside the cells must agree with them: the
    cells are what is read, so a file whose `darts` line (DARTS's printed form) was
    edited, or whose cells name an operation outside its `primitives`, says two things."""
    darts = data.get("darts")
    if darts is not None and darts != genotype_to_str(genotype):
        raise ValueError(
            f"{path}: its 'darts' line does not match its cells (normal, reduce, the "
            f"*_concat lists), which are what is read: the cells give {genotype_to_str(genotype)}; "
            "edit the cells, and correct or delete the 'darts' line"
        )
    space = data.get("primitives")
    if space is None:
        return
    if not isinstance(space, list) or not all(isinstance(p, str) for p in space):
        raise ValueError(f"{path}: 'primitives' must be a list of operation names, got {space!r}")
    outside = sorted({op for op, _ in genotype.normal + genotype.reduce} - set(space))
    if outside:
        raise ValueError(
            f"{path}: its cells name {', '.join(outside)}, which its 'primitives' (the "
            f"operations it was searched over: {', '.join(space)}) do not hold"
        )
