"""Evaluation: loss and accuracy of a network on a dataset, without gradients."""

from ..engine.autograd import no_grad
from ..nn import functional as F
from ..nn.metrics import accuracy
from . import data


def evaluate(model, dataset, batch_size=256, device=None, max_batches=None, **forward_kwargs):
    """(mean cross-entropy, accuracy) of `model` on `dataset` in eval mode (BN uses its
    running statistics), in file order, over at most `max_batches` batches.
    `forward_kwargs` go to the model (e.g. alphas=... for a search network)."""
    was_training = model.training
    model.eval()
    batches = data.Batches(dataset, batch_size, shuffle=False, device=device)
    limit = len(batches) if max_batches is None else min(max_batches, len(batches))
    total_loss = total_correct = count = 0.0
    try:
        with no_grad():
            for _, (x, y) in zip(range(limit), batches):
                logits = model(x, **forward_kwargs)
                total_loss += F.cross_entropy(logits, y).item() * len(y)
                total_correct += accuracy(logits, y) * len(y)
                count += len(y)
    finally:
        model.train(was_training)
    return total_loss / count, total_correct / count
