"""The one training loop every stage runs in (see ``llmtts.train.stage`` for the stage contract).

``Trainer(stage, cfg, run_dir, resume).fit()`` sets up device, precision and the process group,
wraps the stage's models for ``parallel.strategy`` (one strategy object, ``llmtts.distributed.strategies``,
asked for everything that differs between strategies), builds one AdamW + schedule per optimizer group,
resumes, loops (grad accumulation, clipping, EMA, logging, eval, checkpoints, stop signals) and
finally writes ``RUN/export/`` via ``stage.export``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from llmtts.config import save_config, to_dict
from llmtts.distributed import process_group as pg
from llmtts.distributed import trace
from llmtts.distributed.parallelize import ParallelContext
from llmtts.distributed.signals import REQUEUE_EXIT_CODE, StopFlag
from llmtts.distributed.strategies import Strategy, build_strategy
from llmtts.errors import UserError
from llmtts.train import checkpoint_dir as ckpt_io
from llmtts.train.checkpointing import Checkpointer, rng_kept, seed_everything
from llmtts.train.context import OptimizerSlot, StepContext
from llmtts.train.ema import EMA
from llmtts.train.env_info import env_info
from llmtts.train.loggers import RunLogger
from llmtts.train.optim import Schedule, build_adamw, optim_config_for
from llmtts.train.progress import Progress
from llmtts.train.run_folder import RunLock, check_fresh_start, lock_error
from llmtts.train.stage import Stage

log = logging.getLogger(__name__)


# Written to RUN/ when a signal stopped training (resumable); removed when a run starts.
STOPPED_MARKER = "stopped.json"
BEST_DIR, BEST_FILE = "best", "best.json"  # trainer.best_metric: RUN/best/ is an export + best.json


@dataclass
class _Window:
    """Throughput since the last logged step."""

    units: float = 0.0
    steps: int = 0
    t0: float = field(default_factory=time.monotonic)


@dataclass
class FitResult:
    step: int
    status: str  # "finished" (max_steps or max_minutes reached) | "stopped" (signal: requeue)
    exit_code: int
    train_metrics: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)


class Trainer:
    def __init__(self, stage: Stage, cfg: Any, run_dir: str | Path, resume: str = "auto",
                 strategy: Strategy | None = None):
        self.stage = stage
        self.cfg = cfg
        self.tcfg = cfg.trainer
        # Built once from cfg.parallel and handed to everything that depends on it (pctx, ctx, checkpoints).
        self.strategy = strategy if strategy is not None else build_strategy(cfg.parallel)
        self.lcfg = cfg.log
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.resume = resume
        self.step = 0
        self.ema: EMA | None = None
        self._last_saved_step = -1
        self.logger: RunLogger | None = None
        self._lock = RunLock(self.run_dir)

    # ------------------------------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        self._start()
        self._prepare_run_dir()
        groups = self._build_models()
        self._build_optimizers(groups)
        self._restore()
        self._make_context()

    def _start(self) -> None:
        """Join the process group (through the strategy: the one place it happens), pick device and precision."""
        self.dist = self.strategy.start()
        self.rank, self.world = self.dist.rank, self.dist.world_size
        self.device = pg.pick_device(self.tcfg.device, self.dist.local_rank)
        trace.record_rank(self.rank, self.world, self.dist.local_rank)  # only with LLMTTS_TRACE_DIR set
        prec = self.tcfg.precision
        use_bf16 = prec == "bf16" or (prec == "auto" and self.device.type == "cuda")
        # bf16 is torch autocast for every strategy; weights, gradients and optimizer state stay fp32.
        self.amp_dtype = torch.bfloat16 if use_bf16 else None

    def _prepare_run_dir(self) -> None:
        """Before anything is written: one trainer per run folder, and no fresh start over another run."""
        check_fresh_start(self.run_dir, self.resume)
        holder = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            holder = self._lock.acquire()
        if pg.all_reduce([float(holder is not None)], "max")[0]:
            raise lock_error(self.run_dir, holder)
        if self.tcfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            ckpt_io.write_json_atomic(self.run_dir / "env.json", env_info(self.world, self.strategy.name, self.device))
            ckpt_io.clean_partial(self.ckpt_root)
            (self.run_dir / STOPPED_MARKER).unlink(missing_ok=True)
        pg.barrier()

    def _build_models(self) -> dict[str, list[str]]:
        """The stage's models, wrapped by its ``parallelize`` for the strategy; returns the optimizer groups."""
        # Same seed on every rank so replicated / sharded parameters start identical.
        seed_everything(self.tcfg.seed)
        models = self.stage.build_models()
        if not models:
            raise UserError(f"stage {self.stage.name}: build_models() returned no models")
        self.stage.models_names = tuple(models)
        groups = self.stage.optimizer_groups()
        for opt_name, names in groups.items():
            for n in names:
                if n not in models:
                    raise UserError(f"stage {self.stage.name}: optimizer '{opt_name}' names unknown model '{n}'")
        self.strategy.check_trainer(self.tcfg)
        pctx = ParallelContext(strategy=self.strategy, device=self.device, rank=self.rank, world_size=self.world,
                               activation_checkpointing=self.tcfg.activation_checkpointing,
                               compile=self.tcfg.compile)
        self.models = self.stage.parallelize(models, pctx)
        self.raw = {k: self.strategy.unwrap(m) for k, m in self.models.items()}
        return groups

    def _build_optimizers(self, groups: dict[str, list[str]]) -> None:
        """One AdamW + schedule per optimizer group (driven by the strategy's engine, if it makes one); EMA."""
        overrides = self.stage.optimizer_overrides()
        self.slots: dict[str, OptimizerSlot] = {}
        for opt_name, names in groups.items():
            seen: set[int] = set()
            params = []
            for n in names:
                for p in self.raw[n].parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
            ocfg = optim_config_for(self.tcfg.optim, overrides.get(opt_name, {}))
            opt = build_adamw(params, ocfg)
            engine = self.strategy.make_engine({n: self.raw[n] for n in names}, opt, self.tcfg.grad_accum,
                                               self.tcfg.grad_clip)
            sched = Schedule(opt, ocfg, self.tcfg.max_steps)
            self.slots[opt_name] = OptimizerSlot(opt_name, list(names), opt, sched, params, engine)
        if self.tcfg.ema_decay > 0:
            self.ema = EMA(self.raw, self.tcfg.ema_decay)

    def _restore(self) -> None:
        """Data, validation check, and the checkpoint to resume from (if any)."""
        self.train_data = self.stage.train_data(self.rank, self.world)
        self._val_enabled = self._check_validation()
        self.ckpt = Checkpointer(self.run_dir, self.cfg, self.stage, self.raw, self.slots, self.ema, self.train_data,
                                 self.rank, self.world, self.strategy)
        resume_from = ckpt_io.resolve_resume(self.resume, self.ckpt_root)
        if resume_from is not None:
            self.step = self._last_saved_step = self.ckpt.load(resume_from)
            pg.barrier()  # every rank has chosen and read its checkpoint
            if self.dist.is_main and resume_from.parent.resolve() == self.ckpt_root.resolve():
                ckpt_io.set_aside_newer(self.ckpt_root, self.step)
        else:
            seed_everything(self.tcfg.seed + 1000 * self.rank)  # distinct dropout / sampling per rank
            if self.dist.is_main and (self.run_dir / BEST_DIR / BEST_FILE).is_file():
                shutil.rmtree(self.run_dir / BEST_DIR)  # an earlier run's best (our own export): not this run's

    def _make_context(self) -> None:
        self.logger = RunLogger(self.run_dir, self.lcfg, to_dict(self.cfg), enabled=self.dist.is_main,
                                resume_step=self.step)
        self.ctx = StepContext(device=self.device, rank=self.rank, world_size=self.world, models=self.models,
                               slots=self.slots, logger=self.logger, strategy=self.strategy,
                               grad_accum=self.tcfg.grad_accum, grad_clip=self.tcfg.grad_clip,
                               amp_dtype=self.amp_dtype, global_step=self.step)
        if self.dist.is_main:
            n_params = self.strategy.count_parameters(self.raw.values())
            log.info("stage %s: %s, world %d, %s, %.3fM parameters%s", self.stage.name, self.strategy.name,
                     self.world, self.device, n_params / 1e6, f", resumed at step {self.step}" if self.step else "")

    # ------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        try:
            self._setup()
            return self._loop()
        except Exception as exc:
            if not (pg.is_dist() and pg.peer_lost(exc)):
                raise
            # Not a bug here: say so in one line, instead of a traceback that looks like one.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            saved = f"step {self._last_saved_step}" if self._last_saved_step >= 0 else "none yet"
            raise UserError(f"rank {pg.info().rank}: lost contact with another rank near step {self.step} (a node or "
                            f"process died or was killed; see its log): {first[:300]}. Last checkpoint of this run: "
                            f"{saved}; rerun with --resume auto to continue from the last complete one") from None
        finally:
            self._it = None  # DataLoader workers end here, not whenever the trainer is garbage-collected
            if self.logger is not None:
                self.logger.close()
            self._lock.release()

    def _next_batch(self):
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.train_data)  # train_data should cycle; tolerate one that ends
            try:
                return next(self._it)
            except StopIteration:
                raise UserError(f"stage {self.stage.name}: train_data yielded no batches on rank {self.rank}") from None

    def _set_grad_sync(self, sync: bool) -> None:
        """Skip the gradient all-reduce on micro-steps that are not the accumulation boundary."""
        if self.tcfg.grad_accum == 1:
            return
        for m in self.models.values():
            self.strategy.set_grad_sync(m, sync)

    def _loop(self) -> FitResult:
        t = self.tcfg
        start = last_save = time.monotonic()
        status = "finished"
        self._train_metrics: dict[str, float] = {}
        self._val_metrics: dict[str, float] = {}
        self._last_eval = -1
        pbar = Progress(total=t.max_steps, initial=self.step, unit=self.stage.unit,
                        enabled=self.dist.is_main and self.lcfg.progress)
        window = _Window()
        with StopFlag() as stop:
            # Inside the handlers: DataLoader workers forked here inherit them, so a Ctrl-C or SIGTERM sent to
            # the whole process group stops the run cleanly instead of killing the workers under it.
            self._it = iter(self.train_data)
            while self.step < t.max_steps:
                acc = self._optimizer_step(window)
                now = time.monotonic()
                # One small collective decides everything time/signal based, so ranks never disagree.
                sig, wall, save_due = pg.all_reduce(
                    [float(stop.requested),
                     float(t.max_minutes > 0 and now - start >= t.max_minutes * 60),
                     float(t.save_every_minutes > 0 and now - last_save >= t.save_every_minutes * 60)],
                    "max")
                last = self.step >= t.max_steps or sig or wall
                if self.step % max(1, t.log_every) == 0 or last or self.step == 1:
                    self._log_train(acc, window, now, pbar)
                    window = _Window()
                pbar.advance(self.step)
                if not last:
                    self._between_steps()
                if sig:
                    status = "stopped"
                    self._stop_for_signal(stop.signum)
                    break
                if wall:
                    if self.dist.is_main:
                        log.info("trainer.max_minutes=%s reached at step %d", t.max_minutes, self.step)
                    break
                if (t.save_every and self.step % t.save_every == 0 and self.step < t.max_steps) or save_due:
                    self._save()
                    last_save = time.monotonic()
        pbar.close()
        if status == "finished":
            self._finish()
        if self.dist.is_main:
            log.info("stage %s %s at step %d", self.stage.name, status, self.step)
        return FitResult(self.step, status, REQUEUE_EXIT_CODE if status == "stopped" else 0, self._train_metrics,
                         self._val_metrics)

    def _optimizer_step(self, window: _Window) -> dict[str, float]:
        """One optimizer step: ``grad_accum`` micro-batches through the stage; their metrics averaged."""
        t = self.tcfg
        acc: dict[str, float] = defaultdict(float)
        self.ctx.extra = {}
        for micro in range(t.grad_accum):
            self.ctx.micro = micro
            self._set_grad_sync(micro == t.grad_accum - 1)
            batch = self._next_batch()
            out = self.stage.train_step(batch, self.ctx)
            for k, v in (out or {}).items():
                acc[k] += float(v) / t.grad_accum
            window.units += float(self.stage.units_in_batch(batch))
        self.step += 1
        self.ctx.global_step = self.step
        window.steps += 1
        if self.ema is not None:
            self.ema.update()
        return acc

    def _log_train(self, acc: dict[str, float], window: _Window, now: float, pbar: Progress) -> None:
        """Training metrics averaged over ranks, learning rates, throughput since the last log row."""
        metrics = dict(acc)
        metrics.update(self.ctx.extra)
        for name, slot in self.slots.items():
            metrics[f"lr/{name}" if len(self.slots) > 1 else "lr"] = slot.schedule.lr
        metrics["__units"] = window.units
        train_metrics = pg.mean_over_ranks(metrics)
        dt = max(now - window.t0, 1e-9)
        rate = train_metrics.pop("__units") * self.world / dt
        train_metrics[f"{self.stage.unit}_per_s"] = rate
        train_metrics["steps_per_s"] = window.steps / dt
        if self.device.type == "cuda":  # peak since start, this rank: sizes batches, compares recipes
            train_metrics["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.logger.log_metrics(train_metrics, self.step, "train")
        pbar.update_metrics(train_metrics, rate)
        self._train_metrics = train_metrics

    def _between_steps(self) -> None:
        """``trainer.eval_every`` evaluation (and best export), else ``log.log_audio_every`` samples."""
        if self.tcfg.eval_every and self.step % self.tcfg.eval_every == 0:
            self._val_metrics = self._evaluate() or self._val_metrics
            self._last_eval = self.step
            self._track_best(self._val_metrics)
        elif self.lcfg.log_audio_every and self.step % self.lcfg.log_audio_every == 0:
            self._log_samples()

    def _stop_for_signal(self, signum: int | None) -> None:
        self._save()
        if self.dist.is_main:
            # torchrun turns a worker's exit code into its own 1; launchers read this instead.
            ckpt_io.write_json_atomic(self.run_dir / STOPPED_MARKER, {
                "step": self.step, "signal": int(signum or 0), "exit_code": REQUEUE_EXIT_CODE,
                "checkpoint": str(self.ckpt_root / ckpt_io.step_dir_name(self.step))})

    def _finish(self) -> None:
        """max_steps / max_minutes: final evaluation, checkpoint and export."""
        if self._last_eval != self.step:
            self._val_metrics = self._evaluate() or self._val_metrics
            self._track_best(self._val_metrics)
        if self._last_saved_step != self.step:
            self._save()
        self.ckpt.export()

    # ------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, float] | None:
        with rng_kept():  # evaluation must not move training's random streams (exact resume)
            return self._evaluate_inner()

    def _check_validation(self) -> bool:
        """At start-up, not after all of training: validation data that yields no batch at all (e.g. its only
        clip was rejected) switches evaluation off with a one-line warning; ``trainer.best_metric``, which
        needs it, makes that an error. Draws one batch per rank."""
        why, has_data, has_batch = "", False, False
        with rng_kept():
            try:
                data = self.stage.val_data(self.rank, self.world)
                has_data = data is not None
                has_batch = has_data and next(iter(data), None) is not None
            except UserError as exc:  # e.g. the reader found no usable sample in the split
                has_data, why = True, (str(exc).strip().splitlines() or ["unusable"])[-1]
        err, any_data, any_batch = pg.all_reduce([float(bool(why)), float(has_data), float(has_batch)], "max")
        if any_batch and not err:
            return True
        if any_data:
            why = why or "no rank got a validation batch"
            if self.tcfg.best_metric:
                raise UserError(f"trainer.best_metric={self.tcfg.best_metric} needs validation data, but the "
                                f"validation split is unusable ({why})")
            if self.dist.is_main:
                log.warning("validation disabled for this run: the validation split yields no batch (%s)", why)
        return False

    def _evaluate_inner(self) -> dict[str, float] | None:
        if not self._val_enabled:
            return None
        data = self.stage.val_data(self.rank, self.world)
        if data is None:
            return None
        batches = list(islice(iter(data), self.tcfg.eval_batches))
        # Every rank must run the same number of forwards (FSDP / ZeRO-3 forwards are collective).
        n = int(pg.all_reduce([float(len(batches))], "min")[0])
        if n == 0:
            if self.dist.is_main:
                log.warning("evaluation skipped at step %d: a rank has no validation batches", self.step)
            return None
        sums: dict[str, float] = defaultdict(float)
        with self._eval_mode():
            for b in batches[:n]:
                for k, v in (self.stage.eval_step(b, self.ctx) or {}).items():
                    sums[k] += float(v)
            metrics = pg.mean_over_ranks({k: v / n for k, v in sums.items()})
            self.logger.log_metrics(metrics, self.step, "val")
            self.stage.on_eval_end(self.ctx, self.step)
        return metrics

    def _track_best(self, metrics: dict[str, float] | None) -> None:
        """``trainer.best_metric``: export RUN/best/ when the metric improves (every rank calls this with the
        same rank-averaged metrics, so the collective export runs on all of them or none)."""
        key = self.tcfg.best_metric
        if not key or not metrics:
            return
        if key not in metrics:
            raise UserError(f"trainer.best_metric={key!r} is not a validation metric of stage "
                            f"{self.stage.name} (it has: {', '.join(sorted(metrics))})")
        value = float(metrics[key])
        best_file = self.run_dir / BEST_DIR / BEST_FILE
        try:
            best = json.loads(best_file.read_text())  # survives resume: the run's best so far
        except (OSError, ValueError):
            best = None
        if best is not None and best.get("metric") == key and int(best.get("step", -1)) <= self.step \
                and not value < float(best["value"]):
            return
        record = {"metric": key, "value": value, "step": self.step}
        with rng_kept():  # the export builds fresh models (their init draws random numbers)
            self.ckpt.export(BEST_DIR, extra={BEST_FILE: record})
        self.logger.log_metrics({f"best_{key}": value}, self.step, "val")
        if self.dist.is_main:
            log.info("new best %s=%.4f at step %d -> %s", key, value, self.step, self.run_dir / BEST_DIR)

    def _log_samples(self) -> None:
        """``log.log_audio_every``: the stage's sample hook between evaluations."""
        with self._eval_mode(), rng_kept():
            self.stage.on_eval_end(self.ctx, self.step)

    @contextmanager
    def _eval_mode(self):
        """no_grad + eval(), then each module back to its own mode (a frozen helper stays in eval)."""
        modes = [(m, m.training) for top in self.models.values() for m in top.modules()]
        for top in self.models.values():
            top.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for m, mode in modes:
                m.training = mode

    def _save(self) -> None:
        self.ckpt.save(self.step)
        self._last_saved_step = self.step
