"""A real ``llmtts serve`` process on a free loopback port, and small HTTP/audio helpers for its tests."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import soundfile as sf

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


class ServerProcess:
    """``llmtts serve --port 0`` in a subprocess; ``url`` once uvicorn printed its port, ``wait_ready`` polls
    ``/health``. Output is drained by a thread (a full pipe would block the server) and kept in ``lines``."""

    def __init__(self, llm, dec, *args: str, timeout: float = 120.0):
        cmd = [sys.executable, "-c", "import sys; from llmtts.cli import main; sys.exit(main())", "serve",
               "--llm-path", str(llm), "--decoder-path", str(dec), "--port", "0", "--threads", "1", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._port = threading.Event()
        self.url = ""
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._port.wait(timeout):
            self.kill()
            raise AssertionError("server printed no port:\n" + self.output())
        self.wait_ready(timeout)

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if m and not self.url:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                self._port.set()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n" + self.output())
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server not ready:\n" + self.output())

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def pcm_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0


def decode_file(data: bytes) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(io.BytesIO(data), dtype="float32")
    return wav, sr


def as_served(wav: np.ndarray) -> np.ndarray:
    """What the server's 16-bit formats carry for float audio ``wav`` (clipped, rounded)."""
    return pcm_to_float(np.round(np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes())


def metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample in ``text`` (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+-]+)"
    m = re.search(r"^" + pat + r"$", text, re.M)
    return float(m.group(1)) if m else 0.0
