"""Lesson 07: the cell as a DAG, eq. (1), and the DARTS supernetwork built from it.

A cell is a small directed acyclic graph. It has two input nodes, x^(0) and x^(1) (the
outputs of the two previous cells, written c_{k-2} and c_{k-1}), and N intermediate
nodes (N = 4 in DARTS and in the paper). Every intermediate node sums one operation
applied to every node before it, equation (1):

    x^(j) = sum_{i < j} o^(i,j)(x^(i)),

and the cell's output c_k is the channel concatenation of the intermediate nodes. Node j
(counting the inputs as 0 and 1) has j incoming edges, so a cell with N nodes has
2 + 3 + ... + (N + 1) edges: 14 for N = 4. During the search every o^(i,j) is a mixed
operation (lesson 06) with its own row alpha^(i,j) of 8 numbers: alpha is a 14 x 8 matrix.

The supernetwork stacks L cells:

    image -> stem (3x3 conv to 3C channels, BN) -> cell_0 -> ... -> cell_{L-1}
          -> global average pool -> linear -> 10 logits.

Each cell takes the outputs of the two cells before it (the stem's output twice for the
first). The cells at L//3 and 2L//3 are reduction cells: their edges leaving the inputs
have stride 2, halving H and W, and their channel count C doubles. All normal cells share
one alpha, all reduction cells another; these two matrices are the architecture, kept
apart from the weights because the bilevel problem (eq. 3, lesson 08) trains them on
other data with another optimiser. The paper's MNIST network has L = 1: one cell, which by
the rule above is a reduction cell.

After the search the discrete cell (the genotype) is read off softmax(alpha): every
intermediate node keeps its 2 strongest incoming edges, where an edge's strength is its
largest softmax weight among the real operations ('none' excluded), and each kept edge
keeps that operation.

Run from the repository root:  python lessons/07_cell_and_network.py
(figures: lessons/figures/07)
"""

import sys
from pathlib import Path

try:
    ROOT = Path(__file__).resolve().parent.parent
except NameError:  # a notebook (Jupyter, VS Code) has no __file__ and runs in lessons/
    ROOT = Path.cwd().parent if Path.cwd().name == "lessons" else Path.cwd()
sys.path.insert(0, str(ROOT))  # minidarts is not pip-installed: import it from the repo

import numpy as np  # noqa: E402

import minidarts as md  # noqa: E402
import minidarts.nn.functional as F  # noqa: E402
from minidarts import nn, optim  # noqa: E402
from minidarts.darts.cell import Cell, num_edges  # noqa: E402
from minidarts.darts.complexity import Complexity  # noqa: E402
from minidarts.darts.genotype import derive_genotype, genotype_to_str, parse_cell  # noqa: E402
from minidarts.darts.network import Network, relax  # noqa: E402
from minidarts.darts.operations import PRIMITIVES  # noqa: E402
from minidarts.jobs import plots  # noqa: E402

FIG_DIR = ROOT / "lessons" / "figures" / "07"
md.set_default_device("cpu")  # the lesson compares with NumPy on the CPU
md.manual_seed(7)
rng = np.random.default_rng(7)
OP = {name: k for k, name in enumerate(PRIMITIVES)}


def section(title):
    print(f"\n=== {title} ===")


def node_name(i):
    return ("c_{k-2}", "c_{k-1}")[i] if i < 2 else f"node {i - 2}"


def images(n, channels, size):
    return md.tensor(rng.standard_normal((n, channels, size, size)).astype(np.float32))


# %% 1. The edges of a 4-node cell
section("1. The edges of a 4-node cell")
STEPS = 4
edges = []  # (source, target) in the order the cell stores its mixed operations
for j in range(STEPS):
    for i in range(j + 2):  # intermediate node j (graph node j + 2) takes nodes 0 .. j + 1
        edges.append((i, j + 2))
edge_index = {e: k for k, e in enumerate(edges)}
print(f"{'edge':>4} | {'from':>8} -> {'to':<7} | stride in a reduction cell")
for k, (i, j) in enumerate(edges):
    print(f"{k:4d} | {node_name(i):>8} -> {node_name(j):<7} | {2 if i < 2 else 1}")
assert len(edges) == num_edges(STEPS) == 2 + 3 + 4 + 5 == 14
reduce_cell = Cell(STEPS, 4, 6, 6, 4, reduction=True, reduction_prev=False)
strides = [m._ops[OP["none"]].stride for m in reduce_cell._ops]  # the Zero op knows its stride
assert len(reduce_cell._ops) == 14
assert strides == [2 if i < 2 else 1 for i, _ in edges], strides
print("Cell(..., reduction=True) holds 14 MixedOps in this order, stride 2 on the input edges")

# %% 2. A cell computed node by node, by hand, against Cell.forward
section("2. A cell computed node by node, by hand, against Cell.forward")
C_in, C = 6, 4
for reduction in (False, True):
    cell = Cell(STEPS, 4, C_in, C_in, C, reduction=reduction, reduction_prev=False)
    s0, s1 = images(2, C_in, 8), images(2, C_in, 8)
    alpha = md.tensor(rng.standard_normal((14, len(PRIMITIVES))).astype(np.float32))
    weights = F.softmax(alpha, dim=-1)
    # the inputs first go through a 1x1 ReLU-conv-BN each, to C channels
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for j in range(2, STEPS + 2):  # eq. (1): node j = sum over i < j of o^(i,j)(x^(i))
        k = [edge_index[(i, j)] for i in range(j)]
        terms = [cell._ops[e](states[i], weights[e]) for i, e in zip(range(j), k)]
        node = terms[0]
        for t in terms[1:]:
            node = node + t
        states.append(node)
    by_hand = np.concatenate([s.numpy() for s in states[2:]], axis=1)
    out = cell(s0, s1, weights)
    np.testing.assert_allclose(out.numpy(), by_hand, rtol=1e-6, atol=1e-6)
    kind = "reduction" if reduction else "normal"
    size = 8 // (2 if reduction else 1)
    assert out.shape == (2, 4 * C, size, size)
    print(
        f"{kind:>9} cell: inputs {s0.shape} -> preprocessed {states[0].shape} -> nodes "
        f"{states[2].shape} ... -> concat {out.shape} = Cell.forward"
    )
print("the output concatenates the 4 intermediate nodes: 4 * C channels")

# %% 3. The supernetwork: shapes through stem, cells, pool, classifier
section("3. The supernetwork: shapes through stem, cells, pool, classifier")
for layers, C_net in ((3, 4), (1, 8)):
    md.manual_seed(70 + layers)
    model = Network(C=C_net, layers=layers, steps=STEPS, multiplier=4, stem_multiplier=3)
    x = images(2, 1, 28)
    what = "the paper's MNIST network" if layers == 1 else "a 3-cell network"
    print(f"{what}: Network(C={C_net}, layers={layers}), {model.num_parameters()} weights")
    weights = {kind: relax(a) for kind, a in model.alphas.items()}
    s0 = s1 = model.stem(x)
    print(f"  image {x.shape} -> stem {s1.shape}")
    expected_c, size = C_net, 28
    for n, cell in enumerate(model.cells):
        w = weights["reduce"] if cell.reduction else weights["normal"]
        s0, s1 = s1, cell(s0, s1, w)
        if cell.reduction:
            expected_c, size = 2 * expected_c, size // 2
        assert s1.shape == (2, 4 * expected_c, size, size), s1.shape
        kind = "reduction" if cell.reduction else "normal"
        print(f"  cell {n} ({kind:>9}, C = {cell.C:2d}) -> {s1.shape}")
    pooled = F.adaptive_avg_pool2d(s1, 1)
    logits = model.classifier(pooled.reshape(2, -1))
    print(f"  global average pool -> {pooled.shape} -> linear -> {logits.shape}")
    np.testing.assert_allclose(logits.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert [c.reduction for c in model.cells] == ([False, True, True] if layers == 3 else [True]), (
        "reductions at L//3 and 2L//3"
    )
print("walking the layers by hand gives Network.forward's logits")

# %% 4. The architecture is not a weight: alpha is kept apart from parameters()
section("4. The architecture is not a weight: alpha is kept apart from parameters()")
alphas = model.arch_parameters()
params = list(model.parameters())
print(f"arch_parameters(): {[tuple(a.shape) for a in alphas]} = 2 x 14 x 8 = 224 numbers")
print(f"parameters(): {len(params)} tensors, {sum(p.numel() for p in params)} weights; ", end="")
print(f"state_dict() keys with 'alpha': {[k for k in model.state_dict() if 'alpha' in k]}")
assert all(a.shape == (14, len(PRIMITIVES)) for a in alphas)
assert not any(a is p for a in alphas for p in params)
assert model.cell_kinds() == ("reduce",)  # one cell: its normal alpha is never used

x, y = images(4, 1, 28), np.array([3, 1, 4, 1])
before = {k: a.numpy().copy() for k, a in model.alphas.items()}
stem_before = model.stem[0].weight.numpy().copy()
loss = F.cross_entropy(model(x), y)
loss.backward()
print("one backward of the loss reaches alpha too: sum |grad alpha_reduce| = ", end="")
print(f"{np.abs(alphas[1].grad).sum():.3g}")
print(f"(alpha_normal.grad = {alphas[0].grad}: a one-cell network has no normal cell)")
assert np.abs(alphas[1].grad).sum() > 0 and alphas[0].grad is None
optim.SGD(model.parameters(), lr=0.1).step()  # a weight step, as in the search
assert not np.array_equal(model.stem[0].weight.numpy(), stem_before)
for k, a in model.alphas.items():
    assert np.array_equal(a.numpy(), before[k])
print("an SGD step over parameters() moved the weights and left alpha exactly as it was;")
print("the search steps alpha with its own Adam, on validation batches (lesson 08)")

# %% 5. gradcheck of the loss w.r.t. alpha through a whole network (float64)
section("5. gradcheck of the loss w.r.t. alpha through a whole network (float64)")
tiny = Network(C=2, layers=1, steps=2, multiplier=2, seed=7)
for t in list(tiny.parameters()) + list(tiny.buffers()):
    if np.issubdtype(t.data.dtype, np.floating):
        t.data = t.data.astype(np.float64)  # the weights too: gradcheck casts only its inputs
x64 = md.tensor(rng.standard_normal((3, 1, 8, 8)), dtype=np.float64)
y64 = np.array([2, 7, 1])
a_reduce = md.tensor(rng.standard_normal((5, len(PRIMITIVES))), requires_grad=True)
a_normal = md.tensor(np.zeros((5, len(PRIMITIVES))), dtype=np.float64)  # unused: no cell


def loss_of_alpha(alpha_reduce):
    logits = tiny(x64, {"normal": a_normal, "reduce": alpha_reduce})
    return F.cross_entropy(logits, y64)


report = md.gradcheck(loss_of_alpha, a_reduce)
print("Network(C=2, layers=1, steps=2): stem, a reduction cell of 5 mixed edges (all 8")
print("operations each, BN in training mode), pool, classifier; 3 images 8x8")
print(f"d cross_entropy / d alpha_reduce (5 x 8): {report}")
assert report.n_checks == 5 * len(PRIMITIVES)

# %% 6. The genotype: DARTS's rule on a hand-made alpha
section("6. The genotype: DARTS's rule on a hand-made alpha")
# Written edge by edge (rows in the order of section 1), so that we know the answer:
alpha = np.zeros((14, len(PRIMITIVES)))
alpha[edge_index[(0, 2)], OP["sep_conv_3x3"]] = 3.0  # node 0: both edges, clear favourites
alpha[edge_index[(1, 2)], OP["dil_conv_3x3"]] = 2.0
alpha[edge_index[(0, 3)], OP["none"]] = 5.0  # node 1: 'none' dominates this edge, and 'none'
alpha[edge_index[(0, 3)], OP["skip_connect"]] = 1.0  # does not count: its best real op is weak
alpha[edge_index[(1, 3)], OP["max_pool_3x3"]] = 1.5
alpha[edge_index[(2, 3)], OP["sep_conv_5x5"]] = 2.5
alpha[edge_index[(0, 4)], :] = 10.0  # node 2: huge raw alphas, but a flat softmax...
alpha[edge_index[(0, 4)], OP["dil_conv_5x5"]] = 10.3
alpha[edge_index[(1, 4)], OP["avg_pool_3x3"]] = 2.0  # ...so these two are stronger
alpha[edge_index[(3, 4)], OP["skip_connect"]] = 1.2
alpha[edge_index[(1, 5)], OP["sep_conv_3x3"]] = 0.8  # node 3
alpha[edge_index[(4, 5)], OP["dil_conv_5x5"]] = 1.8
alpha[edge_index[(2, 5)], OP["max_pool_3x3"]] = 0.5

weights = relax(md.tensor(alpha)).numpy()  # softmax over the 8 operations of each edge
expected = [
    ("sep_conv_3x3", 0),
    ("dil_conv_3x3", 1),  # node 0, strongest first
    ("sep_conv_5x5", 2),
    ("max_pool_3x3", 1),  # node 1: edge c_{k-2} lost, its 'none' ignored
    ("avg_pool_3x3", 1),
    ("skip_connect", 3),  # node 2: the flat edge from c_{k-2} lost
    ("dil_conv_5x5", 4),
    ("sep_conv_3x3", 1),  # node 3
]
for j in range(STEPS):
    rows = [edge_index[(i, j + 2)] for i in range(j + 2)]
    strength = [weights[r][1:].max() for r in rows]  # 'none' is column 0
    print(
        f"node {j}: strengths "
        + ", ".join(f"{node_name(i)} {s:.3f}" for i, s in enumerate(strength))
    )
gene = parse_cell(weights, steps=STEPS)
print(f"kept: {gene}")
assert PRIMITIVES[0] == "none" and gene == expected
# for the other cell type, an alpha as the search starts it (1e-3 * randn): nearly uniform
start = relax(md.tensor(1e-3 * rng.standard_normal((14, len(PRIMITIVES))))).numpy()
genotype = derive_genotype(weights, start, steps=STEPS, multiplier=4)
assert genotype.normal == expected and genotype.normal_concat == [2, 3, 4, 5]
print("derive_genotype(hand-made alpha as the normal cell, 1e-3 * randn as the reduction cell):")
print(genotype_to_str(genotype))
print("the second is a valid cell too, but an arbitrary one: at alpha ~ 0 every weight is")
print(f"~1/8 (here {start.min():.5f} .. {start.max():.5f}) and the ranking is noise")
assert np.abs(start - 1 / len(PRIMITIVES)).max() < 1e-3

wrong = parse_cell(alpha, steps=STEPS)  # the known bug: reading raw alpha
flat = weights[edge_index[(0, 4)]][1:].max()
print(f"read from RAW alpha instead, node 2 would keep {wrong[4:6]}: the flat edge")
print(f"from c_{{k-2}} wins on raw values (10.3) though its softmax weight is only {flat:.3f}")
assert ("dil_conv_5x5", 0) in wrong[4:6] and wrong != expected

# %% 7. Drawing the cell
section("7. Drawing the cell")
FIG_DIR.mkdir(parents=True, exist_ok=True)
path = plots.draw_genotype(genotype, str(FIG_DIR / "genotype.png"), title="section 6:")
assert Path(path).is_file()
print(f"figure: {Path(path).relative_to(ROOT)}")
print("(normal: the hand-made alpha; reduction: the nearly uniform one)")
# the paper's network has one (reduction) cell: the hand-made cell in its place
paper_cell = genotype._replace(reduce=genotype.normal)
cell_weights = nn.count_parameters(model.cells[0]._ops)  # its 14 mixed edges
kept_weights = Complexity(model).genotype_params(paper_cell)  # the 8 kept operations
print(f"the paper's cell: {cell_weights} weights on 14 mixed edges (all 8 operations each);")
print(f"this genotype keeps 8 edges with one operation each: {kept_weights} weights")
assert 0 < kept_weights < cell_weights

# %% [markdown]
# ## Exercises
#
# What to change, and what to expect.
#
# 1. Set STEPS = 5 in section 1. Expect 2 + 3 + 4 + 5 + 6 = num_edges(5) = 20 edges, so the
#    `== 14` assert fails; with multiplier 5 such a cell outputs 5 C channels.
#
# 2. In section 6, raise the flat edge's dil_conv_5x5 from 10.3 to 14. Expect its softmax weight
#    to rise to e^4 / (7 + e^4), above the other edges of node 2, so that node keeps
#    (dil_conv_5x5, 0) and (avg_pool_3x3, 1), and the expected genotype no longer matches.
#
# 3. In section 4, step the SGD over model.parameters() + model.arch_parameters(). Expect alpha
#    to move with the weights, on the training batch, and the assert that it stayed put to fail.
#    Lesson 08, section 6, measures why the architecture must not learn from the training data.

# %%
print("\nlesson 07: all checks passed")
