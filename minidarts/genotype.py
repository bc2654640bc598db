"""Genotype: the discrete cell read off the relaxed one, DARTS's derivation rule.

After the search, each intermediate node keeps its two strongest incoming
edges, and each kept edge its strongest operation, 'none' excluded:

    strength(edge) = max over o != none of softmax(alpha_edge)_o
    node j keeps the 2 edges with the largest strength, each with its argmax op.

The rule reads softmax(alpha), not raw alpha (reading raw alpha is a known bug of
some public DARTS code; with the sigmoid relaxation of issue 7 the weights are
sigmoid(alpha)). The result is printed in DARTS's own form,

    Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=[2, 3, 4, 5])

so that other DARTS code can take it, and saved as JSON.
"""

import json
from collections import namedtuple

from .operations import PRIMITIVES

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


def parse_cell(weights, steps=4, primitives=PRIMITIVES, k=2):
    """The kept (operation, input node) pairs of one cell, 2 per intermediate node.

    weights: (num_edges, num_ops) array-like of relaxed weights (softmax(alpha)).
    Ties are broken by the lower edge / operation index (a stable order)."""
    rows = [[float(w) for w in row] for row in weights]
    expected = sum(2 + i for i in range(steps))
    if len(rows) != expected or any(len(r) != len(primitives) for r in rows):
        raise ValueError(
            f"parse_cell: weights must have shape ({expected}, {len(primitives)}) for "
            f"{steps} nodes, got ({len(rows)}, {len(rows[0]) if rows else 0})"
        )
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


def derive_genotype(weights_normal, weights_reduce, steps=4, multiplier=4, primitives=PRIMITIVES):
    """The Genotype of a searched network from its relaxed weights of both cell types."""
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(
        normal=parse_cell(weights_normal, steps, primitives),
        normal_concat=concat,
        reduce=parse_cell(weights_reduce, steps, primitives),
        reduce_concat=concat,
    )


def genotype_to_str(genotype):
    """DARTS's printed form: Genotype(normal=[('op', i), ...], normal_concat=[...], ...)."""
    return (
        f"Genotype(normal={[tuple(e) for e in genotype.normal]!r}, "
        f"normal_concat={list(genotype.normal_concat)!r}, "
        f"reduce={[tuple(e) for e in genotype.reduce]!r}, "
        f"reduce_concat={list(genotype.reduce_concat)!r})"
    )


def genotype_to_dict(genotype):
    """A JSON-ready dict ({'normal': [[op, input], ...], ...})."""
    return {
        "normal": [[op, int(i)] for op, i in genotype.normal],
        "normal_concat": [int(i) for i in genotype.normal_concat],
        "reduce": [[op, int(i)] for op, i in genotype.reduce],
        "reduce_concat": [int(i) for i in genotype.reduce_concat],
    }


def genotype_from_dict(d, primitives=PRIMITIVES):
    """Inverse of genotype_to_dict, checking every operation name and input index."""
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
                raise ValueError(f"genotype {cell}[{pos}]: unknown operation {op!r}")
            if not 0 <= i < node + 2:
                raise ValueError(
                    f"genotype {cell}[{pos}]: node {node} can take inputs 0..{node + 1}, got {i}"
                )
            gene.append((op, i))
        cells[cell] = gene
    return Genotype(
        cells["normal"], list(d["normal_concat"]), cells["reduce"], list(d["reduce_concat"])
    )


def save_genotype(genotype, path):
    """Write the genotype as JSON, with DARTS's printed form beside it."""
    data = genotype_to_dict(genotype)
    data["darts"] = genotype_to_str(genotype)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def load_genotype(path):
    """Read a genotype JSON written by save_genotype."""
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a genotype JSON file ({e})") from None
    return genotype_from_dict(data)
