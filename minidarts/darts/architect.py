"""The architecture step of DARTS's bilevel problem, first and second order.

Equation (3) of the paper:

    min_alpha  L_val(w*(alpha), alpha)   s.t.   w*(alpha) = argmin_w L_train(w, alpha)

First-order DARTS approximates w*(alpha) by the current weights w and
alternates two steps per iteration (search.py):

    alpha <- alpha - Adam(grad_alpha L_val(w, alpha))      on a validation batch
    w     <- w     - SGD(grad_w L_train(w, alpha))         on a training batch

Second-order DARTS approximates w*(alpha) by one virtual SGD step, the step the
weight optimiser would take next (xi = its current learning rate, m its momentum,
b its momentum buffer, wd its weight decay; no gradient clipping, as DARTS):

    w' = w - xi * (m * b + grad_w L_train(w, alpha) + wd * w)

and differentiates L_val(w', alpha) through it (b and wd * w do not depend on alpha):

    dL_val(w'(alpha), alpha)/dalpha
        = grad_alpha L_val(w', alpha) - xi * grad^2_{alpha,w} L_train(w, alpha) v,
    v = grad_w' L_val(w', alpha).

The Hessian-vector product is a central finite difference of alpha-gradients,

    grad^2_{alpha,w} L_train(w, alpha) v
        ~ (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),
    w+- = w +- eps v,   eps = 0.01 / ||v||,

with an O(eps^2) truncation error. (The authors' code wrote `(p - n) / 2. * eps`,
a product where the quotient belongs; tests/test_second_order.py shows that a
numerical check of the whole unrolled gradient catches that slip.)

With complexity control (section 2.2) the upper level becomes

    L_val(w, alpha) + lambda * complexity(alpha)   (+ w01 * zero_one(alpha), sigmoid only),

with alpha = alpha(lambda) = G(lambda; u) the output of a hypernetwork (eq. 4-5)
whose parameters u are what the step updates, or with alpha itself and a fixed
lambda (the paper's baseline). The extra terms do not depend on w, so in the
second-order gradient their alpha-gradient is simply added. The gradient with
respect to alpha (both cell types) reaches u by one backward pass through
alpha(lambda): the backward of sum_k (alpha_k(lambda) * g_k).

Side effects of the second-order step: none but the architecture update. The
virtual steps move the weights in place and restore them exactly (saved copies,
not "add back what was subtracted", which would leave rounding residue); the
forward passes in training mode update BatchNorm's running statistics, which
are saved and restored too, and so are the weights' .grad. (DARTS ran its
virtual step on a copy of the model, but its w+- passes updated the real
model's running statistics twice per step; here they follow the weight steps
only.)

Only the architecture needs a gradient in the first-order step, so the weights
are frozen during it: the backward pass then skips every weight gradient.
"""

import math
from contextlib import contextmanager

from ..engine.autograd import Tensor, no_grad
from ..nn import functional as F
from ..nn.metrics import accuracy

# eps = HVP_SCALE / ||v||: the finite-difference step moves w by 0.01 in norm (DARTS)
HVP_SCALE = 0.01


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


def zero_one_loss(alphas, kinds=("normal", "reduce")):
    """Fair DARTS's zero-one loss on sigmoid weights,

        L_01 = -mean over all entries of (sigmoid(alpha) - 0.5)^2,

    the mean taken over every alpha entry of the cell types `kinds` together.
    Minimising it pushes each weight away from 0.5 towards 0 or 1, so that the
    relaxed architecture is close to the discrete one read off it."""
    total, count = None, 0
    for kind in kinds:
        d = F.sigmoid(alphas[kind]) - 0.5
        term = (d * d).sum()
        total = term if total is None else total + term
        count += alphas[kind].numel()
    return total * (-1.0 / count)


def _central_difference(g_plus, g_minus, eps):
    """(g(w + eps v) - g(w - eps v)) / (2 eps): the Hessian-vector product from two
    gradients (its own function so that a test can put the authors' slip in its place)."""
    return (g_plus - g_minus) / (2 * eps)


class Architect:
    """Updates the architecture on validation batches (eq. 3, upper level).

    model: the search Network; optimizer: over the architecture parameters (the
    network's alpha, or the hypernetwork's parameters); hypernet: maps lambda to
    alphas (None: the network's own alpha); complexity: the penalty term (None:
    no penalty); order: 1 (alpha-gradient at the current weights) or 2 (through
    one virtual weight step, see the module docstring); w_optimizer: the weights'
    SGD optimiser (order 2 reads its learning rate, momentum, weight decay and
    momentum buffers); zero_one_weight: w01 of Fair DARTS's zero-one loss (sigmoid
    relaxation only; 0 disables it)."""

    def __init__(
        self,
        model,
        optimizer,
        hypernet=None,
        complexity=None,
        order=1,
        w_optimizer=None,
        zero_one_weight=0.0,
    ):
        if order not in (1, 2):
            raise ValueError(f"Architect: order must be 1 or 2, got {order!r}")
        if order == 2:
            if w_optimizer is None:
                raise ValueError(
                    "Architect: order 2 needs w_optimizer, the weights' SGD optimiser "
                    "(its learning rate, momentum and weight decay define the virtual step)"
                )
            for group in w_optimizer.param_groups:
                if group.get("nesterov") or group.get("dampening", 0) != 0:
                    raise ValueError(
                        "Architect: order 2 models the virtual step as plain SGD with "
                        "momentum (w - lr * (m * b + g + wd * w)); nesterov and dampening "
                        "are not supported"
                    )
        if zero_one_weight and getattr(model, "relaxation", "softmax") != "sigmoid":
            raise ValueError(
                "Architect: the zero-one loss acts on sigmoid weights; it needs a network "
                f"with relaxation='sigmoid', got {model.relaxation!r}"
            )
        self.model = model
        self.optimizer = optimizer
        self.hypernet = hypernet
        self.complexity = complexity
        self.order = order
        self.w_optimizer = w_optimizer
        self.zero_one_weight = float(zero_one_weight)

    def alphas(self, lam):
        """The architecture used at complexity weight `lam`."""
        return self.model.alphas if self.hypernet is None else self.hypernet(lam)

    def penalty(self, alphas, lam=0.0):
        """The terms of the upper-level loss that do not depend on the weights:
        lambda * complexity(alpha) + w01 * zero_one(alpha) (None when there are none)."""
        extra = None
        if lam and self.complexity is not None:
            extra = self.complexity(alphas) * lam
        if self.zero_one_weight:
            kinds = self.model.cell_kinds()  # an alpha no cell uses is no architecture
            term = zero_one_loss(alphas, kinds) * self.zero_one_weight
            extra = term if extra is None else extra + term
        return extra

    def loss(self, x, y, lam=0.0, alphas=None):
        """L_val(w, alpha(lambda)) + penalty(alpha(lambda)) on one batch:
        (loss Tensor, logits Tensor). `alphas` replaces alpha(lambda) if given."""
        alphas = self.alphas(lam) if alphas is None else alphas
        logits = self.model(x, alphas)
        loss = F.cross_entropy(logits, y)
        extra = self.penalty(alphas, lam)
        if extra is not None:
            loss = loss + extra
        return loss, logits

    def step(self, x_val, y_val, lam=0.0, x_train=None, y_train=None):
        """One architecture step; returns (validation loss with penalty, accuracy).

        Order 2 also needs the training batch of this iteration (the virtual step's
        L_train); its loss and accuracy are those at the virtual weights w'."""
        if self.order == 1:
            # BEGIN SOLUTION bilevel_step: eq. (3), first order: move alpha (or u) on L_val only
            # HINT: self.optimizer.zero_grad(); with the network's weights frozen, loss,
            # HINT: logits = self.loss(x_val, y_val, lam) and loss.backward();
            # HINT: self.optimizer.step(); return loss.item(), accuracy(logits, y_val)
            self.optimizer.zero_grad()
            with frozen(self.model.parameters()):
                loss, logits = self.loss(x_val, y_val, lam)
                loss.backward()
            self.optimizer.step()
            return loss.item(), accuracy(logits, y_val)
            # END SOLUTION
        if x_train is None or y_train is None:
            raise ValueError(
                "Architect.step: the second-order step needs the training batch "
                "(x_train, y_train) for its virtual weight step"
            )
        grads, loss, acc = self.unrolled_gradient(x_train, y_train, x_val, y_val, lam)
        self.optimizer.zero_grad()
        self.backward_into_architecture(grads, lam)
        self.optimizer.step()
        return loss, acc

    def backward_into_architecture(self, grads, lam=0.0):
        """Accumulate .grad of the architecture parameters from g = dL/dalpha (a dict of
        arrays per cell type; None: no gradient): the backward of
        sum_k (alpha_k(lambda) * g_k).sum(), i.e. alpha.grad = g for plain DARTS and
        the chain rule through the hypernetwork (b1.grad = t g, b2.grad = g, linear)."""
        alphas = self.alphas(lam)
        surrogate = None
        for kind, g in grads.items():
            if g is None:  # a cell type the loss never saw: no gradient, as in order 1
                continue
            term = (alphas[kind] * Tensor(g)).sum()
            surrogate = term if surrogate is None else surrogate + term
        if surrogate is not None:
            surrogate.backward()

    # --- second order ------------------------------------------------------------------
    def _weights(self):
        """(parameter, its SGD group) for every weight the weight optimiser updates."""
        return [(p, g) for g in self.w_optimizer.param_groups for p in g["params"]]

    def unrolled_gradient(self, x_train, y_train, x_val, y_val, lam=0.0):
        """The second-order architecture gradient (see the module docstring) at
        alpha(lam), with no side effect: ({kind: array or None}, loss at w', accuracy
        at w'). Weights, BatchNorm buffers and the weights' .grad are as before, bit
        for bit."""
        model = self.model
        with no_grad():
            values = {k: a.data for k, a in self.alphas(lam).items()}
        weights = self._weights()
        xi = _common_lr(group["lr"] for _, group in weights)
        params = [p for p, _ in weights]
        buffers = list(model.buffers())
        saved_w = [p.data.copy() for p in params]
        saved_b = [b.data.copy() for b in buffers]
        saved_grad = [p.grad for p in params]
        try:
            # 1. the virtual step w' = w - xi (m b + grad_w L_train(w, alpha) + wd w)
            g_train = self._weight_gradients(x_train, y_train, values)
            for p, group, g in zip(params, [g for _, g in weights], g_train):
                if g is None:
                    continue  # a weight L_train does not reach: SGD would skip it too
                d = g + group["weight_decay"] * p.data if group["weight_decay"] else g
                buf = self.w_optimizer.state.get(id(p), {}).get("momentum_buffer")
                if buf is not None and group["momentum"]:
                    d = d + group["momentum"] * buf
                p.data -= xi * d  # in place: the model itself now holds w'
            # 2. at w': grad_alpha of the upper-level loss (direct term) and v = grad_w' L_val
            alphas = {k: Tensor(v, requires_grad=True) for k, v in values.items()}
            for p in params:
                p.grad = None
            loss, logits = self.loss(x_val, y_val, lam, alphas)
            loss.backward()
            direct = {k: a.grad for k, a in alphas.items()}
            v = [p.grad for p in params]
            loss_value, acc = loss.item(), accuracy(logits, y_val)
            # The graph at w' holds a whole forward's activations; backward() keeps it
            # while `loss` is referenced, and the product below runs two more passes.
            del loss, logits, alphas
            # 3. the Hessian-vector product by central differences around w
            hvp = self._hessian_vector_product(params, saved_w, v, x_train, y_train, values)
        finally:
            for p, w, g in zip(params, saved_w, saved_grad):
                p.data[...] = w
                p.grad = g
            for b, s in zip(buffers, saved_b):
                b.data[...] = s
        grads = {}
        for k, d in direct.items():
            h = hvp.get(k)
            grads[k] = d if d is None or h is None else d - xi * h
        return grads, loss_value, acc

    def _weight_gradients(self, x, y, values):
        """grad_w L_train(w, alpha) for the optimiser's weights (alpha held constant)."""
        params = [p for p, _ in self._weights()]
        for p in params:
            p.grad = None
        alphas = {k: Tensor(v) for k, v in values.items()}  # constants: no alpha gradient
        F.cross_entropy(self.model(x, alphas), y).backward()
        grads = [p.grad for p in params]
        for p in params:
            p.grad = None
        return grads

    def _alpha_gradients(self, x, y, values):
        """grad_alpha L_train(w, alpha) at the weights the model holds now."""
        alphas = {k: Tensor(v, requires_grad=True) for k, v in values.items()}
        with frozen(self.model.parameters()):
            F.cross_entropy(self.model(x, alphas), y).backward()
        return {k: a.grad for k, a in alphas.items()}

    def _hessian_vector_product(self, params, saved_w, v, x, y, values):
        """(grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps),
        eps = HVP_SCALE / ||v||, w the saved weights (the model is left at w - eps v)."""
        pairs = [(p, w, g) for p, w, g in zip(params, saved_w, v) if g is not None]
        if not pairs:
            return {}
        norm = math.sqrt(sum(float((g * g).sum()) for _, _, g in pairs))
        if norm == 0.0:  # v = 0: the product is 0, and eps would be infinite
            return {}
        eps = HVP_SCALE / norm
        for p, w, g in pairs:
            p.data[...] = w + eps * g
        g_plus = self._alpha_gradients(x, y, values)
        for p, w, g in pairs:
            p.data[...] = w - eps * g
        g_minus = self._alpha_gradients(x, y, values)
        return {
            k: None if g_plus[k] is None else _central_difference(g_plus[k], g_minus[k], eps)
            for k in g_plus
        }


def _common_lr(lrs):
    """xi, the weights' learning rate: one value, even with several parameter groups
    (different rates would make the virtual step's Jacobian differ per group)."""
    lrs = set(lrs)
    if len(lrs) != 1:
        raise ValueError(
            f"Architect: second order needs one learning rate for all weights, got {sorted(lrs)}"
        )
    return lrs.pop()
