"""Optimisers (SGD, Adam, AdamW) and gradient clipping, with PyTorch's exact update
rules.

An optimiser holds `param_groups`: a list of dicts, each with 'params' (the
Parameters) and its hyperparameters ('lr', ...). A scheduler (lr_scheduler.py)
changes group['lr'] between steps; step() reads it each time. Updates write p.data
in place (whole arrays at once), outside the autograd graph.

state_dict() gives plain data (NumPy arrays, numbers, lists), parameters named
by their position, as in PyTorch; load_state_dict() of it continues a run
exactly as if it had never stopped.
"""

import math

from ...engine import backend
from ...engine.autograd import Tensor


def _params_list(params, where):
    if isinstance(params, Tensor):
        return [params]
    params = list(params)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{where}: can only optimise Tensors, got a {type(p).__name__}")
    return params


def _state_copy(value):
    """Arrays become NumPy copies; numbers stay as they are."""
    if backend.is_array(value):
        arr = backend.to_numpy(value)
        return arr.copy() if arr is value else arr
    return value


class Optimizer:
    """Base class: param_groups, state, zero_grad(), step(), state_dict().

    A subclass gives its hyperparameter defaults and `_update(p, grad, state,
    group)`, the update of one parameter."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}  # id(parameter) -> dict of that parameter's running state
        self.param_groups = []
        params = list(params) if not isinstance(params, Tensor) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty list of parameters")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a dict {'params': [...], hyperparameter: value, ...}; missing
        hyperparameters take the optimiser's defaults."""
        name = type(self).__name__
        group = dict(group)
        group["params"] = _params_list(group["params"], name)
        for p in group["params"]:
            if not backend.is_floating(p.data):
                raise TypeError(f"{name}: can only optimise floating-point tensors, got {p.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]) or len(
            {id(p) for p in group["params"]}
        ) != len(group["params"]):
            raise ValueError(f"{name}: a parameter appears more than once")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']!r}")
        if not group.get("weight_decay", 0) >= 0:
            raise ValueError(
                f"{type(self).__name__}: invalid weight_decay {group['weight_decay']!r}"
            )

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter (to None, or to zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self):
        """Update every parameter that has a gradient (the others are skipped)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    # --- saving and restoring --------------------------------------------------------
    def _all_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{'state': {index: {name: array or number}}, 'param_groups': [{hyperparameters,
        'params': [index, ...]}]}, indices counting parameters over all groups."""
        groups, index = [], 0
        for group in self.param_groups:
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        state = {}
        for i, p in enumerate(self._all_params()):
            if self.state.get(id(p)):
                state[i] = {k: _state_copy(v) for k, v in self.state[id(p)].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and running state saved by state_dict(). The groups
        must hold as many parameters, of the same shapes, as this optimiser's."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has {len(groups)} parameter groups, "
                f"this optimiser {len(self.param_groups)}"
            )
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters "
                    f"in the saved state and {len(group['params'])} here"
                )
        params = self._all_params()
        new_state = {}
        for key, saved in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"{name}.load_state_dict: state for parameter {i} of {len(params)}"
                )
            p, restored = params[i], {}
            for k, v in saved.items():
                if k == "step":
                    v = int(v)  # a counter, whatever form it was saved in
                elif backend.is_array(v):
                    if tuple(v.shape) != p.shape:
                        raise ValueError(
                            f"{name}.load_state_dict: {k} of parameter {i} has shape "
                            f"{tuple(v.shape)}, the parameter {p.shape}"
                        )
                    arr = backend.asarray(v, dtype=p.dtype, device=p.device)
                    v = arr.copy() if arr is v else arr  # never share the caller's arrays
                restored[k] = v
            new_state[id(p)] = restored
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = tuple(v) if isinstance(v, list) else v
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as torch.optim.SGD:

        d = g + weight_decay * p
        b = d  (first step),   b = momentum * b + (1 - dampening) * d  (later steps)
        d = d + momentum * b  (nesterov)   or   d = b
        p = p - lr * d

    (momentum = 0: plain p = p - lr * d)."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        if not momentum >= 0:
            raise ValueError(f"SGD: invalid momentum {momentum!r}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _update(self, p, grad, state, group):
        momentum, wd = group["momentum"], group["weight_decay"]
        d = grad + wd * p.data if wd != 0 else grad
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * d
            d = d + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * d


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (weight decay as L2, added to the gradient):

        g = g + weight_decay * p
        m = beta1 m + (1 - beta1) g,       v = beta2 v + (1 - beta2) g^2
        m_hat = m / (1 - beta1^t),         v_hat = v / (1 - beta2^t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    computed as PyTorch does it:
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""

    decoupled_weight_decay = False  # AdamW sets it

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        name = type(self).__name__
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{name}: betas must be in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"{name}: invalid eps {eps!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _update(self, p, grad, state, group):
        xp = backend.get_array_module(p.data)
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if self.decoupled_weight_decay:
            if wd != 0:
                p.data *= 1 - group["lr"] * wd  # AdamW: decay the weight, not the gradient
            g = grad
        else:
            g = grad + wd * p.data if wd != 0 else grad
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        denom = xp.sqrt(v) / math.sqrt(bias_correction2) + group["eps"]
        p.data -= (group["lr"] / bias_correction1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as torch.optim.AdamW:
    the weight decays by itself, before the Adam step, and the moments see the raw
    gradient:

        p = p * (1 - lr * weight_decay)
        m = beta1 m + (1 - beta1) g,       v = beta2 v + (1 - beta2) g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    (Adam's weight_decay adds weight_decay * p to g instead, which Adam's
    normalisation then rescales.) PyTorch's default weight_decay, 1e-2."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale gradients in place so their total norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_:

        total = || (||g_1||, ||g_2||, ...) ||      (the norm of all gradients together)
        if total > max_norm:  g_i <- g_i * max_norm / (total + 1e-6)

    Returns `total` (before clipping) as a float. norm_type: 2 or float('inf')."""
    if not backend.is_scalar(max_norm):  # a Python or NumPy number, or a 0-d array
        raise TypeError(f"clip_grad_norm_: max_norm must be a number, got {max_norm!r}")
    if not float(max_norm) >= 0:  # a negative bound would flip the signs, NaN clip nothing
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm!r}")
    params = _params_list(parameters, "clip_grad_norm_")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    if norm_type == float("inf"):
        total = float(xp.stack([xp.abs(g).max() for g in grads]).max())
    elif norm_type == 2:
        norms = xp.stack([xp.linalg.norm(g.reshape(-1)) for g in grads])
        total = float(xp.linalg.norm(norms))
    else:
        raise ValueError(f"clip_grad_norm_: norm_type must be 2 or inf, got {norm_type!r}")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= coef
    return total


__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm_"]
