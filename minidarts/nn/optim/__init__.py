"""minidarts.nn.optim, shaped like torch.optim: the optimisers and their schedules.

    optimizer.py      Optimizer, SGD, Adam, AdamW (PyTorch's update rules); clip_grad_norm_
    lr_scheduler.py   LRScheduler, CosineAnnealingLR (also optim.lr_scheduler.X, as PyTorch)

clip_grad_norm_ is also at its PyTorch home, minidarts.nn.utils.clip_grad_norm_.
"""

from . import lr_scheduler
from .lr_scheduler import CosineAnnealingLR, LRScheduler
from .optimizer import SGD, Adam, AdamW, Optimizer, clip_grad_norm_

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "Optimizer",
    "clip_grad_norm_",
    "lr_scheduler",
]
