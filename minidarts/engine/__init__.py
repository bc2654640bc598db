"""minidarts.engine: arrays to gradients, nothing about neural networks.

backend.py      numpy on the CPU, cupy on the GPU: the only module that names them
autograd.py     Tensor, Function, backward(), no_grad
ops.py          every differentiable op, gathered from arithmetic.py, reductions.py,
                shape.py and activations.py (each backward beside its forward)
gradcheck.py    central differences and the gradient check every op passes
random.py       the seeded generators (manual_seed)
"""
