"""IFEval's 25 instruction checks, as VoiceBench's ifeval evaluator applies them.

Each rule takes the reply and the instruction's arguments (already validated, see
`Rule.params`) and says whether the reply follows it. The rules are the published
IFEval ones, quirks included, because scores must match the leaderboard's:
keywords are searched as regular expressions and as substrings ("cat" is found in
"category"; forbidden words alone use word boundaries), a text langdetect cannot
classify counts as followed, `-` lines count as bullets, and so on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from bench.scoring.voicebench_rules.ifeval.text import (
    LanguageUndetectable,
    count_sentences,
    count_words,
    detect_language,
    word_tokens,
)

RELATIONS = ("less than", "at least")
# The languages IFEval can ask for (ISO 639-1); any other code makes the official
# evaluator fail while building the instruction.
LANGUAGES = ("en", "es", "pt", "ar", "hi", "fr", "ru", "de", "ja", "it", "bn", "uk", "th",
             "ur", "ta", "te", "bg", "ko", "pl", "he", "fa", "vi", "ne", "sw", "kn", "mr",
             "gu", "pa", "ml", "fi")
CONSTRAINED_ANSWERS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

Args = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One instruction's check and the arguments it reads (all required)."""

    check: Callable[[str, Args], bool]
    params: tuple[str, ...] = ()


def _compare(count: float, relation: str, threshold: float) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


def _in_language(text: str, code: str) -> bool:
    try:
        return detect_language(text) == code
    except LanguageUndetectable:
        return True  # the official rule counts an undecidable text as followed


def _highlights(text: str) -> int:
    # *text* spans and, counted again, **text** spans; empty ones do not count.
    single = [m for m in re.findall(r"\*[^\n*]*\*", text) if m.strip("*").strip()]
    double = [m for m in re.findall(r"\*\*[^\n*]*\*\*", text) if m[2:-2].strip()]
    return len(single) + len(double)


def _paragraphs_by_divider(text: str, wanted: int) -> bool:
    parts = re.split(r"\s?\*\*\*\s?", text)
    inner_blank = any(not p.strip() for p in parts[1:-1])
    count = sum(1 for p in parts if p.strip())
    return not inner_blank and count == wanted


def _nth_paragraph_first_word(text: str, a: Args) -> bool:
    parts = text.split("\n\n")
    count = sum(1 for p in parts if p.strip())
    nth = a["nth_paragraph"]
    if nth > count or not parts[nth - 1].strip():
        return False
    word = parts[nth - 1].strip().split()[0].lstrip("'").lstrip('"')
    head = re.match(r"[^.,?!'\"]*", word).group(0)
    # lower-cased letter by letter, as the official rule does (differs from str.lower
    # only for a final Greek sigma)
    head = "".join(c.lower() for c in head)
    return count == a["num_paragraphs"] and head == a["first_word"].lower()


def _two_responses(text: str) -> bool:
    parts = text.split("******")
    if any(not p.strip() for p in parts[1:-1]):
        return False
    answers = [p for p in parts if p.strip()]
    return len(answers) == 2 and answers[0].strip() != answers[1].strip()


def _postscript(text: str, marker: str) -> bool:
    body = {"P.P.S": r"p\.\s?p\.\s?s", "P.S.": r"p\.\s?s\."}.get(marker, marker.lower())
    return re.search(r"\s*" + body + r".*$", text.lower(), flags=re.MULTILINE) is not None


def _json(text: str) -> bool:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    try:
        json.loads(body.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def _bullets(text: str) -> int:
    stars = re.findall(r"^\s*\*[^*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes)


def _sections(text: str, splitter: str) -> int:
    return len(re.split(r"\s?" + splitter.strip() + r"\s?\d+\s?", text)) - 1


def _quoted(text: str) -> bool:
    body = text.strip()
    return len(body) > 1 and body[0] == '"' and body[-1] == '"'


RULES: dict[str, Rule] = {
    "keywords:existence": Rule(
        lambda r, a: all(re.search(k, r, flags=re.IGNORECASE) for k in a["keywords"]),
        ("keywords",)),
    "keywords:frequency": Rule(
        lambda r, a: _compare(len(re.findall(a["keyword"].strip(), r, flags=re.IGNORECASE)),
                              a["relation"], a["frequency"]),
        ("keyword", "frequency", "relation")),
    "keywords:forbidden_words": Rule(
        lambda r, a: not any(re.search(rf"\b{w}\b", r, flags=re.IGNORECASE)
                             for w in a["forbidden_words"]),
        ("forbidden_words",)),
    "keywords:letter_frequency": Rule(
        lambda r, a: _compare(r.lower().count(a["letter"].strip().lower()),
                              a["let_relation"], a["let_frequency"]),
        ("letter", "let_frequency", "let_relation")),
    "language:response_language": Rule(
        lambda r, a: _in_language(r, a["language"]), ("language",)),
    "length_constraints:number_sentences": Rule(
        lambda r, a: _compare(count_sentences(r), a["relation"], a["num_sentences"]),
        ("num_sentences", "relation")),
    "length_constraints:number_paragraphs": Rule(
        lambda r, a: _paragraphs_by_divider(r, a["num_paragraphs"]), ("num_paragraphs",)),
    "length_constraints:number_words": Rule(
        lambda r, a: _compare(count_words(r), a["relation"], a["num_words"]),
        ("num_words", "relation")),
    "length_constraints:nth_paragraph_first_word": Rule(
        _nth_paragraph_first_word, ("num_paragraphs", "nth_paragraph", "first_word")),
    "detectable_content:number_placeholders": Rule(
        lambda r, a: len(re.findall(r"\[.*?\]", r)) >= a["num_placeholders"],
        ("num_placeholders",)),
    "detectable_content:postscript": Rule(
        lambda r, a: _postscript(r, a["postscript_marker"].strip()), ("postscript_marker",)),
    "detectable_format:number_bullet_lists": Rule(
        lambda r, a: _bullets(r) == a["num_bullets"], ("num_bullets",)),
    "detectable_format:constrained_response": Rule(
        lambda r, a: any(answer in r.strip() for answer in CONSTRAINED_ANSWERS)),
    "detectable_format:number_highlighted_sections": Rule(
        lambda r, a: _highlights(r) >= a["num_highlights"], ("num_highlights",)),
    "detectable_format:multiple_sections": Rule(
        lambda r, a: _sections(r, a["section_spliter"]) >= a["num_sections"],
        ("section_spliter", "num_sections")),
    "detectable_format:json_format": Rule(lambda r, a: _json(r)),
    "detectable_format:title": Rule(
        lambda r, a: any(t.lstrip("<").rstrip(">").strip()
                         for t in re.findall(r"<<[^\n]+>>", r))),
    "combination:two_responses": Rule(lambda r, a: _two_responses(r)),
    "combination:repeat_prompt": Rule(
        lambda r, a: r.strip().lower().startswith(a["prompt_to_repeat"].strip().lower()),
        ("prompt_to_repeat",)),
    "startend:end_checker": Rule(
        lambda r, a: r.strip().strip('"').lower().endswith(a["end_phrase"].strip().lower()),
        ("end_phrase",)),
    "startend:quotation": Rule(lambda r, a: _quoted(r)),
    "change_case:capital_word_frequency": Rule(
        lambda r, a: _compare(sum(t.isupper() for t in word_tokens(r)),
                              a["capital_relation"], a["capital_frequency"]),
        ("capital_frequency", "capital_relation")),
    "change_case:english_capital": Rule(
        lambda r, a: r.isupper() and _in_language(r, "en")),
    "change_case:english_lowercase": Rule(
        lambda r, a: r.islower() and _in_language(r, "en")),
    "punctuation:no_comma": Rule(lambda r, a: "," not in r),
}
