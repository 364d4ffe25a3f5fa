"""The LLM judge of VoiceBench's open-ended and reference-QA subsets, in two set-ups.

`official` (the default) asks as VoiceBench's judge script does: gpt-4o-mini, its system
message and prompt wording, temperature 0.5, top-p 0.95, three samples per reply. An
open-ended reply scores the mean of the three ratings (each read as a number, or from
"[[n]]"); a QA reply is correct when the most common of the three answers, lower-cased, is
exactly "yes" (a three-way tie, which VoiceBench breaks arbitrarily, goes to the earliest
sample). `ours` is a terser rubric: one greedy sample, the first digit 1-5, "yes..." = correct.
Every call is cached by the whole request, so the set-ups never share answers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable

OFFICIAL_SYSTEM = "You are a helpful assistant who tries to help answer the user's question."
OFFICIAL_OPEN = """
I need your help to evaluate the performance of several models in the speech interaction scenario. The models will receive a speech input from the user, which they need to understand and respond to with a speech output.
Your task is to rate the model’s responses based on the provided user input transcription [Instruction] and the model’s output transcription [Response].

Please evaluate the response on a scale of 1 to 5:
1 point: The response is largely irrelevant, incorrect, or fails to address the user’s query. It may be off-topic or provide incorrect information.
2 points: The response is somewhat relevant but lacks accuracy or completeness. It may only partially answer the user’s question or include extraneous information.
3 points: The response is relevant and mostly accurate, but it may lack conciseness or include unnecessary details that don’t contribute to the main point.
4 points: The response is relevant, accurate, and concise, providing a clear answer to the user’s question without unnecessary elaboration.
5 points: The response is exceptionally relevant, accurate, and to the point. It directly addresses the user’s query in a highly effective and efficient manner, providing exactly the information needed.

Below are the transcription of user’s instruction and models’ response:
### [Instruction]: {prompt}
### [Response]: {response}

After evaluating, please output the score only without anything else.
You don’t need to provide any explanations.
"""  # noqa: E501  (the judge's wording, byte for byte)
OFFICIAL_QA = """### Question
{prompt}

### Reference answer
{reference}

### Candidate answer
{response}

Is the candidate answer correct based on the question and reference answer? 
Please only output a single "Yes" or "No". Do not output anything else."""  # noqa: W291

OURS_OPEN = (
    "Rate a voice assistant's reply to a spoken request, from the transcripts below, "
    "from 1 to 5: 1 irrelevant, wrong or not answering; 2 partly relevant, inaccurate or "
    "incomplete; 3 relevant and mostly right but padded or unfocused; 4 relevant, right and "
    "concise; 5 exactly the information needed, directly and efficiently.\n"
    "Request: {prompt}\nReply: {response}\nAnswer with the digit only.")
OURS_QA = (
    "Question: {prompt}\nReference answer: {reference}\nCandidate answer: {response}\n"
    "Is the candidate answer correct given the question and the reference? Answer Yes or No.")


class GraderAnswerError(ValueError):
    """The judge's answer could not be read; the message quotes it."""


def fill(template: str, **fields: str) -> str:
    """Fill {name} fields one after another in the order given, as VoiceBench's script does."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def official_rating(sample: str) -> float:
    """One official open-ended rating: the whole answer as a number, else its "[[n]]"."""
    try:
        value = float(sample)
    except ValueError:
        m = re.search(r"\[\[(\d+)\]\]", sample)
        if m is None:
            raise GraderAnswerError(f"judge rating is neither a number nor [[n]]: "
                                    f"{sample[:80]!r}") from None
        value = float(m.group(1))
    if not math.isfinite(value):  # float() also reads "nan"/"inf"; no judge means those
        raise GraderAnswerError(f"judge rating is not finite: {sample[:80]!r}")
    return value


def official_open(samples: list[str]) -> float:
    """Mean of the samples' ratings."""
    return sum(map(official_rating, samples)) / len(samples)


def majority_yes(samples: list[str]) -> bool:
    """True when the most common lower-cased answer is exactly "yes" (ties: earliest)."""
    answers = [s.lower() for s in samples]
    counts = Counter(answers)  # insertion-ordered: most_common keeps the earliest of a tie
    return counts.most_common(1)[0][0] == "yes"


def ours_open(samples: list[str]) -> float:
    m = re.search(r"[1-5]", samples[0])
    if m is None:
        raise GraderAnswerError(f"grader gave no 1-5 rating: {samples[0][:80]!r}")
    return float(m.group(0))


def ours_qa(samples: list[str]) -> bool:
    return samples[0].strip().lower().startswith("yes")


@dataclasses.dataclass(frozen=True)
class GraderSetup:
    """How the judge is asked and how its samples become a score."""

    name: str
    default_model: str
    system: str | None
    open_template: str
    qa_template: str
    sampling: dict  # sent with every request: temperature, top_p, n, max_tokens, ...
    open_score: Callable[[list[str]], float]
    qa_correct: Callable[[list[str]], bool]


SETUPS = {
    "official": GraderSetup(
        "official", "gpt-4o-mini", OFFICIAL_SYSTEM, OFFICIAL_OPEN, OFFICIAL_QA,
        {"max_tokens": 1024, "frequency_penalty": 0, "presence_penalty": 0, "stop": None,
         "temperature": 0.5, "top_p": 0.95, "n": 3},
        official_open, majority_yes),
    "ours": GraderSetup("ours", "gpt-4o-mini", None, OURS_OPEN, OURS_QA,
                        {"temperature": 0, "max_tokens": 8, "n": 1}, ours_open, ours_qa),
}


class LLMGrader:
    """The LLM judge of the open and reference-QA subsets (cached like every bench call)."""

    def __init__(self, endpoint, runtime, setup: GraderSetup = SETUPS["official"]):
        self.endpoint, self.runtime, self.setup = endpoint, runtime, setup
        self.name = f"voicebench-grader-{setup.name}/{endpoint.label()}"
        self._client = endpoint.client()

    def samples(self, content: str) -> list[str]:
        """The judge's answers (`n` of them) to one filled prompt."""
        from bench.backends.remote import usage_of

        messages = [{"role": "user", "content": content}]
        if self.setup.system is not None:
            messages.insert(0, {"role": "system", "content": self.setup.system})
        request = {"messages": messages, **self.setup.sampling}

        def compute():
            resp = self._client.chat.completions.create(model=self.endpoint.model, **request)
            return {"texts": [(c.message.content or "").strip() for c in resp.choices]}, \
                usage_of(resp)

        expected = self.setup.sampling.get("n", 1)
        return self.runtime.call("judge", "voicebench-grader", self.endpoint.label(), request,
                                 compute, remote=True,
                                 keep=lambda v: len(v["texts"]) == expected)["texts"]

    def grade_open(self, prompt: str, response: str) -> dict:
        """{"score": 1-5 rating, "samples": the judge's answers}."""
        texts = self.samples(fill(self.setup.open_template, prompt=prompt, response=response))
        return {"score": self.setup.open_score(texts), "samples": texts}

    def grade_qa(self, prompt: str, reference: str, response: str) -> dict:
        """{"score": 1.0 correct / 0.0 not, "samples": the judge's answers}."""
        texts = self.samples(fill(self.setup.qa_template, prompt=prompt, reference=reference,
                                  response=response))
        return {"score": float(self.setup.qa_correct(texts)), "samples": texts}
