"""``LLMConfig``: everything ``llmtts llm train`` reads (YAML + dotted overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from llmtts.llm.model import LLMModelConfig
from llmtts.llm.samples import SamplesConfig
from llmtts.train.config import DataConfig, LogConfig, ParallelConfig, TrainerConfig


@dataclass
class VocabConfig:
    # Audio codes of the codec (one FSQ codebook). 0 = read ``codebook_size`` from the token shards'
    # index.json.
    n_audio: int = 0
    # Speaker tokens, in this order (ids follow it). Empty = no speaker token; a sample whose speaker
    # is not listed is skipped (counted) when the list is non-empty. "auto" = every speaker of the token
    # shards' index.json with at least ``min_speaker_utterances`` utterances, sorted by name.
    speakers: Union[list[str], Literal["auto"]] = field(default_factory=list)
    min_speaker_utterances: int = 1
    # "chars" (one id per character), "phonemes" (eSpeak NG IPA, one id per symbol), a local Hugging Face
    # tokenizer directory, or "frontend:PATH": the front end of an LLM export (e.g. an imported Soprano model;
    # its normaliser replaces ``normalizer``).
    tokenizer: str = "chars"
    # "english" or "none" (applied at inference; training uses the shards' normalized_text).
    normalizer: str = "english"


@dataclass
class PackingConfig:
    # Pack several utterances per row (block-diagonal attention); false = one utterance per row, padded.
    enabled: bool = True
    # Tokens per packed row; also the longest utterance trained on (longer ones are skipped, counted).
    row_length: int = 2048
    # How attention stays inside each utterance of a packed row:
    #   segments: causal SDPA per utterance (llmtts/llm/attention.py; no L^2 work on the whole row, but
    #             many small kernels: faster only single-threaded on CPU, see benchmarks/llm.py)
    #   mask:     transformers' block-diagonal mask from the position ids (any attn_implementation;
    #             with flash_attention_2 / flex_attention on GPU this is varlen / block-sparse)
    #   auto:     mask
    attention: Literal["auto", "segments", "mask"] = "auto"


@dataclass
class LLMDataConfig(DataConfig):
    # batch_budget / max_item_length are in tokens here (text + audio + specials).
    batch_budget: int = 16384
    max_batch_size: int = 64


@dataclass
class InferenceConfig:
    """Synthesis defaults the recipe ships with its model: written to the export's ``inference.json``;
    ``llmtts synthesize`` / ``eval tts`` / ``TTS.load`` use them unless told otherwise. None = the inference
    code's own default (llmtts/infer/sampling.py, llmtts/infer/tts.py)."""
    temperature: Optional[float] = None         # 0 = greedy
    top_p: Optional[float] = None
    top_k: Optional[int] = None                 # 0 = off
    repetition_penalty: Optional[float] = None  # >= 1.0
    repetition_window: Optional[int] = None     # recent audio tokens the penalty looks at (0 = all)
    max_tokens: Optional[int] = None            # per sentence
    tokens_per_text_id: Optional[float] = None  # runaway guard: at most this many tokens per text id (+16)
    penalize_prompt: Optional[int] = None       # 1 = the penalty also covers the prompt's ids (Soprano's runtime)
    full_vocab: Optional[int] = None            # 1 = any output id, not only [stop] + audio (Soprano's runtime)

    def __post_init__(self) -> None:
        from dataclasses import asdict

        from llmtts.errors import UserError
        from llmtts.llm.export import check_inference

        try:  # a bad value fails when the config loads, not at the export after training
            check_inference(asdict(self), "inference")
        except UserError as exc:
            raise ValueError(str(exc)) from None


@dataclass
class LLMConfig:
    model: LLMModelConfig = field(default_factory=LLMModelConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    data: LLMDataConfig = field(default_factory=LLMDataConfig)
    packing: PackingConfig = field(default_factory=PackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    # Audio samples + judge WER of held-out sentences during training (llmtts/llm/samples.py).
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    # Weight of the loss on text-side targets (text_start, text ids, speech_start); audio + stop weigh 1.
    text_loss_weight: float = 0.0
    # Set by the CLI: exactly one of these ("" = unset).
    from_scratch: bool = False
    init_from: str = ""
    # Fine-tune recipe (with --init-from): the first ``freeze_layers`` transformer layers get no gradient, and
    # ``freeze_embeddings`` keeps the input embedding (lm_head and the final norm still train). Frozen weights are
    # not in the optimizer; a small data set then moves only the top of the model.
    freeze_layers: int = 0
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.text_loss_weight < 0:
            raise ValueError("text_loss_weight must be >= 0")
        if self.packing.row_length < 8:
            raise ValueError("packing.row_length must be >= 8")
        if self.freeze_layers < 0:
            raise ValueError("freeze_layers must be >= 0")
