"""Parsing the answers of a remote style captioner."""

from __future__ import annotations

import pytest

from bench.backends.style import StyleError, parse_style_reply


def test_json_answer_becomes_structured_fields_and_a_caption():
    c = parse_style_reply('Sure!\n```json\n{"emotion": "Sad", "speed": "slow", "volume": "soft",'
                          ' "pitch": "low", "gender": "female", "age": "adult",'
                          ' "description": "A quiet, tired voice."}\n```')
    assert (c.emotion, c.speed, c.volume, c.pitch, c.gender, c.age) == (
        "sad", "slow", "soft", "low", "female", "adult")
    assert c.caption.startswith("Emotion: sad. Speed: slow.") and "A quiet, tired voice." in \
        c.caption


def test_free_text_answer_is_kept_as_the_caption():
    c = parse_style_reply("The speaker sounds cheerful and speaks quickly. {not json}")
    assert c.caption == "The speaker sounds cheerful and speaks quickly. {not json}"
    assert c.emotion is None and c.speed is None


def test_empty_answer_is_an_error():
    with pytest.raises(StyleError, match="empty"):
        parse_style_reply("  \n")
