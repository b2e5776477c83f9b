import pytest

from llmtts.eval.wer import cer, char_counts, edit_ops, normalize_for_wer, wer, word_counts


def test_identical_after_normalisation_is_zero():
    assert wer("Hello, World!", "hello world") == 0.0
    assert cer("It's  a TEST.", "it's a test") == 0.0
    # curly apostrophe, hyphenation and edge quotes are formatting, not speech
    assert wer("Don\u2019t stop - ever", "'don't' stop ever") == 0.0


def test_known_counts():
    # ref 4 words; hyp: one substitution (sat->sit), one deletion (the), one insertion (down)
    c = word_counts("the cat sat there", "cat sit there down")
    assert (c.subs, c.dels, c.ins, c.ref_len) == (1, 1, 1, 4)
    assert wer("the cat sat there", "cat sit there down") == pytest.approx(3 / 4)


def test_edit_ops_basic():
    assert edit_ops("kitten", "sitting") == (2, 0, 1)
    assert edit_ops([], ["a", "b"]) == (0, 0, 2)
    assert edit_ops(["a", "b"], []) == (0, 2, 0)


def test_cer_counts_characters_with_single_spaces():
    c = char_counts("abc def", "abd  def")
    assert c.ref_len == 7 and c.edits == 1
    assert cer("abc", "xyz") == 1.0


def test_corpus_level_weights_by_length():
    refs = ["a b c d", "e"]
    hyps = ["a b c d", "x"]
    # 1 edit over 5 words, not the mean of per-utterance rates (0.5)
    assert wer(refs, hyps) == pytest.approx(1 / 5)


def test_empty_reference_and_hypothesis():
    assert wer("", "") == 0.0
    assert wer("", "noise") == 1.0
    assert wer("hello there", "") == 1.0
    assert wer("...", "") == 0.0  # punctuation only normalises to nothing


def test_mismatched_lists_raise():
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        wer("a", ["a"])


def test_normalisation_is_documented_rules():
    assert normalize_for_wer("  Caf\u00e9 -- R\u00c9SUM\u00c9?! ", use_frontend=False) == "cafe resume"
    assert normalize_for_wer("rock'n'roll 'quoted'", use_frontend=False) == "rock'n'roll quoted"


def test_frontend_spells_out_numbers_on_both_sides():
    # Whisper writes digits and symbols; the reference text may spell them out.
    assert wer("it costs five dollars", "It costs $5.") == 0.0
    assert wer("on the third of may", "On the 3rd of May") == 0.0


def _dp_edits(ref, hyp) -> int:
    """The plain Levenshtein DP that edit_ops replaced (jiwer): the oracle for its edit counts."""
    prev = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        cur = [i]
        for j in range(1, len(hyp) + 1):
            cur.append(min(prev[j - 1] + (ref[i - 1] != hyp[j - 1]), prev[j] + 1, cur[j - 1] + 1))
        prev = cur
    return prev[-1]


def test_edit_ops_equals_the_levenshtein_dp():
    import random

    rng = random.Random(0)
    for _ in range(500):  # small alphabets and lengths: many ties, empty sides, repeated items
        ref = [rng.choice("ab c") for _ in range(rng.randint(0, 10))]
        hyp = [rng.choice("ab cd") for _ in range(rng.randint(0, 10))]
        s, d, n = edit_ops(ref, hyp)
        assert s + d + n == _dp_edits(ref, hyp), (ref, hyp)
        assert d - n == len(ref) - len(hyp) and min(s, d, n) >= 0  # a real alignment of the two
    words = "the cat sat on the mat".split()
    assert edit_ops(words, ["the", "cat", "sat", "on", "the", "hat"]) == (1, 0, 0)
    assert edit_ops(list("a b"), list("ab")) == (0, 1, 0)  # a space is a character like any other
