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


TeacherForcer = Callable[[str, np.ndarray, int, "str | None"], TeacherForced]


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


def teacher_forcer(tts, codec_path: str, device: str = "cpu") -> TeacherForcer:
    """``(text, recording, sample rate, speaker) -> TeacherForced`` for ``tts`` (an ``llmtts.TTS``) and the codec
    whose tokens its LLM was trained on."""
    from llmtts.audio import resample
    from llmtts.codec.export import load_codec
    from llmtts.errors import UserError

    codec = load_codec(codec_path, device=device)
    if codec.sample_rate != tts.sample_rate or codec.samples_per_token != tts.samples_per_token:
        raise UserError(f"--codec-path {codec_path}: {codec.sample_rate} Hz, {codec.samples_per_token} samples per "
                        f"token, but the decoder makes {tts.sample_rate} Hz, {tts.samples_per_token}: not the codec "
                        "this model was trained on")

    @torch.inference_mode()
    def run(text: str, wav: np.ndarray, sr: int, speaker: str | None = None) -> TeacherForced:
        x = torch.from_numpy(resample(wav, sr, codec.sample_rate))[None].to(device)
        codes = codec.encode(x)[0].cpu().numpy()
        states, top1, nll = teacher_forced_states(tts, text, codes, speaker)
        return TeacherForced(tts.decode(states), tts.sample_rate, int(codes.size), top1, nll)

    return run
