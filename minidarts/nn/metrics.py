"""Metrics that need no gradient."""

from ..engine import backend


def accuracy(logits, y):
    """Fraction of rows whose largest logit is the label (logits: (N, classes) Tensor,
    y: (N,) labels as a Tensor or an array)."""
    pred = logits.data.argmax(axis=1)
    labels = y.data if hasattr(y, "data") and not backend.is_array(y) else y
    return float((pred == labels).mean())
