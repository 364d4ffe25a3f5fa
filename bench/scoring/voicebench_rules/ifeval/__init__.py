"""VoiceBench's ifeval subset, scored as its official evaluator scores it.

Each reply is checked against each of its prompt's instructions with IFEval's rules
(`checks.RULES`, all 25 instruction ids VoiceBench uses) twice: strictly, on the reply
as given, and loosely, where the instruction counts as followed if any of eight
variants of the reply follows it (the reply, without its first line, without its last
line, without both, and each of those with every `*` removed). An empty reply follows
nothing. The subset's score is the mean of four accuracies: prompt-level (every
instruction followed) and instruction-level, strict and loose.

An instruction id without a rule, or arguments the official evaluator would replace by
a random draw or fail on (missing, negative, an unknown relation or language), raise
`UnsupportedInstruction` instead of being scored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bench.scoring.voicebench_rules.ifeval.checks import LANGUAGES, RELATIONS, RULES

# counts the official evaluator replaces by a random draw when negative
_COUNTS = ("num_sentences", "num_placeholders", "num_bullets", "num_highlights",
           "num_sections", "num_paragraphs", "num_words", "frequency", "let_frequency")
_NUMBERS = _COUNTS + ("nth_paragraph", "capital_frequency")
_RELATION_KEYS = ("relation", "let_relation", "capital_relation")
_PATTERN_KEYS = ("keyword", "section_spliter", "postscript_marker")
_WORD_LIST_KEYS = ("keywords", "forbidden_words")


class UnsupportedInstruction(ValueError):
    """An ifeval instruction this scorer cannot check as the official evaluator does."""


@dataclasses.dataclass(frozen=True)
class IfevalResult:
    """Per instruction of one prompt: followed under the strict and the loose check."""

    strict: tuple[bool, ...]
    loose: tuple[bool, ...]


def official_reply(response: str) -> str:
    """The reply as VoiceBench's ifeval reader keeps it: a leading `<1>`/`<2>`/`<3>` turn
    tag and a trailing `<|user|>` tag are cut off."""
    if response.startswith(("<1>", "<2>", "<3>")):
        response = response[3:].strip()
    if response.endswith("<|user|>"):
        response = response[:-len("<|user|>")].strip()
    return response


def loose_variants(response: str) -> list[str]:
    """The reply and the seven edits the loose check also accepts."""
    lines = response.split("\n")
    trimmed = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
               "\n".join(lines[1:-1]).strip()]
    return trimmed + [t.replace("*", "") for t in trimmed]


def _count_problem(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key}={value!r} is not a number"
    return f"{key}={value!r} is negative" if key in _COUNTS and value < 0 else None


def _pattern_problem(key: str, pattern: Any) -> str | None:
    # keywords and markers are used as regular expressions by the official rules
    try:
        re.compile(str(pattern))
    except re.error as err:
        return f"{key}={pattern!r} is not a valid regular expression ({err})"
    return None


def _arguments(ident: str, kwargs: Mapping[str, Any] | None, prompt: str) -> dict[str, Any]:
    where = f"ifeval instruction {ident!r} (prompt {prompt[:60]!r})"
    rule = RULES.get(ident)
    if rule is None:
        raise UnsupportedInstruction(
            f"{where}: no rule for this instruction id; the ids VoiceBench scores are "
            + ", ".join(sorted(RULES)))
    # As the official evaluator: empty values (None, 0, "", []) count as absent.
    args = {k: v for k, v in (kwargs or {}).items() if v}
    unexpected = sorted(set(args) - set(rule.params))
    missing = [p for p in rule.params if p not in args]
    if unexpected or missing:
        raise UnsupportedInstruction(
            f"{where}: kwargs must give exactly {list(rule.params) or 'nothing'}; "
            f"missing {missing}, unexpected {unexpected} (the official evaluator would draw "
            "missing ones at random); fix the item's kwargs")
    problems = [_count_problem(k, args[k]) for k in _NUMBERS if k in args]
    problems += [f"{k}={args[k]!r} is not one of {RELATIONS}" for k in _RELATION_KEYS
                 if k in args and args[k] not in RELATIONS]
    problems += [f"{k}={args[k]!r} is not a list of words" for k in _WORD_LIST_KEYS
                 if k in args and (isinstance(args[k], str) or not isinstance(args[k], Sequence))]
    patterns = [(k, args[k]) for k in _PATTERN_KEYS if k in args]
    patterns += [(k, w) for k in _WORD_LIST_KEYS if k in args for w in args[k]]
    problems += [_pattern_problem(k, p) for k, p in patterns]
    problems = [p for p in problems if p]
    if not problems and "nth_paragraph" in args \
            and not 0 < args["nth_paragraph"] <= args["num_paragraphs"]:
        problems.append(f"nth_paragraph={args['nth_paragraph']!r} is not within "
                        f"1..num_paragraphs={args['num_paragraphs']!r}")
    letter = args.get("letter")
    if letter is not None and not (len(letter) == 1 and "a" <= letter.lower() <= "z"):
        problems.append(f"letter={letter!r} is not one letter a-z")
    if "language" in args and args["language"] not in LANGUAGES:
        problems.append(f"language={args['language']!r} is not one of {LANGUAGES}")
    problems = [p for p in problems if p]
    if problems:
        raise UnsupportedInstruction(f"{where}: " + "; ".join(problems) + "; fix the item's "
                                     "kwargs (the official evaluator would draw at random "
                                     "or fail)")
    return args


def check_ifeval(response: str, instruction_ids: list[str], kwargs: list[dict],
                 prompt: str) -> IfevalResult:
    """Strict and loose verdicts of `response` for each instruction of one ifeval prompt."""
    if len(instruction_ids) != len(kwargs):
        raise UnsupportedInstruction(
            f"ifeval prompt {prompt[:60]!r}: {len(instruction_ids)} instruction ids but "
            f"{len(kwargs)} kwargs entries; fix the item's kwargs")
    reply = official_reply(response)
    variants = [v for v in loose_variants(reply) if v.strip()]
    strict, loose = [], []
    for ident, kw in zip(instruction_ids, kwargs, strict=True):
        args = _arguments(ident, kw, prompt)
        check = RULES[ident].check
        strict.append(bool(reply.strip()) and bool(check(reply, args)))
        loose.append(any(check(v, args) for v in variants))
    return IfevalResult(tuple(strict), tuple(loose))


def ifeval_metrics(results: Sequence[IfevalResult]) -> dict[str, float]:
    """Prompt- and instruction-level accuracy, strict and loose, and their mean (0-100)."""
    if not results:
        raise ValueError("ifeval_metrics: no scored ifeval items")
    out = {}
    for mode in ("strict", "loose"):
        flags = [getattr(r, mode) for r in results]
        out[f"prompt_{mode}"] = 100 * sum(all(f) for f in flags) / len(flags)
        out[f"instruction_{mode}"] = 100 * sum(map(sum, flags)) / sum(map(len, flags))
    out["final"] = sum(out.values()) / 4
    return out
