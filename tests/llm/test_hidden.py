"""Alignment of hidden states: dump (teacher forcing) == step-by-step KV-cached generation."""
import numpy as np
import torch

from llmtts.llm import load_llm
from llmtts.llm.export import save_export
from llmtts.llm.hidden import audio_hidden_states, forward_with_hidden, prompt_ids, training_ids
from llm_helpers import generation_states


def test_sequence_layout(vocab, frontend):
    ids, n_prompt = training_ids(vocab, frontend, "hi", np.array([0, 7, 49]))
    t = vocab.text_offset + np.array(frontend.encode("hi"))
    assert ids.tolist() == [vocab.stop, vocab.text_start, *t, vocab.speech_start, 4, 11, 53, vocab.stop]
    assert n_prompt == 5
    assert prompt_ids(vocab, frontend, "hi") == ids[:n_prompt].tolist()


def test_hidden_is_post_final_norm(tiny_model, vocab, frontend):
    ids, _ = training_ids(vocab, frontend, "abc", np.arange(6))
    x = torch.as_tensor(ids)[None]
    captured = {}
    hook = tiny_model.model.norm.register_forward_hook(lambda m, i, o: captured.update(pre=i[0], post=o))
    with torch.no_grad():
        logits, hidden, _ = forward_with_hidden(tiny_model, x)
        out = tiny_model(x, output_hidden_states=True)
    hook.remove()
    assert not torch.allclose(captured["pre"], captured["post"])
    torch.testing.assert_close(hidden, tiny_model.model.norm(captured["pre"]))
    torch.testing.assert_close(logits, out.logits)
    # In this transformers version hidden_states[-1] is also post-norm (tied to last_hidden_state).
    torch.testing.assert_close(out.hidden_states[-1], hidden)


def test_dump_alignment_equals_generation(tiny_model, vocab, frontend):
    codes = np.random.default_rng(0).integers(0, vocab.n_audio, 12)
    ids, n_prompt = training_ids(vocab, frontend, "hello there", codes)
    dumped = audio_hidden_states(tiny_model, ids, n_prompt)
    gen, _ = generation_states(tiny_model, ids[:n_prompt].tolist(), ids[n_prompt:-1].tolist())
    assert dumped.shape == (len(codes), 64)
    torch.testing.assert_close(dumped, gen, atol=1e-5, rtol=1e-4)
    # An off-by-one (state *of* a_i instead of the one predicting it) must not pass.
    assert not torch.allclose(dumped[1:], gen[:-1], atol=1e-3)


def test_export_round_trip(tmp_path, tiny_model, vocab, frontend):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    save_export(tiny_model, vocab, frontend, run / "export")
    model, v2, fe2 = load_llm(run)  # a run dir resolves to its export/
    assert v2 == vocab and fe2.encode("ab") == frontend.encode("ab")
    plain = AutoModelForCausalLM.from_pretrained(str(run / "export"), local_files_only=True)
    ids, n = training_ids(vocab, frontend, "ab", np.arange(5))
    x = torch.as_tensor(ids)[None]
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, tiny_model(x).logits)
    torch.testing.assert_close(audio_hidden_states(model, ids, n), audio_hidden_states(tiny_model, ids, n))
