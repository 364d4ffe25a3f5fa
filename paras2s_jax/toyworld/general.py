"""General-ability requests: the toy analogue of VoiceBench (knowledge QA, instructions).

Their right reply depends only on the words, never on how they are said, so RL for
paralinguistic fit has nothing to gain on them; they are in the SFT data and never in
the RL prompts. A drop in their score after RL is forgetting, which the KL penalty to
the SFT model is meant to prevent (the paper: beta = 0 loses VoiceBench points).

- "sound": "what does the <animal> say" -> "the <animal> says <sound>" (recall);
- "count": "count from <n>" -> "<n> <n+1> <n+2>" (follow an instruction).

The toy judge scores the reply speech's transcript: 5 the right answer, 3 the topic
word without the right answer, 1 anything else (voice is not judged).
"""

from __future__ import annotations

import dataclasses

from paras2s_jax.toyworld.judge import Judgement
from paras2s_jax.toyworld.speech import caption, transcribe
from paras2s_jax.toyworld.world import ANIMAL_SOUNDS, NUMBERS

KINDS = ("sound", "count")
COUNT_STARTS = NUMBERS[:-2]  # the reply needs two more numbers


@dataclasses.dataclass(frozen=True)
class Request:
    """One general-ability request, said in some input style (irrelevant to the answer)."""

    kind: str  # "sound" or "count"
    topic: str  # the animal, or the number to count from
    style: str

    dimension = "general"  # the score column these requests report in

    @property
    def words(self) -> tuple[str, ...]:
        if self.kind == "sound":
            return ("what", "does", "the", self.topic, "say")
        return ("count", "from", self.topic)

    def answer(self) -> tuple[str, ...]:
        if self.kind == "sound":
            return ("the", self.topic, "says", ANIMAL_SOUNDS[self.topic])
        i = NUMBERS.index(self.topic)
        return NUMBERS[i:i + 3]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def requests() -> list[tuple[str, str]]:
    """Every (kind, topic) general request of the world."""
    return ([("sound", a) for a in ANIMAL_SOUNDS] + [("count", n) for n in COUNT_STARTS])


def judge_general(request: Request, reply_audio: list[int]) -> Judgement:
    """Score the reply speech to a general request (content only)."""
    words, voice = transcribe(reply_audio), caption(reply_audio)
    if words == request.answer():
        return Judgement(5, words, voice, "right answer")
    if request.topic in words:
        return Judgement(3, words, voice, "on topic, wrong answer")
    return Judgement(1, words, voice, "no answer")
