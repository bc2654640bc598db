"""The architecture step of DARTS's bilevel problem, first order.

Equation (3) of the paper:

    min_alpha  L_val(w*(alpha), alpha)   s.t.   w*(alpha) = argmin_w L_train(w, alpha)

First-order DARTS approximates w*(alpha) by the current weights w and
alternates two steps per iteration (search.py):

    alpha <- alpha - Adam(grad_alpha L_val(w, alpha))      on a validation batch
    w     <- w     - SGD(grad_w L_train(w, alpha))         on a training batch

With complexity control (section 2.2) the upper level becomes

    L_val(w, alpha) + lambda * complexity(alpha),

with alpha = alpha(lambda) = G(lambda; u) the output of a hypernetwork (eq. 4-5)
whose parameters u are what the step updates, or with alpha itself and a fixed
lambda (the paper's baseline).

Only the architecture needs a gradient in this step, so the weights are frozen
during it: the backward pass then skips every weight gradient.
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
    """Updates the architecture on validation batches (eq. 3, upper level).

    model: the search Network; optimizer: over the architecture parameters (the
    network's alpha, or the hypernetwork's parameters); hypernet: maps lambda to
    alphas (None: the network's own alpha); complexity: the penalty term (None:
    no penalty)."""

    def __init__(self, model, optimizer, hypernet=None, complexity=None):
        self.model = model
        self.optimizer = optimizer
        self.hypernet = hypernet
        self.complexity = complexity

    def alphas(self, lam):
        """The architecture used at complexity weight `lam`."""
        return self.model.alphas if self.hypernet is None else self.hypernet(lam)

    def loss(self, x, y, lam=0.0):
        """L_val(w, alpha(lambda)) + lambda * complexity(alpha(lambda)) on one batch:
        (loss Tensor, logits Tensor)."""
        alphas = self.alphas(lam)
        logits = self.model(x, alphas)
        loss = F.cross_entropy(logits, y)
        if lam and self.complexity is not None:
            loss = loss + self.complexity(alphas) * lam
        return loss, logits

    def step(self, x_val, y_val, lam=0.0):
        """One first-order step; returns (validation loss with penalty, accuracy)."""
        self.optimizer.zero_grad()
        with frozen(self.model.parameters()):
            loss, logits = self.loss(x_val, y_val, lam)
            loss.backward()
        self.optimizer.step()
        return loss.item(), accuracy(logits, y_val)
