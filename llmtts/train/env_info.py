"""What ran: versions, devices, world size and the command line (written to RUN/env.json)."""
from __future__ import annotations

import platform
import socket
import sys
import time
from importlib import metadata

import torch
from llmtts.redact import redact_argv

_PACKAGES = ("llm-tts-factory", "torch", "transformers", "deepspeed", "webdataset", "numpy", "vector-quantize-pytorch")


def env_info(world_size: int, strategy: str, device: torch.device) -> dict:
    versions = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    devices = []
    if torch.cuda.is_available():
        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "world_size": world_size,
        "strategy": strategy,
        "device": str(device),
        "cuda_devices": devices,
        "cpu_threads": torch.get_num_threads(),
        "argv": redact_argv(sys.argv),  # secrets in shard URLs / pipe: commands never reach the record
    }
