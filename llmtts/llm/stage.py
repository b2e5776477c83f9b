"""The LLM training stage for the shared trainer: token shards in, HF export + vocab out."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn

from llmtts.data.reader import ShardLoader
from llmtts.data.remote import location
from llmtts.data.shards import list_shards, read_index
from llmtts.distributed.process_group import env_ranks
from llmtts.errors import UserError
from llmtts.llm.config import LLMConfig
from llmtts.llm.data import (LMCollate, SampleToSegment, check_single_codebook, check_token_shards, n_audio_from_index,
                             segment_length)
from llmtts.llm.export import save_export
from llmtts.llm.loss import lm_loss
from llmtts.llm.model import build_model, set_attention_dropout
from llmtts.llm.packing import LMBatch
from llmtts.llm.tokenizer import build_frontend
from llmtts.llm.vocab import Vocab, round_up
from llmtts.train.stage import Stage

log = logging.getLogger(__name__)


def _is_main_process() -> bool:
    return env_ranks().is_main  # the process group may not exist yet: the launcher's variables


def resolve_vocab(cfg: LLMConfig, index: dict, input_dir: Path, frontend) -> Vocab:
    """The vocabulary the config and the token shards call for, with its embedding rows."""
    n_audio = cfg.vocab.n_audio or n_audio_from_index(index, input_dir)
    # Character tokenizers name their ids; an imported Soprano tokenizer names them too (``text_symbols``), so
    # ``--init-from`` keeps text rows by meaning.
    symbols = tuple(getattr(frontend.tokenizer, "symbols", None) or getattr(frontend.tokenizer, "text_symbols", ()))
    layout = Vocab(n_audio=n_audio, n_text=len(frontend.tokenizer), speakers=resolve_speakers(cfg.vocab, index),
                   text_symbols=symbols)
    return Vocab(n_audio=n_audio, n_text=layout.n_text, speakers=layout.speakers, text_symbols=symbols,
                 size=embedding_rows(cfg, layout))


def resolve_speakers(vocab_cfg, index: dict) -> tuple[str, ...]:
    """The configured speaker list, or with ``speakers: auto`` the index's speakers (sorted, so the ids are a
    function of the data) that have at least ``min_speaker_utterances`` utterances."""
    if vocab_cfg.speakers != "auto":
        return tuple(vocab_cfg.speakers)
    counts = {name: int(v.get("num_samples", 0)) for name, v in (index.get("speakers") or {}).items()}
    names = tuple(sorted(n for n, c in counts.items() if n and c >= vocab_cfg.min_speaker_utterances))
    if not names:
        raise UserError(f"vocab.speakers=auto: no speaker in the shards' index.json has at least "
                        f"{vocab_cfg.min_speaker_utterances} utterances (found {counts or 'none'}); "
                        "list the speakers or lower vocab.min_speaker_utterances")
    return names


def init_rows(init_from: str) -> int:
    """Embedding rows of the ``--init-from`` export (0 when it has no ``vocab.json``)."""
    path = Path(init_from)
    path = path / "export" if (path / "export" / "vocab.json").is_file() else path
    try:
        return Vocab.load(path / "vocab.json").size if (path / "vocab.json").is_file() else 0
    except Exception:  # init_from() reports an unreadable export itself
        return 0


def embedding_rows(cfg: LLMConfig, vocab: Vocab) -> int:
    # With --init-from, an unset model.vocab_size keeps the source's row count when the vocabulary fits in it (an
    # imported Soprano LLM then keeps its 8192 rows, which `export soprano` needs); new rows otherwise.
    src = init_rows(cfg.init_from) if cfg.init_from and not cfg.model.vocab_size else 0
    rows = cfg.model.vocab_size or (src if src >= vocab.used else round_up(vocab.used))
    if rows < vocab.used:
        raise UserError(f"model.vocab_size={rows} is smaller than the {vocab.used} ids the vocabulary needs "
                        f"({vocab.n_audio} audio + {vocab.n_text} text + {len(vocab.speakers)} speakers + 4 specials)")
    return rows


def freeze(model, cfg: LLMConfig) -> None:
    """``freeze_layers`` / ``freeze_embeddings``: those parameters get no gradient (the trainer's optimizer only
    takes parameters that require one)."""
    n, layers = cfg.freeze_layers, model.model.layers
    if not (n or cfg.freeze_embeddings):
        return
    if cfg.from_scratch:
        raise UserError("freeze_layers / freeze_embeddings freeze weights of a model you start from: use them "
                        "with --init-from, not --from-scratch")
    if n > len(layers):
        raise UserError(f"freeze_layers={n} but the model has {len(layers)} layers")
    frozen = [*layers[:n]] + ([model.get_input_embeddings()] if cfg.freeze_embeddings else [])
    for module in frozen:
        module.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("frozen: %d of %d layers%s; %.2fM of %.2fM parameters train", n, len(layers),
             " + input embeddings" if cfg.freeze_embeddings else "", trainable / 1e6, total / 1e6)


class LLMStage(Stage):
    name = "llm"
    unit = "tok"

    def __init__(self, cfg: LLMConfig, run_dir: Path, input_dir: str | Path):
        super().__init__(cfg, run_dir)
        if cfg.from_scratch == bool(cfg.init_from):
            raise UserError("choose exactly one of --from-scratch or --init-from PATH")
        self.input_dir = location(input_dir)  # a path or an http(s):// / s3:// URL
        index = check_token_shards(self.input_dir)
        if cfg.samples.every > 0 and not cfg.samples.decoder and index.get("codec"):
            from llmtts.llm.samples import check_codec_decodes

            check_codec_decodes(index["codec"])  # now, not at the first sample round
        check_single_codebook(self.input_dir, cfg.data.train_split)
        self.frontend = build_frontend(cfg.vocab.tokenizer, cfg.vocab.normalizer)
        vocab = resolve_vocab(cfg, index, self.input_dir, self.frontend)
        # The run's vocabulary is fixed at its first start; a resume must not silently change ids.
        saved = self.run_dir / "vocab.json"
        if saved.is_file():
            old = Vocab.load(saved)
            if old != vocab:
                raise UserError(f"{saved}: this run was started with a different vocabulary "
                                f"({old.n_audio} audio, {old.n_text} text, speakers {list(old.speakers)}, "
                                f"{old.size} rows) than the config gives now; use a new --save-dir")
        elif _is_main_process():
            vocab.save(saved)
        self.vocab = vocab
        # Longest sequence trained on (longer samples are skipped and counted as "filtered").
        self.max_length = min(cfg.packing.row_length if cfg.packing.enabled else cfg.data.batch_budget,
                              cfg.model.max_position_embeddings)
        if cfg.data.max_item_length:
            self.max_length = min(self.max_length, cfg.data.max_item_length)
        self._hf_config = None
        self.init_report = ""
        self._sampler = None            # samples.every: built on first use (rank 0 only)
        self._last_sample_step: int | None = None

    # --- models ---------------------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        if self._hf_config is not None:  # later calls (the trainer's export) need the shape only
            from transformers import Qwen3ForCausalLM

            model = Qwen3ForCausalLM(self._hf_config)
        elif self.cfg.init_from:
            from llmtts.llm.init import init_from

            model, self.init_report = init_from(self.cfg.init_from, self.vocab, self.vocab.size,
                                                self.cfg.model.attn_implementation)
            set_attention_dropout(model, self.cfg.model.attention_dropout)
        else:
            model = build_model(self.cfg.model, self.vocab.size)
        model.config.use_cache = False  # packed rows need the no-cache mask path
        model.train()  # from_pretrained (--init-from) returns eval mode, where attention dropout never applies
        if self._hf_config is None:
            self._hf_config = copy.deepcopy(model.config)
            freeze(model, self.cfg)
        return {"model": model}

    def packed_attention(self, device: torch.device) -> str:
        mode = self.cfg.packing.attention
        if mode == "auto":
            # Measured here: segments beat the dense mask only single-threaded (~20% at 1024-token rows); with
            # 2+ CPU threads its many small kernels were 4-5x slower than the mask path. So auto = mask.
            mode = "mask"
        return mode if self.cfg.packing.enabled else "causal"

    def parallelize(self, models, pctx):
        from llmtts.llm.parallelize import parallelize_llm

        if self.packed_attention(pctx.device) == "segments":
            from llmtts.llm.attention import register

            models["model"].set_attn_implementation(register())
        return parallelize_llm(models, pctx)

    # --- data -----------------------------------------------------------------------------------
    def _loader(self, split: str, rank: int, world_size: int, train: bool) -> ShardLoader:
        return ShardLoader.from_config(
            self.input_dir, split, rank, world_size, self.cfg.data, train=train,
            length_fn=segment_length, collate_fn=LMCollate(self.cfg.packing.enabled, self.cfg.packing.row_length),
            fields=("codes",), transform=SampleToSegment(self.vocab, self.frontend, self.max_length,
                                                         bool(self.vocab.speakers)))

    def train_data(self, rank: int, world_size: int):
        self._train_loader = self._loader(self.cfg.data.train_split, rank, world_size, train=True)
        return self._train_loader

    def skipped_samples(self) -> int:
        """Training samples skipped so far on this rank (bad/over-long), as counted by the reader."""
        stats = getattr(self, "_train_loader", None)
        stats = stats.stats if stats is not None else {}
        return sum(n for k, n in stats.items() if k not in ("samples", "batches", "retries"))

    def val_data(self, rank: int, world_size: int):
        if not list_shards(self.input_dir, self.cfg.data.val_split):
            return None
        # A fresh loader per evaluation: every evaluation scores the same batches.
        return self._loader(self.cfg.data.val_split, rank, world_size, train=False)

    def units_in_batch(self, batch: LMBatch) -> float:
        return float(batch.n_real)

    # --- steps ----------------------------------------------------------------------------------
    def _forward(self, batch: LMBatch, ctx):
        b = batch.to(ctx.device)
        model = ctx.models["model"]
        audio_range = (self.vocab.audio_offset, self.vocab.audio_offset + self.vocab.n_audio)
        with ctx.autocast():
            # No attention_mask: packed rows get their block-diagonal mask from the position ids.
            logits = model(input_ids=b.input_ids, position_ids=b.position_ids, use_cache=False).logits
        return lm_loss(logits, b, self.cfg.text_loss_weight, audio_range)

    def train_step(self, batch: LMBatch, ctx) -> dict[str, float]:
        loss, metrics = self._forward(batch, ctx)
        ctx.backward(loss)
        ctx.step()
        return {"loss": float(loss.detach()), **metrics, "skipped_samples": float(self.skipped_samples())}

    @torch.no_grad()
    def eval_step(self, batch: LMBatch, ctx) -> dict[str, float]:
        loss, metrics = self._forward(batch, ctx)
        return {"loss": float(loss.detach()), **metrics}

    # --- samples during training -------------------------------------------------------------------
    def on_eval_end(self, ctx, step: int) -> None:
        """``samples.every``: synthesise held-out sentences with the current weights (llm/samples.py)."""
        sc = self.cfg.samples
        last = self._last_sample_step
        due = sc.every > 0 and (last is None or step - last >= sc.every or step >= self.cfg.trainer.max_steps)
        if not due or ctx.rank != 0:
            return
        if ctx.strategy.shards_params:
            if last is None:  # warn once; the saved config keeps what the user asked for
                log.warning("samples: skipped under sharded parameters (their forward needs every rank)")
            self._last_sample_step = step
            return
        from llmtts.llm.samples import TrainingSampler

        if self._sampler is None:
            index = read_index(self.input_dir)
            self._sampler = TrainingSampler(sc, self.vocab, self.frontend, index.get("codec"))
        self._last_sample_step = step
        metrics = self._sampler(ctx.unwrap("model"), ctx.logger, step)
        log.info("samples at step %d: %s", step, ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    # --- export ---------------------------------------------------------------------------------
    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        save_export(models["model"], self.vocab, self.frontend, out_dir, atomic=False,
                    inference=vars(self.cfg.inference))
