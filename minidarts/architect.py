"""The architecture step of DARTS's bilevel problem, first order.

Equation (3) of the paper:

    min_alpha  L_val(w*(alpha), alpha)   s.t.   w*(alpha) = argmin_w L_train(w, alpha)

First-order DARTS approximates w*(alpha) by the current weights w and
alternates two steps per iteration (search.py):

    alpha <- alpha - Adam(grad_alpha L_val(w, alpha))      on a validation batch
    w     <- w     - SGD(grad_w L_train(w, alpha))         on a training batch

Only alpha needs a gradient in the first step, so the weights are frozen during
it: the backward pass then skips every weight gradient (a third of its work).
"""

from contextlib import contextmanager

from . import functional as F
from .evaluate import accuracy


@contextmanager
def frozen(tensors):
    """Temporarily set requires_grad=False on `tensors` (restored on exit)."""
    tensors = list(tensors)
    saved = [t.requires_grad for t in tensors]
    for t in tensors:
        t.requires_grad = False
    try:
        yield
    finally:
        for t, flag in zip(tensors, saved):
            t.requires_grad = flag


class Architect:
    """Updates the architecture parameters on validation batches (eq. 3, upper level).

    model: the search Network; optimizer: over the architecture parameters (alpha,
    or a hypernetwork's parameters); alphas_fn: returns the alphas for the forward
    pass (None: the network's own alpha)."""

    def __init__(self, model, optimizer, alphas_fn=None):
        self.model = model
        self.optimizer = optimizer
        self.alphas_fn = alphas_fn

    def loss(self, x, y):
        """L_val(w, alpha) on one batch: (loss Tensor, logits Tensor)."""
        alphas = None if self.alphas_fn is None else self.alphas_fn()
        logits = self.model(x, alphas)
        return F.cross_entropy(logits, y), logits

    def step(self, x_val, y_val):
        """One first-order step on alpha; returns (validation loss, accuracy) of the batch."""
        self.optimizer.zero_grad()
        with frozen(self.model.parameters()):
            loss, logits = self.loss(x_val, y_val)
            loss.backward()
        self.optimizer.step()
        return loss.item(), accuracy(logits, y_val)
