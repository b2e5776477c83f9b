"""The console progress bar (rank 0): step, loss, lr, steps/s, throughput in the stage's unit, ETA."""
from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, initial: int, unit: str, enabled: bool):
        self.unit = unit
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # In a log file (SLURM, nohup) every refresh is a line: refresh rarely there.
            interval = 0.5 if sys.stderr.isatty() else 30.0
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=interval,
                            maxinterval=max(10.0, interval), file=sys.stderr, smoothing=0.1)

    def update_metrics(self, metrics: dict[str, float], units_per_s: float) -> None:
        if self.bar is None:
            return
        post = {}
        if "loss" in metrics:
            post["loss"] = f"{metrics['loss']:.4g}"
        lr = metrics.get("lr", next((v for k, v in metrics.items() if k.startswith("lr/")), None))
        if lr is not None:
            post["lr"] = f"{lr:.2e}"
        if units_per_s > 0:
            post[f"{self.unit}/s"] = f"{units_per_s:.4g}"
        self.bar.set_postfix(post, refresh=False)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
