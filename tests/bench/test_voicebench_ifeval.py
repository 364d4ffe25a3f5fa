"""VoiceBench ifeval: our checks against verdicts recorded from the official evaluator.

tests/bench/data/voicebench_ifeval_parity.json holds hand-written replies over all 25
instruction ids with the strict and loose verdicts VoiceBench's own ifeval code gave
them (its header says how they were obtained). Each rule is also broken on purpose once
(a plausible wrong reading of it) to show the recorded replies tell it apart.
"""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from bench.scoring.voicebench_rules.ifeval import (
    IfevalResult,
    UnsupportedInstruction,
    check_ifeval,
    ifeval_metrics,
    loose_variants,
)
from bench.scoring.voicebench_rules.ifeval import checks as ifeval_checks
from bench.scoring.voicebench_rules.ifeval.text import (
    LanguageUndetectable,
    count_words,
    detect_language,
)

PARITY = json.loads((Path(__file__).parent / "data" / "voicebench_ifeval_parity.json")
                    .read_text())
ITEMS = PARITY["items"]


def _ours(item) -> IfevalResult:
    return check_ifeval(item["response"], item["instruction_id_list"], item["kwargs"],
                        item["prompt"])


def _official(item) -> IfevalResult:
    return IfevalResult(tuple(item["strict"]), tuple(item["loose"]))


def test_parity_set_covers_every_rule_both_ways():
    assert len(ITEMS) >= 60 and {i["source"] for i in ITEMS} == {"official-run"}
    ids = {ident for i in ITEMS for ident in i["instruction_id_list"]}
    assert ids == set(ifeval_checks.RULES) and len(ids) == 25
    for ident in ids:
        verdicts = {v for i in ITEMS for n, x in enumerate(i["instruction_id_list"])
                    if x == ident for v in (i["strict"][n], i["loose"][n])}
        assert verdicts == {True, False}, ident
    assert sum(i["strict"] != i["loose"] for i in ITEMS) >= 10  # loose-only passes


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i["note"][:40])
def test_matches_the_official_verdicts(item):
    assert _ours(item) == _official(item)


def test_metrics_match_the_official_summary():
    ours = ifeval_metrics([_ours(i) for i in ITEMS])
    official = PARITY["official_metrics"]
    names = {"prompt_strict": "strict-prompt", "instruction_strict": "strict-instruction",
             "prompt_loose": "loose-prompt", "instruction_loose": "loose-instruction",
             "final": "final"}
    assert ours == pytest.approx({k: 100 * official[v] for k, v in names.items()})


def _wrong_nth_paragraph(r, a):  # compares the raw first token, punctuation and all
    parts = [p for p in r.split("\n\n") if p.strip()]
    nth = a["nth_paragraph"]
    return (len(parts) == a["num_paragraphs"] and nth <= len(parts)
            and parts[nth - 1].split()[0].lower() == a["first_word"])


def _wrong_language(r, a):  # a text langdetect cannot classify counted as not followed
    try:
        return detect_language(r) == a["language"]
    except LanguageUndetectable:
        return False


# one plausible misreading per rule; each must disagree with an official verdict
BROKEN = {
    "punctuation:no_comma": lambda r, a: ", " not in r,
    "change_case:english_lowercase": lambda r, a: r.islower(),
    "change_case:english_capital": lambda r, a: r == r.upper(),
    "change_case:capital_word_frequency": lambda r, a: ifeval_checks._compare(
        sum(w.isupper() for w in re.findall(r"\w+", r)), a["capital_relation"],
        a["capital_frequency"]),
    "length_constraints:number_words": lambda r, a: ifeval_checks._compare(
        len(r.split()), a["relation"], a["num_words"]),
    "length_constraints:number_sentences": lambda r, a: ifeval_checks._compare(
        len(re.split(r"(?<=[.!?])\s+", r.strip())), a["relation"], a["num_sentences"]),
    "keywords:existence": lambda r, a: all(
        re.search(rf"\b{k}\b", r, re.IGNORECASE) for k in a["keywords"]),
    "keywords:forbidden_words": lambda r, a: not any(
        w.lower() in r.lower() for w in a["forbidden_words"]),
    "keywords:frequency": lambda r, a: ifeval_checks._compare(
        len(re.findall(rf"\b{a['keyword']}\b", r, re.IGNORECASE)), a["relation"],
        a["frequency"]),
    "keywords:letter_frequency": lambda r, a: ifeval_checks._compare(
        r.count(a["letter"]), a["let_relation"], a["let_frequency"]),
    "startend:end_checker": lambda r, a: r.strip().lower().endswith(a["end_phrase"].lower()),
    "startend:quotation": lambda r, a: len(r) > 1 and r[0] == r[-1] == '"',
    "combination:repeat_prompt": lambda r, a: r.strip().startswith(a["prompt_to_repeat"]),
    "detectable_format:title": lambda r, a: "<<" in r and ">>" in r,
    "detectable_content:postscript": lambda r, a: a["postscript_marker"].lower() in r.lower(),
    "detectable_format:number_bullet_lists": lambda r, a: len(
        re.findall(r"^\s*\*[^*].*$", r, re.MULTILINE)) == a["num_bullets"],
    "detectable_format:json_format": lambda r, a: ifeval_checks._json(r.replace("```", "~")),
    "detectable_content:number_placeholders": lambda r, a: len(
        re.findall(r"\[\w+\]", r)) >= a["num_placeholders"],
    "detectable_format:constrained_response": lambda r, a: r.strip() in
    ifeval_checks.CONSTRAINED_ANSWERS,
    "detectable_format:number_highlighted_sections": lambda r, a: len(
        [m for m in re.findall(r"\*[^\n*]*\*", r) if m.strip("*").strip()]
    ) >= a["num_highlights"],
    "detectable_format:multiple_sections": lambda r, a: ifeval_checks._sections(
        r, a["section_spliter"]) == a["num_sections"],
    "length_constraints:number_paragraphs": lambda r, a: len(
        [p for p in r.split("\n\n") if p.strip()]) == a["num_paragraphs"],
    "length_constraints:nth_paragraph_first_word": _wrong_nth_paragraph,
    "combination:two_responses": lambda r, a: len(
        [p for p in r.split("******") if p.strip()]) == 2,
    "language:response_language": _wrong_language,
}


def test_every_rule_has_a_broken_variant():
    assert set(BROKEN) == set(ifeval_checks.RULES)


@pytest.mark.parametrize("ident", sorted(BROKEN))
def test_a_broken_rule_disagrees_with_the_official_verdicts(ident, monkeypatch):
    rule = ifeval_checks.RULES[ident]
    monkeypatch.setitem(ifeval_checks.RULES, ident, dataclasses.replace(rule,
                                                                        check=BROKEN[ident]))
    touched = [i for i in ITEMS if ident in i["instruction_id_list"]]
    assert any(_ours(i) != _official(i) for i in touched), f"{ident}: breaking it went unseen"


def test_loose_variants_are_the_eight_official_edits():
    got = loose_variants("Sure:\n*a* b\nBye")
    assert got == ["Sure:\n*a* b\nBye", "*a* b\nBye", "Sure:\n*a* b", "*a* b",
                   "Sure:\na b\nBye", "a b\nBye", "Sure:\na b", "a b"]


def test_word_count_splits_on_non_word_characters():
    assert count_words("I don't know, state-of-the-art!") == 8


@pytest.mark.parametrize("ident, kwargs, message", [
    ("rhyme:unchecked", {}, "no rule for this instruction id"),
    ("length_constraints:number_words", {"relation": "at least"}, r"missing \['num_words'\]"),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 0},
     r"missing \['num_words'\]"),  # 0 counts as absent, as officially
    ("punctuation:no_comma", {"num_words": 5}, r"unexpected \['num_words'\]"),
    ("length_constraints:number_words", {"relation": "at most", "num_words": 5},
     "'at most' is not one of"),
    ("detectable_content:number_placeholders", {"num_placeholders": -1}, "is negative"),
    ("detectable_content:number_placeholders", {"num_placeholders": "2"}, "not a number"),
    ("language:response_language", {"language": "zh"}, "language='zh' is not one of"),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 2,
                                   "let_relation": "at least"}, "not one letter"),
    ("keywords:existence", {"keywords": "rain"}, "not a list of words"),
    ("keywords:forbidden_words", {"forbidden_words": ["(rain"]}, "not a valid regular"),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}, "not within"),
])
def test_an_instruction_it_cannot_check_is_an_error(ident, kwargs, message):
    with pytest.raises(UnsupportedInstruction, match=message) as err:
        check_ifeval("some reply", [ident], [kwargs], "Write about rain.")
    assert ident in str(err.value) and "Write about rain." in str(err.value)


def test_instruction_and_kwargs_counts_must_agree():
    with pytest.raises(UnsupportedInstruction, match="2 instruction ids but 1 kwargs"):
        check_ifeval("x", ["punctuation:no_comma", "startend:quotation"], [{}], "p")


def test_metrics_need_items_and_weigh_instructions():
    with pytest.raises(ValueError, match="no scored ifeval items"):
        ifeval_metrics([])
    got = ifeval_metrics([IfevalResult((True, False, False), (True, True, True)),
                          IfevalResult((True,), (True,))])
    assert got == pytest.approx({"prompt_strict": 50.0, "instruction_strict": 50.0,
                                 "prompt_loose": 100.0, "instruction_loose": 100.0,
                                 "final": 75.0})
