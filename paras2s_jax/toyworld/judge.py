"""The rule judge: a 1-5 score in the spirit of the ParaS2SBench rubric.

Like the benchmark's judge, it sees only what the listener extracts from the reply's
*speech* (ASR transcript and style caption) plus the scenario:

    5  right content, right voice
    4  right content, neutral voice
    3  right content in an unfitting voice, or the generic (style-blind) reply
    2  the reply meant for the other style (the style was misread)
    1  misread and said in the other style's voice (fully reversed), or unrelated
"""

from __future__ import annotations

import dataclasses

from paras2s_jax.toyworld.speech import caption, transcribe
from paras2s_jax.toyworld.world import NEUTRAL_VOICE, Scenario


@dataclasses.dataclass(frozen=True)
class Judgement:
    """A score and what the listener heard."""

    score: int
    transcript: tuple[str, ...]
    voice: str
    rationale: str


def judge(scenario: Scenario, reply_audio: list[int]) -> Judgement:
    """Score the reply speech `reply_audio` (codes) to `scenario`."""
    words, voice = transcribe(reply_audio), caption(reply_audio)

    def verdict(score: int, why: str) -> Judgement:
        return Judgement(score, words, voice, why)

    if words == scenario.reply_words():
        if voice == scenario.reply_voice():
            return verdict(5, "right content, right voice")
        if voice == NEUTRAL_VOICE:
            return verdict(4, "right content, neutral voice")
        return verdict(3, f"right content, unfitting voice ({voice})")
    if words == scenario.generic_words():
        return verdict(3, "generic reply")
    if words == scenario.reply_words(scenario.other_style):
        if voice == scenario.reply_voice(scenario.other_style) != scenario.reply_voice():
            return verdict(1, f"reversed: reply and voice for {scenario.other_style}")
        return verdict(2, f"misread style as {scenario.other_style}")
    return verdict(1, "unrelated reply")
