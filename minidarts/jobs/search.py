"""The DARTS search loop: data, network, both optimisers, checkpoints, records.

Per step (DARTS, eq. 3):
  1. the Architect takes one Adam step on alpha from a search-validation batch
     (cfg.order 1: the gradient at the current weights; 2: through one virtual
     weight step on this step's search-train batch, see architect.py);
  2. the weights take one SGD step from a search-train batch (gradient norm clipped).
The relaxation (cfg.relaxation) is DARTS's softmax over each edge's operations or
Fair DARTS's independent sigmoids (with its zero-one loss, cfg.zero_one_weight).
Per epoch: the learning rate follows a cosine from w_lr down to w_lr_min; the
network is evaluated on the search-validation set; the genotype is derived; the
run folder gets metrics.jsonl, the genotype, plots and a checkpoint.

A run folder (runs/NAME/) holds:
    config.json          the full configuration
    metrics.jsonl        one JSON line per epoch: losses, accuracies, lr, relaxed alpha
    genotypes/epoch_NNN.json, genotype.json (the latest), genotype.txt (DARTS's form)
                         (sigmoid: with the operations above Fair DARTS's threshold)
    checkpoint.npz       everything needed to continue exactly (see checkpoint.py)
    plots/               curves, alpha heat maps, the cell

`Search(cfg).run()` runs from scratch; `Search.resume(folder).run()` continues a
stopped run and ends with bit-identical weights and alpha.
"""

import json
import math
import os
import time
from contextlib import nullcontext

from .. import nn
from ..darts.architect import Architect, frozen
from ..darts.complexity import Complexity
from ..darts.genotype import (
    describe_genotype,
    genotype_to_dict,
    genotype_to_str,
    save_genotype,
    threshold_record,
    unused_marker,
)
from ..darts.hypernet import make_hypernet, sample_lambda
from ..darts.network import Network
from ..engine import backend
from ..engine.autograd import no_grad
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
from .config import (
    SearchConfig,
    make_config,
    resolved_genotype_rule,
    resolved_zero_one_weight,
)
from .errors import check_finite
from .evaluate import evaluate, recalibrated_batch_norm
from .progress import Progress, format_seconds
from .resources import check_memory
from .runfolder import RunLock, default_folder, prepare_folder, write_config, write_text
from .search_space import check_primitives

PROGRESS_EVAL_BATCHES = 16  # validation batches after an epoch that is not the last
FORMAT = "minidarts-search-1"  # of the checkpoints; a change refuses older ones


class Search:
    """One search run (see the module docstring)."""

    def __init__(self, cfg, folder=None, log=print, overwrite=False, datasets=None):
        self.cfg = cfg
        self.log = log
        self.overwrite = overwrite  # a new run into a used folder moves it aside first
        backend.check_device(cfg.device)
        self.folder = folder or (
            os.path.join(cfg.out, cfg.name) if cfg.name else default_folder(cfg.out, "search")
        )
        # the data: MNIST's search split (or the IDX files of cfg.data_root), or
        # datasets = (search-train, search-val) of your own (data.array_dataset)
        if datasets is None:
            train, val = data.search_split(cfg.seed, subset=cfg.subset, root=cfg.data_root)
            for ds in (train, val):
                ds.set_normalisation(cfg.data_mean, cfg.data_std)
        else:
            train, val = data.check_pair(datasets, "search-train", "search-val")
        self.train_batches = data.Batches(
            train, cfg.batch_size, seed=cfg.seed + 1, device=cfg.device
        )
        self.val_batches = data.Batches(val, cfg.batch_size, seed=cfg.seed + 2, device=cfg.device)
        previous = backend.default_device()
        backend.set_default_device(cfg.device)
        try:
            self.model = Network(
                C=cfg.channels,
                layers=cfg.layers,
                steps=cfg.nodes,
                multiplier=cfg.multiplier,
                stem_multiplier=cfg.stem_multiplier,
                in_channels=train.channels,
                num_classes=train.num_classes,
                relaxation=cfg.relaxation,
                primitives=check_primitives(cfg.primitives),
                seed=cfg.seed,
            )
            self.hypernet = make_hypernet(cfg, self.model)
        finally:
            backend.set_default_device(previous)
        self.complexity = Complexity(self.model)
        # lambda is drawn from its own generator, saved in checkpoints
        self.lambda_rng = backend.default_rng([cfg.seed, 11])
        arch_params = (
            self.model.arch_parameters() if self.hypernet is None else self.hypernet.parameters()
        )
        self.w_optimizer = optim.SGD(
            self.model.parameters(),
            lr=cfg.w_lr,
            momentum=cfg.w_momentum,
            weight_decay=cfg.w_weight_decay,
        )
        self.scheduler = optim.CosineAnnealingLR(
            self.w_optimizer, T_max=cfg.epochs, eta_min=cfg.w_lr_min
        )
        self.a_optimizer = optim.Adam(
            arch_params,
            lr=cfg.alpha_lr,
            betas=(cfg.alpha_beta1, cfg.alpha_beta2),
            weight_decay=cfg.alpha_weight_decay,
        )
        self.architect = Architect(
            self.model,
            self.a_optimizer,
            hypernet=self.hypernet,
            complexity=self.complexity if (self.hypernet or cfg.penalty) else None,
            order=cfg.order,
            w_optimizer=self.w_optimizer,
            zero_one_weight=resolved_zero_one_weight(cfg),
        )
        self.epoch = 0
        self.history = []

    # --- one step and one epoch ------------------------------------------------
    def sample_lambda(self):
        """This step's complexity weight: drawn log-uniformly for a hypernet search,
        the fixed penalty for the baseline, 0 for plain DARTS."""
        if self.hypernet is None:
            return self.cfg.penalty
        return sample_lambda(self.lambda_rng, self.cfg.lambda_min, self.cfg.lambda_max)

    def alphas(self, lam=None):
        """The architecture at `lam` (detached: no gradient reaches the hypernet)."""
        if self.hypernet is None:
            return self.model.alphas
        with no_grad():
            return self.hypernet(self.cfg.lambda_min if lam is None else lam)

    def weight_step(self, x, y, lam=0.0):
        """One SGD step on w from a training batch at alpha(lam), alpha fixed;
        returns (loss, accuracy)."""
        self.w_optimizer.zero_grad()
        with frozen(self.model.arch_parameters()):
            logits = self.model(x, self.alphas(lam))
            loss = F.cross_entropy(logits, y)
            loss.backward()
        optim.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.w_optimizer.step()
        return loss.item(), accuracy(logits, y)

    def train_epoch(self, progress):
        sums = dict(train_loss=0.0, train_acc=0.0, arch_loss=0.0, arch_acc=0.0)
        n = len(self.train_batches)
        self.model.train()
        pairs = data.paired_batches(self.train_batches, self.val_batches)
        for k, ((x, y), (x_val, y_val)) in enumerate(pairs, start=1):
            lam = self.sample_lambda()
            if self.epoch < self.cfg.warmup_epochs:  # warm-up: alpha stays, only measured
                with no_grad():
                    arch_loss_t, logits = self.architect.loss(x_val, y_val, lam)
                arch_loss, arch_acc = arch_loss_t.item(), accuracy(logits, y_val)
            else:
                arch_loss, arch_acc = self.architect.step(x_val, y_val, lam, x, y)
            loss, acc = self.weight_step(x, y, lam)
            if not (math.isfinite(loss) and math.isfinite(arch_loss)):
                raise FloatingPointError(
                    f"epoch {self.epoch + 1} step {k}: the loss became {loss} / {arch_loss}; "
                    f"lower w_lr ({self.cfg.w_lr}) or alpha_lr ({self.cfg.alpha_lr})"
                )
            for key, v in zip(sums, (loss, acc, arch_loss, arch_acc)):
                sums[key] += v
            progress.update(
                f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                k,
                n,
                loss=sums["train_loss"] / k,
                acc=sums["train_acc"] / k,
                arch_loss=sums["arch_loss"] / k,
            )
        return {key: v / n for key, v in sums.items()}

    def evaluate(self, lam=None):
        """Loss and accuracy on the search-validation set at alpha(lam) (eval mode). A
        hypernet search first recalibrates batch norm at alpha(lam) on
        cfg.bn_recalibration_batches search-train batches (see
        evaluate.recalibrated_batch_norm); the search's own statistics are untouched."""
        alphas = self.alphas(lam)
        n = self.cfg.bn_recalibration_batches if self.hypernet is not None else 0
        context = (
            recalibrated_batch_norm(
                self.model,
                self.train_batches.dataset,
                n,
                self.cfg.batch_size,
                self.cfg.device,
                alphas=alphas,
            )
            if n
            else nullcontext()
        )
        with context:
            return evaluate(
                self.model,
                self.val_batches.dataset,
                self.cfg.batch_size,
                self.cfg.device,
                self.eval_limit(),
                alphas=alphas,
            )

    def eval_limit(self):
        """Validation batches an evaluation reads (None: all): cfg.eval_batches when it
        is set (0: all); otherwise the whole split once the search is done (the final records, the
        sweep) and PROGRESS_EVAL_BATCHES after the earlier epochs, which only show the
        progress (the whole split costs as much as a fifth of an epoch's steps)."""
        if self.cfg.eval_batches is not None:
            return self.cfg.eval_batches or None
        return None if self.epoch >= self.cfg.epochs else PROGRESS_EVAL_BATCHES

    def genotype(self, lam=None, rule=None):
        """The genotype derived from alpha(lam) (alpha for plain DARTS) by `rule`
        (default: the run's, see config.resolved_genotype_rule)."""
        rule = rule or resolved_genotype_rule(self.cfg)
        return self.complexity.genotype_of(self.alphas(lam), rule)

    def architecture_record(self, lam=None):
        """What the architecture at `lam` is: validation loss and accuracy of the
        supernetwork, expected complexity, cell weights of the derived genotype.
        A non-finite alpha, loss, accuracy or complexity raises FloatingPointError
        naming the epoch and lambda: no genotype is derived from it, nothing saved."""
        alphas = self.alphas(lam)
        where = f"epoch {self.epoch}"
        if self.hypernet is not None:  # alpha(lambda): the lambda is part of the where
            where += f", lambda {self.cfg.lambda_min if lam is None else lam:g}"
        elif self.cfg.penalty:
            where += f", penalty {self.cfg.penalty:g}"
        remedy = f"lower alpha_lr ({self.cfg.alpha_lr}) or w_lr ({self.cfg.w_lr})"
        check_finite(where, remedy, **{f"alpha of the {k} cell": a.data for k, a in alphas.items()})
        genotype = self.genotype(lam)
        darts_genotype = self.genotype(lam, rule="darts")  # beside it, for comparison
        val_loss, val_acc = self.evaluate(lam)
        complexity = float(self.complexity(alphas).item())
        check_finite(
            where, remedy, validation_loss=val_loss, accuracy=val_acc, complexity=complexity
        )
        return {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "complexity": complexity,
            "decidedness": self.model.decidedness(alphas),
            "genotype_rule": resolved_genotype_rule(self.cfg),
            "genotype_params": self.complexity.genotype_params(genotype),
            "genotype": genotype_to_dict(genotype),
            "darts_genotype_params": self.complexity.genotype_params(darts_genotype),
            "darts_genotype": genotype_to_dict(darts_genotype),
        }

    # --- the run ---------------------------------------------------------------
    def run(self):
        """Search until cfg.epochs; returns the final genotype. A new run refuses a
        folder that holds files (see runfolder.claim_folder); the run holds the
        folder's lock while it runs."""
        prepare_folder(self.folder, not self.history, self.overwrite, "search run")
        with RunLock(self.folder):
            return self._run()

    def _run(self):
        cfg = self.cfg
        # refuse a batch the machine cannot hold before allocating it (resources.py)
        check_memory(
            self.model,
            self.train_batches.dataset.batch([0])[0].shape[1:],
            cfg.batch_size,
            cfg.device,
            forward=lambda x: self.model(x, self.alphas()),
        )
        os.makedirs(os.path.join(self.folder, "genotypes"), exist_ok=True)
        write_config(self.folder, cfg, FORMAT)
        n = len(self.train_batches)
        self.log(
            f"search: {self.folder} | {len(self.train_batches.dataset)} train + "
            f"{len(self.val_batches.dataset)} val images | {cfg.epochs} epochs x {n} steps | "
            f"{nn.count_parameters(self.model)} weights | device {cfg.device}"
        )
        runfolder.say_if_finished(self.log, "search", self.folder, self.epoch, cfg.epochs)
        progress = Progress(cfg.epochs * n, self.epoch * n, every=cfg.log_every, write=self.log)
        while self.epoch < cfg.epochs:
            start = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]
            record = self.train_epoch(progress)
            self.scheduler.step()
            self.epoch += 1
            # plain DARTS and the baseline: the one architecture; a hypernet search:
            # the architecture at lambda_min, and one record per evaluation lambda
            main = self.architecture_record()
            genotype = self.genotype()
            weights = self.model.relaxed_weights(self.alphas())
            record.update(epoch=self.epoch, lr=lr, **main)
            if self.hypernet is not None:
                record["lambdas"] = {
                    f"{lam:g}": self.architecture_record(lam) for lam in cfg.eval_lambdas
                }
            record.update(
                seconds=time.perf_counter() - start,
                alpha={k: v.tolist() for k, v in weights.items()},
            )
            self.history.append(record)
            # the checkpoint first: the records never claim an epoch it does not hold
            self.save()
            self._write_records(genotype)
            self.log(
                f"epoch {self.epoch}/{cfg.epochs} done in {format_seconds(record['seconds'])}"
                f" | train acc {record['train_acc']:.4f} | val acc {main['val_acc']:.4f} | "
                f"complexity {main['complexity']:.3f} | decided {main['decidedness']:.3f} | "
                f"{describe_genotype(genotype, self.model.cell_kinds())}"
            )
        if cfg.plots and self.history:
            from . import plots

            paths = plots.plot_search(
                self.folder,
                self.history,
                self.model.primitives,
                self.genotype(),
                kinds=self.model.cell_kinds(),
            )
            self.log("plots: " + ", ".join(paths))
        return self.genotype()

    def _write_records(self, genotype):
        write_text(
            os.path.join(self.folder, "metrics.jsonl"),
            "".join(json.dumps(record) + "\n" for record in self.history),
        )
        # a half whose alpha never entered the loss (the one-cell network's normal
        # cell) is marked, not a result (the sweep marks its genotypes the same way)
        extra = unused_marker(self.model.cell_kinds())
        if self.cfg.relaxation == "sigmoid":
            # the genotype keeps DARTS's shape (top 2 edges per node); beside it, which
            # operations pass Fair DARTS's threshold (see genotype.threshold_record)
            w = self.model.relaxed_weights(self.alphas())
            extra["sigmoid_threshold"] = threshold_record(
                w["normal"], w["reduce"], self.model.steps, self.model.primitives
            )
        for path in (
            os.path.join(self.folder, "genotypes", f"epoch_{self.epoch:03d}.json"),
            os.path.join(self.folder, "genotype.json"),
        ):
            save_genotype(genotype, path, extra, primitives=self.model.primitives)
        write_text(os.path.join(self.folder, "genotype.txt"), genotype_to_str(genotype) + "\n")

    # --- checkpoints -------------------------------------------------------------
    def state_dict(self):
        return {
            "format": FORMAT,
            "config": self.cfg.to_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "model": self.model.state_dict(),
            "alphas": {k: a.data for k, a in self.model.alphas.items()},
            "hypernet": None if self.hypernet is None else self.hypernet.state_dict(),
            "lambda_rng": self.lambda_rng.bit_generator.state,
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_batches": self.train_batches.state_dict(),
            "val_batches": self.val_batches.state_dict(),
        }

    def load_state_dict(self, state):
        """Continue from a state_dict(), checked whole first (check_state): nothing is
        loaded from a state with a wrong key, shape, dtype or value."""
        check_format(state, FORMAT, "search")
        check_state(self, state, ("model", "alphas", "hypernet", "lambda_rng", "scheduler"))
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.model.load_state_dict(state["model"])
        for k, a in self.model.alphas.items():
            a.data[...] = backend.asarray(state["alphas"][k], device=a.device)
        if self.hypernet is not None:
            self.hypernet.load_state_dict(state["hypernet"])
        self.lambda_rng.bit_generator.state = state["lambda_rng"]
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scheduler.T_max != self.cfg.epochs:
            # --resume --epochs N: stretch the cosine over the new length, continuing
            # from the current epoch (else the rate would climb back up after T_max).
            self.scheduler.set_T_max(self.cfg.epochs)
        self.train_batches.load_state_dict(state["train_batches"])
        self.val_batches.load_state_dict(state["val_batches"])

    def save(self):
        save_checkpoint(os.path.join(self.folder, "checkpoint.npz"), self.state_dict())

    @classmethod
    def resume(cls, folder, epochs=None, log=print, datasets=None, read_only=False):
        """Continue the run in `folder` from its last checkpoint (optionally to more
        epochs); `datasets`: the run's own (search-train, search-val), if it had them;
        read_only: only read it (a sweep), so a hand-edited config.json is let be."""
        path = os.path.join(folder, "checkpoint.npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--resume {folder}: no checkpoint.npz there")
        state = load_checkpoint(path)
        try:
            check_format(state, FORMAT, "search")
        except ValueError as e:
            raise ValueError(f"--resume {folder}: {e}") from None
        overrides = dict(state["config"])
        if not read_only:  # a continued run writes config.json over (check_config_file)
            runfolder.check_config_file(folder, overrides)
        if epochs is not None:
            if epochs <= int(state["epoch"]):
                raise ValueError(
                    f"--resume {folder} --epochs {epochs}: the run has done {int(state['epoch'])}"
                    " epochs already; give more to extend it"
                )
            overrides["epochs"] = epochs
        cfg = make_config(None, overrides, source=f"{path} config", saved=True)
        search = cls(cfg, folder=folder, log=log, datasets=datasets)
        load_checked(search, state, path)
        return search


__all__ = ["Search", "SearchConfig"]
