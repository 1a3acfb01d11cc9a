"""Cutting a reply being written into the parts spoken one by one: at sentence ends, short
sentences joined, long runs cut at a space, the rest spoken at the end."""

from __future__ import annotations

from chat.voice.ai.speaker import MAX_PART_CHARS, MIN_PART_CHARS, cut


def test_a_part_ends_at_a_sentence_end_once_it_is_long_enough() -> None:
    first = "We open at nine on weekdays, as a rule. "
    assert len(first) >= MIN_PART_CHARS
    assert cut(first + "On Sund") == (["We open at nine on weekdays, as a rule."], "On Sund")
    # Without the space after it, the sentence may go on ("9.30"): not yet a part.
    assert cut("We open at nine on weekdays, and at 9.30") == ([], "We open at nine on weekdays, and at 9.30")


def test_short_sentences_join_the_next_and_the_rest_is_spoken_at_the_end() -> None:
    text = "Sure. Yes! I can do that for you today, no problem at all. And then"
    assert cut(text) == (["Sure. Yes! I can do that for you today, no problem at all."], "And then")
    assert cut("Sure.", final=True) == (["Sure."], "")
    assert cut("   ", final=True) == ([], "")


def test_newlines_and_closing_quotes_end_sentences_too() -> None:
    text = 'She said "we will be there at noon on Friday." Then\nwhat to bring, in a list:\nTwo'
    parts, rest = cut(text)
    assert parts == ['She said "we will be there at noon on Friday."'], parts
    assert rest == "Then\nwhat to bring, in a list:\nTwo"
    assert cut(rest + " tents, four sleeping bags\nA stove") == (
        ["Then\nwhat to bring, in a list:\nTwo tents, four sleeping bags"],
        "A stove",
    )


def test_a_long_run_without_a_sentence_end_is_cut_at_a_space() -> None:
    words = "word " * 200
    parts, rest = cut(words)
    assert parts and all(len(part) <= MAX_PART_CHARS for part in parts)
    assert " ".join([*parts, rest.strip()]).split() == words.split()
    unbroken = "x" * (MAX_PART_CHARS * 2 + 5)
    parts, rest = cut(unbroken)
    assert [len(part) for part in parts] == [MAX_PART_CHARS, MAX_PART_CHARS] and rest == "x" * 5
