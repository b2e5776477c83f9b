"""Save / resume / export for the training core (directory layout in ``llmtts.train.checkpoint_dir``).

- Models and optimizers as the strategy says (``Strategy.dcp_state`` / ``save_native``): ``none`` / ``ddp`` /
  ``fsdp2`` through torch.distributed.checkpoint with FQNs of the unwrapped models, so checkpoints reshard
  across those strategies and world sizes; ``deepspeed`` in each engine's own files. EMA always through DCP.
- Everything else (step, schedules, config) in ``trainer.json``; per-rank data position and RNG
  states in ``rank_XXXXX.pt`` (loaded with ``weights_only=True``).
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException

from llmtts.config import to_dict
from llmtts.distributed import process_group as pg
from llmtts.distributed.strategies import Strategy
from llmtts.errors import UserError
from llmtts.train import checkpoint_dir as ckpt_io
from llmtts.io import replace_dir, temp_dir_beside
from llmtts.train.context import OptimizerSlot
from llmtts.train.ema import EMA
from llmtts.train.stage import Stage

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def rng_kept():
    """Run a block without moving the training RNG streams (evaluation, samples, best exports): a run resumed
    from a checkpoint taken where the uninterrupted run evaluated (or where a stop signal skipped the
    evaluation) then draws the same numbers as the uninterrupted run."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _reason(exc: BaseException) -> str:
    """One line out of a DCP error (its text holds a traceback per rank)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if re.match(r"\s*\w+(Error|Exception): ", ln)]
    text = lines[-1] if lines else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:300]


@contextmanager
def _quiet_dcp():
    """DCP without a process group (strategy none) is intended; its warning would repeat at every save."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


@dataclass
class Checkpointer:
    run_dir: Path
    cfg: Any                       # the stage's whole config (saved with every checkpoint)
    stage: Stage
    raw: dict[str, nn.Module]      # unwrapped models (FSDP2 modules are sharded in place)
    slots: dict[str, OptimizerSlot]
    ema: EMA | None
    train_data: Any
    rank: int
    world: int
    strategy: Strategy

    def __post_init__(self) -> None:
        self.root = Path(self.run_dir) / "checkpoints"
        self.container = nn.ModuleDict(self.raw)  # clean FQNs: "<model>.<param>"

    def _dcp_state(self) -> dict:
        state = self.strategy.dcp_state(self.container, self.slots)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    # --- save -----------------------------------------------------------------------------------
    def save(self, step: int) -> None:
        import torch.distributed.checkpoint as dcp

        with ckpt_io.atomic_checkpoint(self.root, step) as tmp:
            self.strategy.save_native(tmp, self.slots)
            state = self._dcp_state()
            if state:
                with _quiet_dcp():
                    dcp.save(state, checkpoint_id=str(tmp / "dcp"))
            data_state = self.train_data.state_dict() if hasattr(self.train_data, "state_dict") else {}
            ckpt_io.save_rank_state(tmp, self.rank, {"data": data_state, "rng": rng_state(),
                                                     "stage": self.stage.state_dict()})
            if self.rank == 0:
                ckpt_io.write_json_atomic(tmp / "trainer.json", {
                    "step": step,
                    "world_size": self.world,
                    **self.strategy.checkpoint_meta(),  # strategy, zero_stage
                    "has_ema": self.ema is not None,
                    "schedules": {n: s.schedule.state_dict() for n, s in self.slots.items()},
                    "config": to_dict(self.cfg),
                })
        if self.rank == 0:
            ckpt_io.prune(self.root, self.cfg.trainer.keep_last)
        pg.barrier()

    # --- load -----------------------------------------------------------------------------------
    def load(self, ckpt: Path) -> int:
        """Restore everything from ``ckpt``; returns its step."""
        import torch.distributed.checkpoint as dcp

        try:
            meta = json.loads((ckpt / "trainer.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{ckpt}: unreadable trainer.json ({exc})") from None
        self.strategy.check_resume(meta, ckpt)
        if set(meta["schedules"]) != set(self.slots):
            raise UserError(f"{ckpt}: optimizers {sorted(meta['schedules'])} do not match the stage's {sorted(self.slots)}")
        self.strategy.load_native(ckpt, self.slots)
        state = self._dcp_state()
        if not meta.get("has_ema"):
            state.pop("ema", None)
        try:
            if state:
                with _quiet_dcp():
                    dcp.load(state, checkpoint_id=str(ckpt / "dcp"))  # in place, resharded to this world
            self.strategy.load_dcp_state(self.container, self.slots, state)
        except (RuntimeError, KeyError, ValueError, CheckpointException) as exc:  # e.g. model config changed
            raise UserError(f"{ckpt}: does not fit the current models ({_reason(exc)}); "
                            "resume with the config it was saved with, or use --resume none / a new --save-dir") from None
        if self.ema is not None and "ema" not in state:
            self.ema.reset()  # EMA switched on at resume: start the average from the loaded weights
        for name, slot in self.slots.items():
            slot.schedule.load_state_dict(meta["schedules"][name])
        step = int(meta["step"])
        rs = ckpt_io.load_rank_state(ckpt, self.rank) if meta["world_size"] == self.world else None
        if rs is not None:
            if rs.get("data") and hasattr(self.train_data, "load_state_dict"):
                self.train_data.load_state_dict(rs["data"])
            if rs.get("stage"):
                self.stage.load_state_dict(rs["stage"])
            set_rng_state(rs["rng"])
        else:
            if self.rank == 0:
                log.warning("%s: saved with %d ranks, resuming on %d: weights, optimizer and schedule restored; "
                            "data positions and RNG streams start fresh", ckpt, meta["world_size"], self.world)
            seed_everything(self.cfg.trainer.seed + 1000 * self.rank + step)
        if self.rank == 0:
            log.info("resumed from %s (step %d)", ckpt, step)
        return step

    # --- export ---------------------------------------------------------------------------------
    def _full_state_dicts(self) -> dict[str, dict[str, torch.Tensor]] | None:
        """Full CPU weights per model on rank 0 (collective for sharded strategies); EMA if enabled."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, m in self.raw.items():
            sd = self.strategy.full_state_dict(m, self.rank == 0)
            if self.ema is not None:
                for k, v in self.ema.shadow[name].items():
                    full = self.strategy.full_tensor(v)  # collective where sharded: every rank calls it
                    if sd is not None:
                        sd[k] = full.detach().cpu().clone()
            out[name] = sd
        return out if self.rank == 0 else None

    def export(self, dirname: str = "export", extra: dict | None = None) -> None:
        """Fresh fp32 CPU models with the current (EMA) weights -> ``stage.export`` -> ``RUN/<dirname>``
        (``extra``: a JSON file written into the export, e.g. best.json). Collective for sharded strategies."""
        full = self._full_state_dicts()
        if self.rank == 0:
            fresh = self.stage.build_models()
            for name, m in fresh.items():
                sd = {k: v.float() if v.is_floating_point() else v for k, v in full[name].items()}
                m.load_state_dict(sd, strict=True)
                m.float().eval()
            final = self.run_dir / dirname
            tmp = temp_dir_beside(final)
            try:
                self.stage.export(fresh, tmp)
                for fname, content in (extra or {}).items():
                    ckpt_io.write_json_atomic(tmp / fname, content)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            # The run folder is this run's (run_folder.check_fresh_start), so is every name in its export.
            own = [p.name for p in final.iterdir()] if final.is_dir() else []
            replace_dir(tmp, final, recognised=own, writer=f"llmtts trainer ({dirname})")
        pg.barrier()
