"""Every default sample rate / samples per token is llmtts.token_space's (one place to change them)."""
from __future__ import annotations

from llmtts.cli import build_parser
from llmtts.codec.config import CodecModelConfig
from llmtts.data.ingest import IngestConfig
from llmtts.decoder.config import DecoderModelConfig
from llmtts.token_space import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES_PER_TOKEN


def test_defaults_agree():
    shards = build_parser().parse_args(["data", "shards", "--input-dir", "x", "--format", "ljspeech", "--out", "y"])
    assert {CodecModelConfig().sample_rate, DecoderModelConfig().sample_rate, IngestConfig().sample_rate,
            shards.sample_rate} == {DEFAULT_SAMPLE_RATE}
    assert {CodecModelConfig().samples_per_token, DecoderModelConfig().samples_per_token} == {DEFAULT_SAMPLES_PER_TOKEN}
