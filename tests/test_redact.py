"""Secrets never land in logs or run records: planted credentials in every form a command line carries them,
through the one function (``llmtts.redact``) and through a real training run's ``env.json``."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmtts.redact import MASK, redact, redact_argv

PLANTED = "PLANTEDs3cr3tVALUE42"
CARRIERS = [
    f"s3://AKIAUSER:{PLANTED}@bucket/shards",
    f"https://host/shards?token={PLANTED}&part=2",
    f"https://host/x.tar?X-Amz-Date=2026&X-Amz-Signature={PLANTED}",
    f"https://host/x.tar?sig=1&opaque={PLANTED * 2}",  # a long opaque query value under any name
    f"pipe:curl -s -H 'Authorization: Bearer {PLANTED}' https://host/{{}}",
    f"pipe:AWS_SECRET_ACCESS_KEY={PLANTED} aws s3 cp s3://b/{{}} -",
    f"pipe:gsutil --token {PLANTED} cat gs://b/{{}}",
    f"pipe:tool --password={PLANTED} get {{}}",
    f"hf_token={PLANTED}",
    f"api_key: {PLANTED}",
]


@pytest.mark.parametrize("text", CARRIERS)
def test_every_carrier_is_masked_and_the_rest_kept(text):
    out = redact(text)
    assert PLANTED not in out and MASK in out
    assert out.split(MASK)[0] == text.split(PLANTED)[0][: len(out.split(MASK)[0])]  # what precedes is kept


def test_ordinary_arguments_are_left_alone():
    plain = ["llmtts", "synthesize", "--max-tokens", "512", "--api-key-file", "/etc/llmtts/key.txt",
             "tokens_per_text_id=40", "codec.overrides=[trainer.max_steps=200]", "s3://bucket/shards",
             "https://host/x.tar?part=2"]
    assert redact_argv(plain) == plain


def test_a_secret_flag_masks_the_next_argument():
    assert redact_argv(["x", "--token", PLANTED, "--password", PLANTED, "--seed", "3"]) == \
        ["x", "--token", MASK, "--password", MASK, "--seed", "3"]


def test_env_json_of_a_real_run_holds_no_planted_secret(tmp_path):
    """A training run started with credentials in its command line (a pipe: command and a signed URL, carried by
    two free-text config values): its env.json records the command line with them masked."""
    argv = [sys.executable, "-m", "llmtts.train.toy", "train", "--save-dir", str(tmp_path), "trainer.max_steps=1",
            f"log.wandb_group=pipe:AWS_SECRET_ACCESS_KEY={PLANTED} aws s3 cp s3://b/{{}} -",
            f"log.wandb_run=https://h/x?token={PLANTED}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    env = (tmp_path / "env.json").read_text() if (tmp_path / "env.json").is_file() else ""
    assert env, r.stderr[-2000:]
    assert PLANTED not in env and PLANTED not in r.stderr and MASK in env
    assert json.loads(env)["argv"][-1] == f"log.wandb_run=https://h/x?token={MASK}"
