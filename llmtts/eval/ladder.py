"""Where the words are lost: what each stage before generation makes of a set's reference recordings.

``llmtts eval tts --codec-path CODEC`` (the pipeline passes it) judges two more renditions of every reference
beside the model's synthesis and the references themselves (the ceiling):

- ``codec``: the recording through the codec (encode, decode): what the LLM's targets sound like;
- ``teacher_forced`` (with a model): the recording's codes fed to the LLM after the sentence's prompt, exactly as
  in training, and the post-norm states at the audio positions (``llmtts.llm.hidden``) through the hidden-state
  decoder: the decoder's rendering of the *right* tokens, i.e. what generation would give if the LLM predicted
  every token of the recording. The same pass gives the LLM's top-1 accuracy and mean negative log-likelihood on
  those codes (over [stop] + audio ids, the choices generation samples from).

Read down a set's column: ceiling -> teacher-forced -> generated. The teacher-forced gap is what the codec's
tokens and the decoder cost; the rest is the LLM's predictions (a model that has not learned to generalise
loses its words there). The codec row says how much of the speech the tokens can carry when the codec's own
decoder renders them; the hidden-state decoder also sees the text through the LLM's states, so it can do better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class TeacherForced:
    wav: np.ndarray
    sample_rate: int
    tokens: int  # the recording's codes (audio tokens)
    top1: float  # share of them that are the LLM's most likely choice
    nll: float  # their mean negative log-likelihood under the LLM (nats)


@torch.inference_mode()
def teacher_forced_states(tts, text: str, codes: np.ndarray, speaker: str | None = None
                          ) -> tuple[torch.Tensor, float, float]:
    """The LLM's post-norm states ``[T, d]`` for ``codes`` after ``text``'s prompt (training's layout: state i is
    the one code i is predicted from, the vectors generation hands the decoder), the share of codes that are
    its top-1 choice, and their mean NLL. ``speaker``: the model's first speaker when not one of its own."""
    from llmtts.llm.hidden import audio_state_positions, forward_with_hidden, prompt_ids

    v = tts.vocab
    if speaker not in v.speakers:
        speaker = v.speakers[0] if v.speakers else None
    prompt = prompt_ids(v, tts.frontend, text, speaker=speaker)
    dev = next(tts.llm.parameters()).device
    ids = torch.tensor([prompt + v.audio_ids(codes).tolist()], device=dev)
    logits, hidden, _ = forward_with_hidden(tts.llm, ids)
    pos = audio_state_positions(len(prompt), len(codes))
    choices = logits[0, pos, v.stop: v.audio_offset + v.n_audio].float()  # [stop] + audio: what generation samples
    target = torch.as_tensor(np.asarray(codes, dtype=np.int64), device=dev) + (v.audio_offset - v.stop)
    nll = float(torch.nn.functional.cross_entropy(choices, target))
    top1 = float((choices.argmax(-1) == target).float().mean())
    return hidden[0, pos], top1, nll


class ReferenceCodec:
    """The codec the LLM was trained on, loaded once. Each reference is encoded once (``encode``); its codes serve
    both rungs: the codec's own resynthesis (``decode``) and the LLM's teacher-forced pass (``teacher_forcer``)."""

    def __init__(self, codec_path: str, device: str = "cpu"):
        from llmtts.codec.export import load_codec

        self.path, self.device = codec_path, device
        self.codec = load_codec(codec_path, device=device)
        self.sample_rate, self.samples_per_token = self.codec.sample_rate, self.codec.samples_per_token

    @torch.inference_mode()
    def encode(self, wav: np.ndarray, sr: int) -> tuple[torch.Tensor, int]:
        """``(codes [1, T], samples at the codec's rate)`` of a recording."""
        from llmtts.audio import resample

        x = resample(wav, sr, self.sample_rate)
        return self.codec.encode(torch.from_numpy(x)[None].to(self.device)), x.size

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, n_samples: int) -> tuple[np.ndarray, int]:
        """The codec's own rendering of ``codes``, trimmed to the recording's length, at the codec's rate."""
        return self.codec.decode(codes)[0, :n_samples].float().cpu().numpy(), self.sample_rate


TeacherForcer = Callable[[str, torch.Tensor, "str | None"], TeacherForced]


def teacher_forcer(tts, codec: ReferenceCodec) -> TeacherForcer:
    """``(text, codes from codec.encode, speaker) -> TeacherForced`` for ``tts`` (an ``llmtts.TTS``) and the codec
    whose tokens its LLM was trained on."""
    from llmtts.errors import UserError

    if codec.sample_rate != tts.sample_rate or codec.samples_per_token != tts.samples_per_token:
        raise UserError(f"--codec-path {codec.path}: {codec.sample_rate} Hz, {codec.samples_per_token} samples per "
                        f"token, but the decoder makes {tts.sample_rate} Hz, {tts.samples_per_token}: not the codec "
                        "this model was trained on")

    def run(text: str, codes: torch.Tensor, speaker: str | None = None) -> TeacherForced:
        c = codes[0].cpu().numpy()
        states, top1, nll = teacher_forced_states(tts, text, c, speaker)
        return TeacherForced(tts.decode(states), tts.sample_rate, int(c.size), top1, nll)

    return run
