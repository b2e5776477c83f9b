"""Run logging: metrics.jsonl (always), TensorBoard and wandb (switchable), audio / image samples.

Only rank 0 writes; on other ranks every method is a no-op, so stages can call ``ctx.logger``
unconditionally.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmtts.io import write_text_atomic
from llmtts.optional import require
from llmtts.train.config import LogConfig

log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "sample"


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def truncate_metrics(path: Path, max_step: int) -> None:
    """Drop lines logged after ``max_step`` by a run that died after its last checkpoint."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= max_step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue  # a line torn by a kill
    write_text_atomic(path, "".join(k + "\n" for k in keep))


class RunLogger:
    def __init__(self, run_dir: Path, cfg: LogConfig, config: dict, enabled: bool, resume_step: int = 0):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.samples_dir = self.run_dir / "samples"
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.run_dir / "metrics.jsonl", resume_step)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        if cfg.tensorboard:
            require("tensorboard", "log.tensorboard")  # torch.utils.tensorboard's own message names no extra
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
        if cfg.wandb:
            self._wandb = self._init_wandb(cfg, config)

    def _init_wandb(self, cfg: LogConfig, config: dict):
        os.environ.setdefault("WANDB_DIR", str(self.run_dir))
        os.environ.setdefault("WANDB_CACHE_DIR", str(self.run_dir / "wandb" / "cache"))
        (self.run_dir / "wandb").mkdir(exist_ok=True)
        if "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ and not _netrc_has_wandb():
            log.warning("wandb: no API key found; logging offline (sync later with `wandb sync %s/wandb`)", self.run_dir)
            os.environ["WANDB_MODE"] = "offline"
        wandb = require("wandb", "log.wandb")

        id_file = self.run_dir / "wandb" / "run_id.txt"
        # A stable id in the run dir: a resumed (requeued) run continues the same wandb run.
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(6)
        id_file.write_text(run_id)
        return wandb.init(project=cfg.wandb_project, name=cfg.wandb_run or self.run_dir.name,
                          group=cfg.wandb_group or None, config=config, id=run_id, resume="allow",
                          dir=str(self.run_dir))

    # --- metrics ------------------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, float], step: int, split: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        row.update({k: float(v) for k, v in metrics.items()})
        self._metrics.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)
        if self._wandb is not None:
            self._wandb.log({f"{split}/{k}": float(v) for k, v in metrics.items()}, step=step)

    # --- samples ------------------------------------------------------------------------------
    def log_audio(self, name: str, wav: Any, sample_rate: int, step: int) -> Path | None:
        """Write ``samples/<name>_step<N>.wav`` and send the clip to TensorBoard / wandb."""
        if not self.enabled:
            return None
        from llmtts.audio import save_wav

        wav = _numpy(wav).reshape(-1).astype(np.float32)
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        path = self.samples_dir / f"{_safe(name)}_step{step:08d}.wav"
        save_wav(path, wav, sample_rate)
        if self._tb is not None:
            self._tb.add_audio(name, torch.from_numpy(np.clip(wav, -1, 1)).unsqueeze(0), step, sample_rate=sample_rate)
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Audio(wav, sample_rate=sample_rate)}, step=step)
        return path

    def log_image(self, name: str, image: Any, step: int) -> Path | None:
        """An ``[H, W]`` / ``[H, W, 3]`` array (floats in [0, 1] or uint8) or a matplotlib figure -> PNG."""
        if not self.enabled:
            return None
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        path = self.samples_dir / f"{_safe(name)}_step{step:08d}.png"
        if hasattr(image, "savefig"):
            image.savefig(path, dpi=100, bbox_inches="tight")
            from PIL import Image

            arr = np.asarray(Image.open(path).convert("RGB"))
        else:
            arr = _numpy(image)
            if arr.dtype != np.uint8:
                arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8)
            from PIL import Image

            Image.fromarray(arr).save(path)
        if self._tb is not None:
            self._tb.add_image(name, arr, step, dataformats="HWC" if arr.ndim == 3 else "HW")
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(arr)}, step=step)
        return path

    def log_spectrogram(self, name: str, spec: Any, step: int) -> Path | None:
        """A ``[freq, time]`` (log-)magnitude array rendered with low frequencies at the bottom."""
        if not self.enabled:
            return None
        s = _numpy(spec).astype(np.float32)
        s = (s - s.min()) / max(float(s.max() - s.min()), 1e-8)
        matplotlib = require("matplotlib", "spectrogram logging")
        rgb = (matplotlib.colormaps["magma"](s[::-1])[..., :3] * 255).astype(np.uint8)
        return self.log_image(name, rgb, step)

    def log_audio_comparison(self, prefix: str, clips: dict[str, Any], sample_rate: int, step: int,
                             spectrogram=None) -> None:
        """Log each ``name -> waveform`` clip as ``prefix/name`` audio and, with ``spectrogram`` (a callable
        ``[1, N] -> [1, F, T]``, e.g. a ``LogMel``), as ``prefix/name_mel`` images, for side-by-side listening."""
        for name, wav in clips.items():
            self.log_audio(f"{prefix}/{name}", wav, sample_rate, step)
        if spectrogram is not None:
            for name, wav in clips.items():
                self.log_spectrogram(f"{prefix}/{name}_mel", spectrogram(torch.as_tensor(wav)[None])[0], step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False
