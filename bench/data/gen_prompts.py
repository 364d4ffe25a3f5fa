"""Prompts of query generation and of the three filters, and strict parsing of the answers.

The filters are data (`FILTERS`): a name, what the checker is shown, and the question.
Each is its own LLM call answering `{"verdict": "pass"|"fail", "reason": "..."}`, so a
drop can always be explained. The neutrality check is deliberately *not* shown the
scenario or the style descriptions: it must judge the words alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from bench.data.dimensions import DimensionSpec
from bench.data.drafts import Draft, DraftStyle


class ParseError(ValueError):
    """An LLM answer that does not have the asked-for JSON shape."""


GENERATOR_SYSTEM = (
    "You write test items for a benchmark of spoken dialogue systems that must hear HOW "
    "something is said, not only what is said. Each item is one short sentence a user "
    "says to a voice assistant. The sentence must be NEUTRAL: its words alone must not "
    "reveal the speaking style. It is said in two contrastive styles, and the style "
    "changes what a good reply is. Answer with one JSON object only."
)

GENERATOR_USER = """Dimension: {name} - {definition}
Why it matters: {guidance}
Style pairs to use (you may use others of this dimension): {pairs}

Write {count} new, varied items (batch {batch}). JSON layout:
{{"queries": [{{
  "text": "the neutral sentence the user says",
  "scenario": "why the style changes the right reply",
  "styles": [
    {{"name": "style word", "description": "how it is spoken, as voice-actor instructions",
      "reference": "what a fitting reply does for this style",
      "reply": "an example fitting reply, one or two sentences",
      "reply_style": "how that reply should sound"}},
    {{... the contrasting style ...}}],
  "neutral_reply": "a reply that ignores the style"
}}]}}"""


@dataclass(frozen=True)
class FilterSpec:
    name: str
    question: str  # str.format template over the fields of `filter_fields`


FILTERS: tuple[FilterSpec, ...] = (
    FilterSpec("neutrality", (
        "Sentence: \"{text}\"\nIt could be said in either of two ways: {style_a} or "
        "{style_b} ({dimension}: {definition}).\nFrom the WORDS ALONE, with no voice, can a "
        "reader tell which of the two it is? Pass if the words are neutral (either is "
        "equally likely); fail if the words give it away.")),
    FilterSpec("plausibility", (
        "Sentence: \"{text}\"\nStyle A ({style_a}): {desc_a}\nStyle B ({style_b}): {desc_b}\n"
        "Is EACH style a natural, realistic way for a person to say this exact sentence? "
        "Pass only if both are plausible.")),
    FilterSpec("relevance", (
        "Sentence: \"{text}\"\nScenario: {scenario}\nSaid {style_a}, a good reply: {ref_a}\n"
        "Said {style_b}, a good reply: {ref_b}\nDoes the speaking style ({dimension}) really "
        "change what a good reply is, so that one reply cannot fit both? Pass if yes.")),
)

FILTER_SYSTEM = (
    "You check test items of a paralinguistic speech benchmark. Answer with one JSON "
    'object only: {"verdict": "pass" or "fail", "reason": "one short sentence"}.'
)


def generation_messages(spec: DimensionSpec, count: int, batch: int) -> list[dict]:
    pairs = "; ".join(f"{a} vs {b}" for a, b in spec.style_pairs)
    user = GENERATOR_USER.format(name=spec.name, definition=spec.definition,
                                 guidance=spec.guidance or "-", pairs=pairs, count=count,
                                 batch=batch)
    return [{"role": "system", "content": GENERATOR_SYSTEM}, {"role": "user", "content": user}]


def filter_fields(d: Draft, spec: DimensionSpec) -> dict[str, str]:
    a, b = d.styles
    return {"text": d.text, "dimension": d.dimension, "definition": spec.definition,
            "scenario": d.scenario, "style_a": a.name, "style_b": b.name,
            "desc_a": a.description, "desc_b": b.description,
            "ref_a": a.reference or a.reply, "ref_b": b.reference or b.reply}


def filter_messages(f: FilterSpec, d: Draft, spec: DimensionSpec) -> list[dict]:
    return [{"role": "system", "content": FILTER_SYSTEM},
            {"role": "user", "content": f"[{f.name} check]\n" + f.question.format(
                **filter_fields(d, spec))}]


def _json_object(text: str) -> dict:
    match = re.search(r"\{.*\}", text or "", re.S)  # tolerate ```json fences and prose
    if not match:
        raise ParseError("no JSON object in the answer")
    try:
        obj = json.loads(match.group(0))
    except json.JSONDecodeError as err:
        raise ParseError(f"invalid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise ParseError("the JSON is not an object")
    return obj


def parse_verdict(text: str) -> tuple[bool, str]:
    """(passed, reason) from a filter answer; ParseError when it is not one."""
    obj = _json_object(text)
    verdict = str(obj.get("verdict", "")).strip().lower()
    if verdict not in ("pass", "fail"):
        raise ParseError(f"'verdict' must be pass or fail, got {obj.get('verdict')!r}")
    reason = str(obj.get("reason", "")).strip()
    if not reason:
        raise ParseError("'reason' is missing or empty")
    return verdict == "pass", reason


def parse_candidates(text: str, dimension: str) -> list[tuple[dict, str]]:
    """Candidate items of a generation answer as (raw fields, problem or '').

    Malformed items are returned with their problem, so they are dropped with a reason
    instead of failing the whole batch.
    """
    obj = _json_object(text)
    items = obj.get("queries")
    if not isinstance(items, list):
        raise ParseError("'queries' must be a list")
    out = []
    for i, item in enumerate(items):
        try:
            out.append((_candidate(item, dimension), ""))
        except ParseError as err:
            out.append(({"dimension": dimension, "raw": item}, f"queries[{i}]: {err}"))
    return out


def _candidate(item: object, dimension: str) -> dict:
    if not isinstance(item, dict):
        raise ParseError("expected an object")
    for key in ("text", "scenario"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ParseError(f"field {key!r} missing or empty")
    styles = item.get("styles")
    if not isinstance(styles, list) or len(styles) != 2:
        raise ParseError("field 'styles' must list exactly 2 styles")
    out_styles = []
    for k, s in enumerate(styles):
        if not isinstance(s, dict) or not str(s.get("name", "")).strip():
            raise ParseError(f"styles[{k}].name missing")
        name = re.sub(r"[^\w\-]+", "_", str(s["name"]).strip().lower()).strip("_")
        out_styles.append(DraftStyle(
            name=name, description=str(s.get("description") or name).strip(),
            reference=str(s.get("reference") or "").strip(),
            reply=str(s.get("reply") or "").strip(),
            reply_style=str(s.get("reply_style") or "").strip()))
    if out_styles[0].name == out_styles[1].name:
        raise ParseError("both styles have the same name")
    return {"dimension": dimension, "text": item["text"].strip(),
            "scenario": item["scenario"].strip(), "styles": tuple(out_styles),
            "neutral_reply": str(item.get("neutral_reply") or "").strip()}
