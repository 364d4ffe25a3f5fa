"""Judges: rate how well a spoken reply continues the user's spoken turn (1-5).

`OpenAIJudge` is the paper's judge (GPT-4.1 by default) with our own Continuation
Fitness prompt (prompts/judge.txt) or a user's template with the fields in JUDGE_FIELDS
(--judge-prompt), temperature 0 and strict parsing of "The score is N."; a malformed
answer is re-asked, then recorded as an error. `RuleJudge` is a transparent offline
heuristic over the structured fields; its outputs say so and are not comparable with
LLM-judge numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.backends.cache import code_digest, digest
from bench.backends.prompt_template import (
    PromptTemplate,
    TemplateError,
    bundled_template,
    load_template,
)
from bench.backends.remote import Endpoint, usage_of
from bench.backends.runtime import Runtime
from bench.backends.style import StyleCaption

CAPTION_ATTRIBUTES = {"emotion": "emotion or tone", "speed": "speed", "volume": "volume",
                      "pitch": "pitch", "gender": "apparent gender", "age": "apparent age"}


def _caption_fields(side: str) -> dict[str, str]:
    return {f"{side}_{k}": f"the {side}'s {v} as captioned ('unknown' when not given)"
            for k, v in CAPTION_ATTRIBUTES.items()}


# What a --judge-prompt template can use: field -> what it holds (listed in --help).
JUDGE_FIELDS = {
    "scenario": "why the user's speaking style matters for this query (queries.jsonl)",
    "reference": "what a fitting reply does for this style ('(none given)' when empty)",
    "expected_reply_style": "how a fitting reply sounds, e.g. 'gentle, slow, soft'",
    "conversation_history": "earlier turns; ParaS2SBench queries are single-turn: '(none)'",
    "user_transcript": "ASR of the user's speech ('(nothing recognised)' when empty)",
    "user_caption": "the style captioner's full description of the user's speech",
    **_caption_fields("user"),
    "reply_transcript": "ASR of the reply's speech ('(nothing recognised)' when empty)",
    "reply_caption": "the style captioner's full description of the reply's speech",
    **_caption_fields("reply"),
}
TEMPERATURE = 0
MAX_TOKENS = 300
BACKEND = "openai-judge"  # the judge's calls in the cache and the ledger

REASK = ("Your answer did not end with the required sentence. Reply again: one or two short "
         "sentences of reasoning, then exactly 'The score is N.' with N an integer from 1 to 5.")

# Parsing: tolerant of Markdown emphasis (*, _) and whitespace, strict about the sentence:
# exactly one "The score is N." with N in 1-5, and nothing after it.
_EMPHASIS_RE = re.compile(r"[*_]+")
_PHRASE_RE = re.compile(r"The score is")
_SCORE_RE = re.compile(r"The score is ([1-5])\.$")


def judge_prompt(path: str | Path | None = None) -> PromptTemplate:
    """The judge's prompt template: the file at `path` (--judge-prompt), else the bundled
    Continuation Fitness prompt (prompts/judge.txt: framing, rubric and output format as
    the system message, the item's fields as the user message)."""
    flag = "--judge-prompt"
    prompt = (load_template(path, JUDGE_FIELDS, flag) if path is not None
              else bundled_template("judge.txt", JUDGE_FIELDS, flag))
    if not any(_PHRASE_RE.search(text or "") for text in (prompt.system, prompt.user)):
        # The parser stays strict: a prompt that never asks for the sentence would only
        # buy unparsable answers.
        raise TemplateError(f"{flag} {prompt.source}: the prompt never asks for the closing "
                            "sentence 'The score is N.' (N from 1 to 5), the only answer the "
                            "judge's parser accepts; add that instruction")
    return prompt


class JudgeFormatError(RuntimeError):
    """The judge never produced a parsable score."""


@dataclass(frozen=True)
class JudgeInput:
    scenario: str
    reference: str  # what a fitting reply does for this item's style
    contrast_reference: str  # the same for the other style of the pair (rule judge)
    reply_style: str  # how a fitting reply sounds
    user_transcript: str
    user_caption: StyleCaption
    reply_transcript: str
    reply_caption: StyleCaption


@dataclass(frozen=True)
class Verdict:
    score: int
    reason: str
    heuristic: bool
    version: str = ""  # the model snapshot that answered, as the server reports it


class Judge(Protocol):
    name: str
    heuristic: bool

    def identity(self) -> dict[str, str]:
        """What shapes the answers (model, prompts, rules), for the run fingerprint."""
        ...

    def judge(self, inp: JudgeInput) -> Verdict: ...


def parse_score(text: str) -> tuple[int, str] | None:
    """(score, reason) when `text` ends with exactly one 'The score is N.'; else None.

    Markdown bold/italics and runs of whitespace are ignored ("**The score is 4.**" is 4);
    "The score is 4/5.", "4.5", "6", a missing period, text after the sentence or a second
    "The score is" are not scores.
    """
    plain = " ".join(_EMPHASIS_RE.sub("", text or "").split())
    if len(_PHRASE_RE.findall(plain)) != 1:
        return None
    m = _SCORE_RE.search(plain)
    if not m:
        return None
    return int(m.group(1)), plain[: m.start()].strip()


def answer_of(resp) -> tuple[dict, dict]:
    """(cached value, usage) of a chat completion, online or from a batch's output."""
    # "gpt-4.1" is an alias; the served snapshot (e.g. a dated one) is what answered.
    served = str(getattr(resp, "model", "") or "")
    return {"text": resp.choices[0].message.content or "", "served": served}, usage_of(resp)


def usable(value: dict) -> bool:
    """Whether a cached judge answer parses (only those are cached)."""
    return parse_score(value["text"]) is not None


PARSER_VERSION = code_digest(parse_score) + "-" + digest(
    [_EMPHASIS_RE.pattern, _PHRASE_RE.pattern, _SCORE_RE.pattern])


class OpenAIJudge:
    """Chat-completions judge; every request is cached, re-asks included."""

    heuristic = False

    def __init__(self, endpoint: Endpoint, runtime: Runtime, max_reasks: int = 1,
                 prompt: PromptTemplate | None = None):
        self.endpoint, self.runtime, self.max_reasks = endpoint, runtime, max_reasks
        self.prompt = prompt or judge_prompt()
        self.name = f"openai-judge/{endpoint.label()}"
        self._client = endpoint.client()

    def request(self, messages: list[dict]) -> tuple[dict, dict]:
        """(cache inputs, chat.completions body) of one ask: what the online call sends and
        what a batch request line carries (bench.backends.batch), under the same cache key."""
        body = {"model": self.endpoint.model, "messages": messages, "temperature": TEMPERATURE,
                "max_tokens": MAX_TOKENS}
        return {"messages": messages, "temperature": TEMPERATURE}, body

    def first_messages(self, inp: JudgeInput) -> list[dict]:
        """The messages of the first ask about `inp` (re-asks append to them)."""
        system, user = self.prompt.render(judge_fields(inp))
        return ([{"role": "system", "content": system}] if system is not None else []) \
            + [{"role": "user", "content": user}]

    def _ask(self, messages: list[dict]) -> tuple[str, str]:
        inputs, body = self.request(messages)

        def compute():
            return answer_of(self._client.chat.completions.create(**body))

        # A malformed answer is not cached: --retry-failed must ask again, not replay it.
        out = self.runtime.call("judge", BACKEND, self.endpoint.label(), inputs, compute,
                                remote=True, keep=usable)
        return out["text"], out.get("served", "")

    def identity(self) -> dict[str, str]:
        return {"model": self.endpoint.label(), "prompt_sha256": self.prompt.sha256,
                "reask": digest(REASK), "temperature": str(TEMPERATURE),
                "max_tokens": str(MAX_TOKENS), "reasks": str(self.max_reasks),
                "parser": PARSER_VERSION}

    def judge(self, inp: JudgeInput) -> Verdict:
        messages = self.first_messages(inp)
        answers = []
        for _ in range(self.max_reasks + 1):
            text, served = self._ask(messages)
            answers.append(text)
            parsed = parse_score(text)
            if parsed:
                return Verdict(parsed[0], parsed[1], heuristic=False, version=served)
            messages = messages + [{"role": "assistant", "content": text},
                                   {"role": "user", "content": REASK}]
        shown = " | ".join(repr(a[:120]) for a in answers)
        raise JudgeFormatError(f"judge gave no valid 'The score is N.' in {len(answers)} "
                               f"answers: {shown}")


def judge_fields(inp: JudgeInput) -> dict[str, str]:
    """Every JUDGE_FIELDS value for one item, as the judge's prompt shows it."""
    values = {
        "scenario": inp.scenario, "reference": inp.reference or "(none given)",
        "expected_reply_style": inp.reply_style or "(none given)",
        "conversation_history": "(none)",
        "user_transcript": inp.user_transcript or "(nothing recognised)",
        "user_caption": inp.user_caption.caption,
        "reply_transcript": inp.reply_transcript or "(nothing recognised)",
        "reply_caption": inp.reply_caption.caption,
    }
    for side, cap in (("user", inp.user_caption), ("reply", inp.reply_caption)):
        values.update({f"{side}_{k}": getattr(cap, k) or "unknown" for k in CAPTION_ATTRIBUTES})
    return values


_STOP = set("""a an the and or but if so to of in on at for with from by is are was were be
been am i you he she it we they me my your our their this that these those there here do does
did not no yes just very really what how oh well can will would could should have has had
""".split())

# Words in a reference reply style -> the caption field and value that show it.
_VOICE_CUES = {
    "slow": ("speed", "slow"), "slowly": ("speed", "slow"), "fast": ("speed", "fast"),
    "quick": ("speed", "fast"), "energetic": ("speed", "fast"), "soft": ("volume", "soft"),
    "quiet": ("volume", "soft"), "gentle": ("volume", "soft"), "loud": ("volume", "loud"),
    "excited": ("pitch", "high"), "cheerful": ("pitch", "high"), "bright": ("pitch", "high"),
    "low": ("pitch", "low"), "calm": ("speed", "normal"), "even": ("volume", "normal"),
}

# Caption values that say a cue was not measured (the offline captioner's "unknown", an
# audio model's "unclear", a field it left out): neither a match nor a mismatch.
_UNMEASURED = (None, "unknown", "unclear")


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z']+", (text or "").lower())
    # Crude stemming so "congratulations" meets "congratulate" half-way, on purpose cheap.
    return {w.rstrip("s")[:7] for w in words if w not in _STOP and len(w) > 2}


class RuleJudge:
    """HEURISTIC offline judge: keyword overlap with the item's reference vs the contrasting
    style's reference (content), and expected voice cues vs the reply caption (voice)."""

    name = "rule-judge/heuristic-v1"
    heuristic = True

    def identity(self) -> dict[str, str]:
        return {"rules": code_digest(RuleJudge.judge, _content_words),
                "tables": digest([_VOICE_CUES, sorted(_STOP), _UNMEASURED])}

    def judge(self, inp: JudgeInput) -> Verdict:
        reply = _content_words(inp.reply_transcript)
        if not reply:
            return Verdict(1, "[HEURISTIC rule judge, not an LLM] no words recognised in the "
                              "reply.", heuristic=True, version=self.name)
        own_ref, other_ref = _content_words(inp.reference), _content_words(inp.contrast_reference)
        own = len(reply & own_ref) / max(len(own_ref), 1)
        other = len(reply & other_ref) / max(len(other_ref), 1)
        cues = [_VOICE_CUES[w] for w in re.findall(r"[a-z]+", inp.reply_style.lower())
                if w in _VOICE_CUES]
        # Only cues the captioner could measure count; with none, the voice earns no credit.
        heard = [(f, v) for f, v in cues if getattr(inp.reply_caption, f) not in _UNMEASURED]
        hits = sum(getattr(inp.reply_caption, f) == v for f, v in heard)
        voice_ok = bool(heard) and hits / len(heard) >= 0.5
        if other > own:
            score, why = (2 if voice_ok else 1), "content fits the *other* style better"
        elif own >= 0.25:
            score, why = (5 if voice_ok else 4), "content fits this style"
        elif own > 0:
            score, why = 3, "content partly fits this style"
        else:
            score, why = (3 if voice_ok else 2), "content shows no sign of this style"
        unheard = f" ({len(cues) - len(heard)} not measurable)" if len(heard) < len(cues) else ""
        reason = (f"[HEURISTIC rule judge, not an LLM] {why} (reference overlap {own:.2f} vs "
                  f"contrast {other:.2f}); voice cues matched {hits}/{len(heard)}{unheard}.")
        return Verdict(score, reason, heuristic=True, version=self.name)
