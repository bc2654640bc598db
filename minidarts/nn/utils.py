"""minidarts.nn.utils, as torch.nn.utils: gradient clipping at its PyTorch home.

    nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)

(the same function as minidarts.nn.optim.clip_grad_norm_, where DARTS's code reaches
for it).
"""

from .optim.optimizer import clip_grad_norm_

__all__ = ["clip_grad_norm_"]
