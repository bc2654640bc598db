"""Learning-rate schedules, as torch.optim.lr_scheduler: a schedule sets every param
group's 'lr' between optimiser steps (DARTS steps it once per epoch).

    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=1e-3)
"""

import math

from .optimizer import Optimizer


class LRScheduler:
    """Base class of learning-rate schedules: step() advances t (last_epoch) by one and
    sets every group's lr to get_lr(). Creating one sets t = 0 and lr = the initial lr
    (remembered as group['initial_lr'])."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise ValueError(
                    f"{type(self).__name__}: resuming at last_epoch={last_epoch} needs "
                    f"'initial_lr' in every param group"
                )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        """Advance the schedule by one (an epoch, in DARTS) and set the new lr."""
        self.last_epoch += 1
        self._apply_lr()

    def _apply_lr(self):
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self):
        """The lr of each group, as last set by step()."""
        return list(self._last_lr)

    def state_dict(self):
        """Plain numbers and lists: everything but the optimiser."""
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "optimizer"
        }

    def load_state_dict(self, state_dict):
        """Restore a state_dict() and set the optimiser's lr to the restored value."""
        unknown = set(state_dict) - set(self.state_dict())
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: unexpected keys {sorted(unknown)}"
            )
        self.__dict__.update(
            {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in state_dict.items()}
        )
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class CosineAnnealingLR(LRScheduler):
    """Cosine schedule from the initial lr down to eta_min over T_max steps, in
    PyTorch's closed form:

        lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def set_T_max(self, T_max):
        """Change the schedule's length, keeping its position (e.g. a search extended
        with --resume --epochs N), and set the lr of the current step anew."""
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max = T_max
        self._apply_lr()

    def get_lr(self):
        c = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


__all__ = ["CosineAnnealingLR", "LRScheduler"]
