"""Scripted LLM answers for bench.generate tests, served by the fake OpenAI server.

Per dimension the generator's answer holds good items plus, for emotion, one item that
fails each filter, a near-copy of a good item, and one malformed item. The filter
answers look the sentence up in FAILS.
"""

from __future__ import annotations

import json
import re

from tests.bench.fake_openai import FakeOpenAI


def _item(text: str, a: str, b: str) -> dict:
    return {"text": text, "scenario": f"said {a} vs {b} the right reply differs",
            "styles": [{"name": a, "description": f"{a} voice", "reference": f"answer the {a}",
                        "reply": f"A reply for {a}.", "reply_style": "warm"},
                       {"name": b, "description": f"{b} voice", "reference": f"answer the {b}",
                        "reply": f"A reply for {b}.", "reply_style": "calm"}],
            "neutral_reply": "Okay."}


FAILS = {
    "I am thrilled, I won the lottery!": "neutrality",
    "I just got my test results back.": "",
    "Whisper-shout the weather forecast.": "plausibility",
    "The bus comes at nine.": "relevance",
}
ITEMS = {
    "emotion": [_item("I just bumped into my ex.", "excited", "sad"),
                _item("I am thrilled, I won the lottery!", "happy", "sad"),
                _item("i just bumped into my EX!!", "excited", "sad"),  # duplicate
                _item("I just got my test results back.", "happy", "sad"),
                _item("Whisper-shout the weather forecast.", "happy", "angry"),
                _item("The bus comes at nine.", "calm", "anxious"),
                {"text": "broken item without styles", "scenario": "x"}],
    "sarcasm": [_item("Oh great, another meeting.", "sincere", "sarcastic"),
                _item("Nice job on the report.", "sincere", "sarcastic")],
    "age": [_item("Where can I buy beer?", "child", "adult")],
    "gender": [_item("What should I wear tonight?", "female", "male")],
    "pauses": [_item("I think I want to quit my job.", "fluent", "hesitant")],
}
EXPECTED_KEPT = {"emotion-b0-0", "emotion-b0-3", "sarcasm-b0-0", "sarcasm-b0-1", "age-b0-0",
                 "gender-b0-0"}
EXPECTED_DROPPED = {"emotion-b0-1": "neutrality", "emotion-b0-2": "duplicate",
                    "emotion-b0-4": "plausibility", "emotion-b0-5": "relevance"}


def _user(body: dict) -> str:
    return body["messages"][-1]["content"]


def _generate(body: dict) -> str:
    dim = re.search(r"Dimension: (\w+)", _user(body)).group(1)
    return "```json\n" + json.dumps({"queries": ITEMS.get(dim, [])}) + "\n```"


def _verdict(name: str):
    def answer(body: dict) -> str:
        sentence = re.search(r'Sentence: "(.*?)"', _user(body)).group(1)
        failed = FAILS.get(sentence) == name
        return json.dumps({"verdict": "fail" if failed else "pass",
                           "reason": f"{name} {'fails' if failed else 'holds'} for {sentence!r}"})
    return answer


def script(server: FakeOpenAI) -> FakeOpenAI:
    """Install the generator and the three filter rules on `server`."""
    server.add_chat_rule("generate", r"Dimension: ", _generate)
    for name in ("neutrality", "plausibility", "relevance"):
        server.add_chat_rule(name, rf"\[{name} check\]", _verdict(name))
    return server
