import math

import pytest
import torch

from llmtts.train.config import OptimConfig
from llmtts.train.optim import Schedule, build_adamw, lr_factor


def test_warmup_then_cosine_reaches_floor():
    cfg = OptimConfig(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    f = [lr_factor(s, 110, cfg) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warmup
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert f[110] == pytest.approx(0.1)


def test_wsd_is_flat_then_decays_linearly():
    cfg = OptimConfig(schedule="wsd", warmup_steps=0, decay_fraction=0.2, min_lr_ratio=0.0)
    f = [lr_factor(s, 100, cfg) for s in range(101)]
    assert f[:80] == [1.0] * 80
    assert f[90] == pytest.approx(0.5)
    assert f[100] == pytest.approx(0.0)


def test_schedule_state_roundtrip_and_no_decay_on_vectors():
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    cfg = OptimConfig(lr=1.0, schedule="cosine", min_lr_ratio=0.0)
    opt = build_adamw(m.parameters(), cfg)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, cfg.weight_decay] and len(opt.param_groups[0]["params"]) == 1
    s = Schedule(opt, cfg, 10)
    for _ in range(5):
        s.step()
    s2 = Schedule(build_adamw(m.parameters(), cfg), cfg, 10)
    s2.load_state_dict(s.state_dict())
    assert s2.lr == pytest.approx(s.lr) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
