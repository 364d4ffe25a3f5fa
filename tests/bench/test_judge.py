"""Strict score parsing and the heuristic rule judge."""

from __future__ import annotations

import pytest

from bench.backends.judge import JudgeInput, RuleJudge, parse_score
from bench.backends.style import StyleCaption


@pytest.mark.parametrize("text, expected", [
    # the sentence itself
    ("Warm and fitting. The score is 5.", (5, "Warm and fitting.")),
    ("The score is 1.", (1, "")),
    # tolerant: whitespace and Markdown emphasis around or inside the sentence
    ("Reason.\nThe score is 3.  \n", (3, "Reason.")),
    ("Reason.\n\n  The   score is\t2.", (2, "Reason.")),
    ("Fits. **The score is 4.**", (4, "Fits.")),
    ("Fits. __The score is 4.__", (4, "Fits.")),
    ("Fits. *The score is 4.*", (4, "Fits.")),
    ("Fits. _The score is 4._", (4, "Fits.")),
    ("Fits. The score is **4**.", (4, "Fits.")),
    ("**Fits** the *cues*.\n***The score is 5.***\n", (5, "Fits the cues.")),
    # strict: only an integer 1-5, a period, nothing after, exactly one such sentence
    ("The score is 6.", None),
    ("The score is 0.", None),
    ("The score is 4", None),
    ("The score is 4.5.", None),
    ("The score is 4/5.", None),
    ("The score is: 4.", None),
    ("The score is four.", None),
    ("The score is 4. Actually no.", None),
    ("**The score is 4.** But maybe 3.", None),
    ("The score is 2. The score is 4.", None),
    ("the score is 4.", None),
    ("Score: 4/5", None),
    ("", None),
    (None, None),
])
def test_parse_score_is_strict(text, expected):
    assert parse_score(text) == expected


def _inp(reply: str, reply_caption: StyleCaption, reply_style: str = "gentle, slow, soft"):
    return JudgeInput(
        scenario="s", reference="Comfort them: say sorry, offer to talk.",
        contrast_reference="Celebrate: congratulations, great news!",
        reply_style=reply_style, user_transcript="i got my results",
        user_caption=StyleCaption("sad"), reply_transcript=reply, reply_caption=reply_caption)


def test_rule_judge_levels_and_label():
    soft_slow = StyleCaption("c", speed="slow", volume="soft")
    loud_fast = StyleCaption("c", speed="fast", volume="loud")
    j = RuleJudge()
    best = j.judge(_inp("I am so sorry. Do you want to talk?", soft_slow))
    content_only = j.judge(_inp("I am so sorry. Do you want to talk?", loud_fast))
    reversed_ = j.judge(_inp("Congratulations, great news!", loud_fast))
    empty = j.judge(_inp("", soft_slow))
    assert (best.score, content_only.score, reversed_.score, empty.score) == (5, 4, 1, 1)
    for v in (best, content_only, reversed_, empty):
        assert v.heuristic and v.reason.startswith("[HEURISTIC rule judge, not an LLM]")
    assert j.heuristic and "heuristic" in j.name


def test_rule_judge_leaves_unmeasured_voice_cues_out():
    j = RuleJudge()
    sorry = "I am so sorry. Do you want to talk?"
    # Cues gentle (volume soft), slow, soft: speed unknown -> both volume cues heard, both match.
    part = j.judge(_inp(sorry, StyleCaption("c", speed="unknown", volume="soft")))
    assert part.score == 5 and "voice cues matched 2/2 (1 not measurable)" in part.reason
    # Nothing measurable: the voice earns no credit, the content still does.
    none = j.judge(_inp(sorry, StyleCaption("c", speed="unknown", volume=None)))
    assert none.score == 4 and "matched 0/0 (3 not measurable)" in none.reason
    # A measured mismatch still counts against the reply.
    wrong = j.judge(_inp(sorry, StyleCaption("c", speed="unknown", volume="loud")))
    assert wrong.score == 4 and "matched 0/2 (1 not measurable)" in wrong.reason
