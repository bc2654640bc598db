"""Loss functions and loss modules, as torch.nn.functional and torch.nn.

    cross_entropy(input, target)  = nll_loss(log_softmax(input, 1), target)
    nll_loss(input, target)       : loss_n = -input[n, target_n]
    mse_loss(input, target)       : loss_i = (input_i - target_i)^2

each reduced as PyTorch's `reduction=`: 'mean' (the default: the mean over the N
samples, or over every element for mse_loss), 'sum', or 'none' (the unreduced
losses, one per sample or element). Inputs are (N, C) with N integer class indices
for the first two: PyTorch's class weights, ignore_index, label smoothing, soft
targets and extra spatial dims are not offered.

The mean cross-entropy is the fused op of the engine (one backward, written by hand:
the classroom's task backward_cross_entropy); the other reductions are composed of
differentiable ops.
"""

from ..engine import backend
from ..engine.activations import class_targets, log_softmax
from ..engine.activations import cross_entropy as _mean_cross_entropy
from .module import Module

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, where):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{where}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )


def _reduce(losses, reduction):
    """losses.mean(), losses.sum() or losses itself ('none')."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def nll_loss(input, target, reduction="mean"):
    """Negative log-likelihood of N integer class indices under (N, C) log-probabilities,
    as torch.nn.functional.nll_loss:

        loss_n = -input[n, target_n],   reduced by `reduction` ('mean': sum_n loss_n / N)."""
    _check_reduction(reduction, "nll_loss")
    target = class_targets(input, target, "nll_loss")
    rows = backend.get_array_module(target).arange(input.shape[0])
    return _reduce(-input[rows, target], reduction)


def cross_entropy(input, target, reduction="mean"):
    """Cross-entropy of (N, C) logits against N integer class indices, as
    torch.nn.functional.cross_entropy:

        loss_n = -log softmax(input_n)[target_n] = log sum_c e^input[n, c] - input[n, target_n]

    reduced by `reduction`: 'mean' (sum_n loss_n / N), 'sum' or 'none' (the N losses)."""
    _check_reduction(reduction, "cross_entropy")
    if reduction == "mean":
        return _mean_cross_entropy(input, target)
    class_targets(input, target, "cross_entropy")  # errors named for this function
    return nll_loss(log_softmax(input, 1), target, reduction)


def mse_loss(input, target, reduction="mean"):
    """Squared error of two tensors of the same shape, as torch.nn.functional.mse_loss:

        loss_i = (input_i - target_i)^2,   reduced by `reduction` ('mean': over every element).

    Unlike PyTorch, different shapes are refused instead of broadcast with a warning."""
    _check_reduction(reduction, "mse_loss")
    if tuple(getattr(target, "shape", input.shape)) != tuple(input.shape):
        raise ValueError(
            f"mse_loss: input {tuple(input.shape)} and target {tuple(target.shape)} must have "
            "the same shape"
        )
    diff = input - target
    return _reduce(diff * diff, reduction)


class _Loss(Module):
    """A loss as a module: loss(input, target) calls its function with `reduction`."""

    function = None

    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def forward(self, input, target):
        return type(self).function(input, target, reduction=self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """torch.nn.CrossEntropyLoss: F.cross_entropy(input, target, reduction)."""

    function = staticmethod(cross_entropy)


class NLLLoss(_Loss):
    """torch.nn.NLLLoss: F.nll_loss(input, target, reduction), on log-probabilities."""

    function = staticmethod(nll_loss)


class MSELoss(_Loss):
    """torch.nn.MSELoss: F.mse_loss(input, target, reduction)."""

    function = staticmethod(mse_loss)
