"""Toy speaker (text + style -> audio codes) and listener (toy ASR + style captioner).

A spoken word is two audio codes: its content code (= its text id) followed by a
prosody code of the speaking style. The words never depend on the style; the prosody
never depends on the words. The speaker is noisy, like a real TTS: each prosody code is,
with probability `noise`, drawn from a random style instead of the intended one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from paras2s_jax.toyworld.world import (
    NEUTRAL_VOICE,
    PROSODY_BASE,
    PROSODY_PER_STYLE,
    STYLES,
    WORDS,
    encode_words,
)

UNCLEAR = "unclear"  # the captioner's answer when no style has a majority


def prosody_codes(style: str) -> range:
    """The prosody codes owned by `style`."""
    if style not in STYLES:
        raise KeyError(f"unknown toy style {style!r}; known: {', '.join(STYLES)}")
    start = PROSODY_BASE + STYLES.index(style) * PROSODY_PER_STYLE
    return range(start, start + PROSODY_PER_STYLE)


def speak(
    words: tuple[str, ...] | list[str], style: str, rng: np.random.Generator, noise: float = 0.1
) -> list[int]:
    """Audio codes of `words` said in `style`: [content, prosody] per word."""
    own = prosody_codes(style)
    codes: list[int] = []
    for word_id in encode_words(words):
        if rng.random() < noise:
            pros = int(rng.choice(prosody_codes(STYLES[rng.integers(len(STYLES))])))
        else:
            pros = int(rng.choice(own))
        codes += [word_id, pros]
    return codes


def transcribe(codes: list[int]) -> tuple[str, ...]:
    """Toy ASR: the words whose content codes appear, in order (prosody is ignored)."""
    return tuple(WORDS[c] if c < len(WORDS) else "<unk>" for c in codes if c < PROSODY_BASE)


def caption(codes: list[int]) -> str:
    """Toy style captioner: the style of most prosody codes, if a strict majority.

    Speech with no prosody codes at all reads as neutral; a mixture without a majority
    reads as `UNCLEAR`.
    """
    styles = [STYLES[(c - PROSODY_BASE) // PROSODY_PER_STYLE]
              for c in codes if PROSODY_BASE <= c < PROSODY_BASE + len(STYLES) * PROSODY_PER_STYLE]
    if not styles:
        return NEUTRAL_VOICE
    style, count = Counter(styles).most_common(1)[0]
    return style if 2 * count > len(styles) else UNCLEAR
