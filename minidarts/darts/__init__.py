"""minidarts.darts: the paper, one equation a file.

operations.py     the 8 candidate operations (PRIMITIVES) and their weight counts
mixed_op.py       eq. (2): the softmax-weighted sum over an edge's operations
cell.py           eq. (1): a node is the sum of its incoming edges
network.py        the search network (supernetwork) and relax(): softmax / sigmoid of alpha
eval_network.py   the discrete network of a genotype, trained from scratch
genotype.py       DARTS's derivation rule: the discrete cell read off softmax(alpha)
architect.py      eq. (3): the architecture step (first and second order)
complexity.py     the expected weight count of softmax(alpha), in [0, 1]
hypernet.py       eq. (4)-(5): alpha(lambda) = lambda * b1 + b2
"""
