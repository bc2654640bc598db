"""Retraining a found architecture from scratch: DARTS's evaluation step.

The search only ranks operations; the genotype it derives is judged by building
its discrete network (model_eval.EvalNetwork: one operation per kept edge, no
alpha) with fresh weights and training that on all 60000 MNIST training images,
measuring the accuracy on the 10000 test images after every epoch.

Per step: cross-entropy on a batch, backward, gradient-norm clip, one SGD step.
Per epoch: the learning rate follows a cosine from lr down to lr_min (DARTS's
train.py: SGD lr 0.025, momentum 0.9, weight decay 3e-4, clip 5, batch 64,
cosine to 0); then the test set is evaluated and the run folder updated.

A run folder (runs/NAME/) holds:
    config.json       the full configuration (TrainConfig)
    genotype.json     the genotype trained (a copy, also stored in the checkpoint)
    metrics.jsonl     one JSON line per epoch: epoch, lr, train_loss, train_acc,
                      test_loss, test_acc, seconds
    checkpoint.npz    everything needed to continue exactly (see checkpoint.py)
    summary.json      final test accuracy, test loss, parameter count, epochs, time
    plots/            curves.png (loss and accuracy per epoch), genotype.png

`Train(cfg).run()` trains from scratch; `Train.resume(folder).run()` continues a
stopped run and ends with bit-identical weights.

The default network (2 cells, both reduction cells, C = 8) is explained at TrainConfig.
"""

import json
import math
import os
import time

from .. import nn
from ..darts.eval_network import EvalNetwork
from ..darts.genotype import (
    describe_genotype,
    genotype_from_dict,
    genotype_to_dict,
    save_genotype,
)
from ..engine import backend
from ..nn import functional as F
from ..nn import optim
from ..nn.metrics import accuracy
from . import data, runfolder
from .checkpoint import (
    check_format,
    check_state,
    load_checked,
    load_checkpoint,
    save_checkpoint,
)
from .errors import check_finite
from .evaluate import evaluate
from .progress import Progress, format_seconds
from .resources import check_memory
from .runfolder import (
    RunLock,
    check_config_file,
    default_folder,
    prepare_folder,
    write_config,
    write_text,
)
from .train_config import (
    EVAL_BATCH_SIZE,
    FORMAT,
    check_used_halves,
    make_train_config,
    read_genotype,
)


class Train:
    """One retraining run (see the module docstring). `genotype` overrides reading
    cfg.genotype (resume passes the copy saved in the checkpoint)."""

    def __init__(self, cfg, folder=None, log=print, genotype=None, overwrite=False, datasets=None):
        self.cfg = cfg
        self.log = log
        self.overwrite = overwrite  # a new run into a used folder moves it aside first
        backend.check_device(cfg.device)
        self.genotype = read_genotype(cfg.genotype) if genotype is None else genotype
        self.folder = folder or (
            os.path.join(cfg.out, cfg.name) if cfg.name else default_folder(cfg.out, "train")
        )
        # what the epochs are evaluated on: the test images, or (cfg.holdout) held-out
        # training images, and then the test images are never read
        self.split = "holdout" if cfg.holdout else "test"
        if datasets is not None:  # (train, evaluated) of your own (data.array_dataset)
            train, self.test_data = data.check_pair(datasets, "train", "test")
        elif cfg.holdout:
            train, self.test_data = data.holdout_split(
                cfg.holdout, cfg.data_root, subset=cfg.subset, seed=cfg.seed
            )
        else:
            train = data.full_train_set(cfg.data_root, subset=cfg.subset, seed=cfg.seed)
            self.test_data = data.test_set(cfg.data_root, subset=cfg.test_subset)
        if datasets is None:
            for ds in (train, self.test_data):
                ds.set_normalisation(cfg.data_mean, cfg.data_std)
        self.train_batches = data.Batches(
            train, cfg.batch_size, seed=cfg.seed + 1, device=cfg.device
        )
        previous = backend.default_device()
        backend.set_default_device(cfg.device)
        try:
            self.model = EvalNetwork(
                self.genotype,
                C=cfg.channels,
                layers=cfg.layers,
                in_channels=train.channels,
                num_classes=train.num_classes,
                stem_multiplier=cfg.stem_multiplier,
                seed=cfg.seed,
            )
        finally:
            backend.set_default_device(previous)
        if genotype is None:
            check_used_halves(cfg.genotype, self.model.cell_kinds(), cfg.layers)
        self.num_parameters = nn.count_parameters(self.model)
        self.optimizer = optim.SGD(
            self.model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.scheduler = optim.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min
        )
        self.epoch = 0
        self.history = []

    # --- one step and one epoch ------------------------------------------------
    def train_step(self, x, y):
        """One SGD step on a batch; (loss, accuracy) before the step."""
        self.optimizer.zero_grad()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optim.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return loss.item(), accuracy(logits, y)

    def train_epoch(self, progress):
        total_loss = total_acc = 0.0
        n = len(self.train_batches)
        self.model.train()
        for k, (x, y) in enumerate(self.train_batches, start=1):
            loss, acc = self.train_step(x, y)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"epoch {self.epoch + 1} step {k}: the loss became {loss}; "
                    f"lower lr ({self.cfg.lr})"
                )
            total_loss += loss
            total_acc += acc
            progress.update(
                f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                k,
                n,
                loss=total_loss / k,
                acc=total_acc / k,
            )
        return {"train_loss": total_loss / n, "train_acc": total_acc / n}

    def evaluate(self):
        """Loss and accuracy on the test images, or the held-out training images with
        cfg.holdout (eval mode, no gradients)."""
        return evaluate(self.model, self.test_data, EVAL_BATCH_SIZE, self.cfg.device)

    # --- the run ---------------------------------------------------------------
    def run(self):
        """Train until cfg.epochs; returns the final test accuracy. A new run refuses a
        folder that holds files (see runfolder.claim_folder); the run holds the
        folder's lock while it runs."""
        prepare_folder(self.folder, not self.history, self.overwrite, "retraining run")
        with RunLock(self.folder):
            return self._run()

    def _run(self):
        cfg = self.cfg
        # refuse a batch the machine cannot hold before allocating it (resources.py)
        check_memory(self.model, self.test_data.batch([0])[0].shape[1:], cfg.batch_size, cfg.device)
        write_config(self.folder, cfg, FORMAT)
        save_genotype(self.genotype, os.path.join(self.folder, "genotype.json"))
        n = len(self.train_batches)
        self.log(
            f"train: {self.folder} | {len(self.train_batches.dataset)} train images, "
            f"{len(self.test_data)} {self.split} images | {cfg.epochs} epochs x {n} steps | "
            f"{cfg.layers} cells {self.model.cell_kinds()}, C={cfg.channels} | "
            f"{self.num_parameters} weights | device {cfg.device}"
        )
        runfolder.say_if_finished(self.log, "train", self.folder, self.epoch, cfg.epochs)
        progress = Progress(cfg.epochs * n, self.epoch * n, every=cfg.log_every, write=self.log)
        while self.epoch < cfg.epochs:
            start = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]
            record = self.train_epoch(progress)
            self.scheduler.step()
            test_loss, test_acc = self.evaluate()
            self.epoch += 1
            # the evaluation can overflow where the training did not: no NaN is saved
            where, remedy = f"epoch {self.epoch}", f"lower lr ({cfg.lr})"
            check_finite(where, remedy, **{f"{self.split}_loss": test_loss, "accuracy": test_acc})
            record = dict(
                epoch=self.epoch,
                lr=lr,
                **record,
                **{f"{self.split}_loss": test_loss, f"{self.split}_acc": test_acc},
                seconds=time.perf_counter() - start,
            )
            self.history.append(record)
            # the checkpoint first: the records never claim an epoch it does not hold
            self.save()
            self._write_records()
            self.log(
                f"epoch {self.epoch}/{cfg.epochs} done in {format_seconds(record['seconds'])}"
                f" | lr {lr:.5f} | train loss {record['train_loss']:.4f} acc "
                f"{record['train_acc']:.4f} | {self.split} loss {test_loss:.4f} acc {test_acc:.4f}"
            )
        if cfg.plots and self.history:
            from . import plots

            out = os.path.join(self.folder, "plots")
            os.makedirs(out, exist_ok=True)
            paths = [
                plots.plot_train_curves(self.history, os.path.join(out, "curves.png"), self.split),
                plots.draw_genotype(
                    self.genotype,
                    os.path.join(out, "genotype.png"),
                    kinds=self.model.cell_kinds(),
                ),
            ]
            self.log("plots: " + ", ".join(paths))
        final = self.history[-1] if self.history else {}
        acc = final.get(f"{self.split}_acc", float("nan"))
        self.log(
            f"done: {self.split} acc {acc:.4f} after {self.epoch} "
            f"epochs | {self.num_parameters} weights | "
            f"{format_seconds(sum(r['seconds'] for r in self.history))} of training | "
            f"{describe_genotype(self.genotype, self.model.cell_kinds())}"
        )
        return final.get(f"{self.split}_acc")

    def summary(self):
        """The run's result: final test (or held-out) accuracy and loss, weights,
        epochs, seconds."""
        final = self.history[-1] if self.history else {}
        return {
            f"{self.split}_acc": final.get(f"{self.split}_acc"),
            f"{self.split}_loss": final.get(f"{self.split}_loss"),
            "params": self.num_parameters,
            "epochs": self.epoch,
            "seconds": sum(r["seconds"] for r in self.history),
            "layers": self.cfg.layers,
            "channels": self.cfg.channels,
            "genotype": genotype_to_dict(self.genotype),
        }

    def _write_records(self):
        write_text(
            os.path.join(self.folder, "metrics.jsonl"),
            "".join(json.dumps(record) + "\n" for record in self.history),
        )
        write_text(os.path.join(self.folder, "summary.json"), json.dumps(self.summary(), indent=1))

    # --- checkpoints -------------------------------------------------------------
    def state_dict(self):
        return {
            "format": FORMAT,
            "config": self.cfg.to_dict(),
            "genotype": genotype_to_dict(self.genotype),
            "epoch": self.epoch,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_batches": self.train_batches.state_dict(),
        }

    def load_state_dict(self, state):
        """Continue from a state_dict(), checked whole first (check_state)."""
        check_format(state, FORMAT, "train")
        check_state(self, state, ("model", "scheduler"))
        if genotype_from_dict(state["genotype"]) != self.genotype:
            raise ValueError("the checkpoint was trained with another genotype")
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scheduler.T_max != self.cfg.epochs:
            # --resume --epochs N: stretch the cosine over the new length from here on
            self.scheduler.set_T_max(self.cfg.epochs)
        self.train_batches.load_state_dict(state["train_batches"])

    def save(self):
        save_checkpoint(os.path.join(self.folder, "checkpoint.npz"), self.state_dict())

    @classmethod
    def resume(cls, folder, epochs=None, log=print):
        """Continue the run in `folder` from its last checkpoint (optionally to more
        epochs). The genotype comes from the checkpoint, not from the original file."""
        path = os.path.join(folder, "checkpoint.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--resume {folder}: no checkpoint.npz there")
        state = load_checkpoint(path)
        if state.get("format") != FORMAT:
            raise ValueError(f"--resume {folder}: not a minidarts train checkpoint")
        overrides = dict(state["config"])
        check_config_file(folder, overrides)
        if epochs is not None:
            if epochs <= int(state["epoch"]):
                raise ValueError(
                    f"--resume {folder} --epochs {epochs}: the run has done {int(state['epoch'])}"
                    " epochs already; give more to extend it"
                )
            overrides["epochs"] = epochs
        cfg = make_train_config(None, overrides, source=f"{path} config", saved=True)
        genotype = genotype_from_dict(state["genotype"])
        run = cls(cfg, folder=folder, log=log, genotype=genotype)
        load_checked(run, state, path)
        return run
