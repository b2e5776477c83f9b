"""Print the CPU kernel families below this host's own, as ``ATEN_CPU_CAPABILITY:ONEDNN_MAX_CPU_ISA`` pairs, one per
line (``scripts/test.sh`` reruns the kernel-sensitive tests under each). PyTorch's dispatch and oneDNN's are capped
together, as a real machine of that family caps both (capping one alone mixes families: two other precision tests
failed that way on an AMX host). The host's own family is what the whole suite runs on."""
from __future__ import annotations

import torch

# Highest first: what torch.backends.cpu.get_cpu_capability() reports, and the oneDNN cap of the same family.
FAMILIES = [("AVX512", "avx512", "ALL"), ("AVX2", "avx2", "AVX2"), ("DEFAULT", "default", "SSE41")]


def has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_tile" in line.split() for line in f)
    except OSError:
        return False


def below_host() -> list[str]:
    host = torch.backends.cpu.get_cpu_capability().upper()
    names = [name for name, _, _ in FAMILIES]
    start = names.index(host) + 1 if host in names else len(names)
    # An AMX host also covers AVX-512 without AMX (oneDNN capped below it; an AMD Zen 4/5 runs that path).
    extra = ["avx512:AVX512_CORE_BF16"] if host == "AVX512" and has_amx() else []
    return extra + [f"{aten}:{onednn}" for _, aten, onednn in FAMILIES[start:]]


if __name__ == "__main__":
    print("\n".join(below_host()))
