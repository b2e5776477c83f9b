import re

import pytest

from llmtts.data.corpus import load_sentences
from llmtts.errors import UserError
from llmtts.text.normalize import get_normalizer, normalize_text, register_normalizer
from llmtts.text.numbers import spell_int, spell_ordinal, spell_year

CASES = [
    ("Dr. Smith paid $3.50 on May 1st, 1999.",
     "doctor smith paid three dollars fifty cents on may first, nineteen ninety-nine."),
    ("It costs $1,234,567.", "it costs one million two hundred thirty-four thousand five hundred sixty-seven dollars."),
    ("About 45% agreed; 7.5% did not.", "about forty-five percent agreed; seven point five percent did not."),
    ("$0.99 or $1.01 or £2.5m or €5", "ninety-nine cents or one dollar one cent or two point five million pounds or five euros"),
    ("In the 1990s and the '80s.", "in the nineteen nineties and the eighties."),
    ("2007, 2024, 1905, 1900.", "two thousand seven, twenty twenty-four, nineteen oh five, nineteen hundred."),
    ("Meet at 10:05 a.m. Then 7:00 and 13:45.", "meet at ten oh five a m. then seven o'clock and thirteen forty-five."),
    ("St. Louis is on Main St. in town.", "saint louis is on main street in town."),
    ("Mr. and Mrs. Jones live at No. 42, Elm Dr.", "mister and misses jones live at number forty-two, elm drive."),
    ("Prof. Lee, Capt. Hook, Gen. Lee, Lt. Dan, Sgt. Pepper and Mt. Fuji.",
     "professor lee, captain hook, general lee, lieutenant dan, sergeant pepper and mount fuji."),
    ("Smith Jr. went to Acme Inc. Then he left.", "smith junior went to acme incorporated. then he left."),
    ("the 21st, 102nd, 13th and 3rd", "the twenty-first, one hundred second, thirteenth and third"),
    ("Café “naïve” — résumé…", 'cafe "naive" - resume...'),
    ("B52 & 4x4 + #1 @ home", "b five two and four x four plus number one at home"),
    ("It was -5 degrees, pages 10-20 (3.14).", "it was minus five degrees, pages ten - twenty (three point one four)."),
    ("  lots   of\tspace\n here ", "lots of space here"),
    ("Agent 007 lives at zip 02134.", "agent zero zero seven lives at zip zero two one three four."),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_english_cases(text, expected):
    assert normalize_text(text) == expected


def test_lowercase_flag_keeps_case():
    assert normalize_text("Dr. Smith met Mr. Jones.", lowercase=False) == "doctor Smith met mister Jones."


@pytest.mark.parametrize("n,words", [(0, "zero"), (15, "fifteen"), (40, "forty"), (101, "one hundred one"),
                                     (1_000_001, "one million one"), (-3, "minus three")])
def test_spell_int(n, words):
    assert spell_int(n) == words


def test_ordinals_and_years():
    assert [spell_ordinal(n) for n in (1, 2, 3, 5, 12, 20, 99, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "ninety-ninth", "one hundredth"]
    assert spell_year(1066) == "ten sixty-six"
    assert spell_year(2000) == "two thousand"


def test_every_sentence_normalises_to_the_closed_alphabet():
    sentences = load_sentences()
    assert len(set(sentences)) >= 500
    for s in sentences:
        out = normalize_text(s)
        assert re.fullmatch(r"[a-z .,!?;:'\"()-]+", out), (s, out)
        assert normalize_text(out) == out  # idempotent: already-normalised text is left alone


def test_registry_per_language():
    assert get_normalizer("en-US") is get_normalizer("en_GB") is get_normalizer("en")
    with pytest.raises(UserError, match="no text normaliser for language 'xx'"):
        get_normalizer("xx")
    register_normalizer("xx", lambda text, lowercase=True: text.upper())
    try:
        assert normalize_text("abc", lang="xx") == "ABC"
    finally:
        from llmtts.text import normalize as mod
        mod._REGISTRY.pop("xx")
