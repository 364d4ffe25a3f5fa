"""The LLM judge of VoiceBench's open-ended and reference-QA subsets."""

from __future__ import annotations

import re

OPEN_RUBRIC = (
    "Rate a voice assistant's reply to a spoken request, from the transcripts below, "
    "from 1 to 5: 1 irrelevant, wrong or not answering; 2 partly relevant, inaccurate or "
    "incomplete; 3 relevant and mostly right but padded or unfocused; 4 relevant, right and "
    "concise; 5 exactly the information needed, directly and efficiently.\n"
    "Request: {prompt}\nReply: {response}\nAnswer with the digit only.")
QA_RUBRIC = (
    "Question: {prompt}\nReference answer: {reference}\nCandidate answer: {response}\n"
    "Is the candidate answer correct given the question and the reference? Answer Yes or No.")
class LLMGrader:
    """The LLM judge of the open and reference QA subsets (cached like every bench call)."""

    def __init__(self, endpoint, runtime):
        self.endpoint, self.runtime = endpoint, runtime
        self.name = f"openai-grader/{endpoint.label()}"
        self._client = endpoint.client()

    def _ask(self, content: str) -> str:
        from bench.backends.remote import usage_of

        messages = [{"role": "user", "content": content}]

        def compute():
            resp = self._client.chat.completions.create(
                model=self.endpoint.model, messages=messages, temperature=0, max_tokens=8)
            return {"text": resp.choices[0].message.content or ""}, usage_of(resp)

        return self.runtime.call("judge", "openai-grader", self.endpoint.label(),
                                 {"messages": messages}, compute, remote=True)["text"]

    def rate(self, prompt: str, response: str) -> int:
        text = self._ask(OPEN_RUBRIC.format(prompt=prompt, response=response))
        m = re.search(r"[1-5]", text)
        if not m:
            raise ValueError(f"grader gave no 1-5 rating: {text[:80]!r}")
        return int(m.group(0))

    def correct(self, prompt: str, reference: str, response: str) -> bool:
        text = self._ask(QA_RUBRIC.format(prompt=prompt, reference=reference, response=response))
        return text.strip().lower().startswith("yes")
