"""The toy paralinguistic world: words, speaking styles, and the scenario table.

Same structure as ParaS2SBench, at a size a tiny model learns on a CPU:

- four dimensions (emotion, sarcasm, age, gender), each with two contrastive styles;
- neutral texts = a dimension's template + a topic word ("i just ran into my ex");
  the words alone never reveal the style;
- the right reply to (text, style) is `[opener(style), topic, closer(style)]`, spoken
  in a reply voice that fits the style (sad -> gentle, sarcastic -> playful, ...);
- a style-blind system can at best give the generic reply `[okay, topic, then]`.

Text token id of a word = its index in `WORDS`; its content code in the audio
stream is the same number. Prosody codes live above `PROSODY_BASE`.
"""

from __future__ import annotations

import dataclasses
import itertools

DIMENSIONS = ("emotion", "sarcasm", "age", "gender")

# dimension -> its two contrastive input styles
STYLE_PAIRS: dict[str, tuple[str, str]] = {
    "emotion": ("happy", "sad"),
    "sarcasm": ("sincere", "sarcastic"),
    "age": ("child", "elderly"),
    "gender": ("male", "female"),
}

# input style -> (opener, closer, reply voice); why: the scenario a judge would apply
REPLY_RULES: dict[str, tuple[str, str, str]] = {
    "happy": ("wow", "great", "cheerful"),  # share the excitement
    "sad": ("oh", "sorry", "gentle"),  # comfort
    "sincere": ("thanks", "indeed", "warm"),  # take the praise at face value
    "sarcastic": ("sure", "haha", "playful"),  # get the joke, do not thank
    "child": ("hey", "buddy", "lively"),  # talk to a kid
    "elderly": ("well", "dear", "calm"),  # talk to an older person, slowly
    "male": ("sir", "bold", "warm"),  # advice that fits the asker
    "female": ("maam", "lovely", "warm"),
}
GENERIC = ("okay", "then")  # what a style-blind pipeline answers around the topic
NEUTRAL_VOICE = "neutral"

# Every style the speaker can render; each owns `PROSODY_PER_STYLE` prosody codes.
STYLES: tuple[str, ...] = (
    "neutral", "happy", "sad", "sincere", "sarcastic", "child", "elderly", "male", "female",
    "cheerful", "gentle", "warm", "playful", "lively", "calm",
)
PROSODY_BASE = 192  # codes [0, 192) carry words, [192, 256) carry prosody
PROSODY_PER_STYLE = 4

TEMPLATES: dict[str, tuple[tuple[str, ...], ...]] = {
    "emotion": (("i", "just", "ran", "into", "my"), ("guess", "who", "called", "my"),
                ("they", "brought", "back", "the")),
    "sarcasm": (("you", "really", "fixed", "the"), ("what", "a", "fine"),
                ("so", "nice", "of", "your")),
    "age": (("can", "you", "show", "me", "the"), ("where", "did", "i", "leave", "the"),
            ("tell", "me", "about", "the")),
    "gender": (("which", "color", "suits", "my"), ("should", "i", "wear", "the"),
               ("help", "me", "pick", "a")),
}
TOPICS = (
    "ex", "boss", "dog", "car", "cake", "phone", "garden", "shirt",
    "bike", "piano", "hat", "letter",
)
# General-ability requests (see toyworld/general.py): style plays no part in them.
ANIMAL_SOUNDS = {
    "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot",
    "lion": "roar", "frog": "croak", "bee": "buzz", "horse": "neigh", "pig": "oink",
}
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
GENERAL_WORDS = ("what", "does", "the", "say", "says", "count", "from")


def _vocabulary() -> tuple[str, ...]:
    words: list[str] = []
    for w in itertools.chain(
        *(itertools.chain(*t) for t in TEMPLATES.values()), TOPICS, GENERIC,
        *((o, c) for o, c, _ in REPLY_RULES.values()),
        # appended last: the ids of the words above do not depend on them
        GENERAL_WORDS, *ANIMAL_SOUNDS.items(), NUMBERS,
    ):
        if w not in words:
            words.append(w)
    return tuple(words)


WORDS = _vocabulary()
WORD_ID = {w: i for i, w in enumerate(WORDS)}
assert len(WORDS) <= PROSODY_BASE, "content codes would collide with prosody codes"
assert len(STYLES) * PROSODY_PER_STYLE <= 256 - PROSODY_BASE, "too many styles"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One test item: a neutral text said in one of its dimension's two styles."""

    dimension: str
    template: int  # index into TEMPLATES[dimension]
    topic: str
    style: str

    @property
    def words(self) -> tuple[str, ...]:
        return TEMPLATES[self.dimension][self.template] + (self.topic,)

    @property
    def other_style(self) -> str:
        a, b = STYLE_PAIRS[self.dimension]
        return b if self.style == a else a

    def reply_words(self, style: str | None = None) -> tuple[str, ...]:
        """The right reply content for `style` (default: this scenario's style)."""
        opener, closer, _ = REPLY_RULES[style or self.style]
        return (opener, self.topic, closer)

    def generic_words(self) -> tuple[str, ...]:
        return (GENERIC[0], self.topic, GENERIC[1])

    def reply_voice(self, style: str | None = None) -> str:
        return REPLY_RULES[style or self.style][2]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def all_texts() -> list[tuple[str, int, str]]:
    """Every (dimension, template, topic) neutral text of the world."""
    return [(d, t, topic) for d in DIMENSIONS for t in range(len(TEMPLATES[d])) for topic in TOPICS]


def split_texts(eval_fraction: float, seed: int) -> tuple[list, list]:
    """Train / held-out texts. Held-out texts are unseen (template, topic) pairs."""
    import numpy as np

    texts = all_texts()
    order = np.random.default_rng(seed).permutation(len(texts))
    n_eval = int(round(eval_fraction * len(texts)))
    held = {int(i) for i in order[:n_eval]}
    train = [x for i, x in enumerate(texts) if i not in held]
    evals = [x for i, x in enumerate(texts) if i in held]
    return train, evals


def scenarios(texts: list[tuple[str, int, str]]) -> list[Scenario]:
    """Both contrastive styles of each text."""
    return [Scenario(d, t, topic, s) for d, t, topic in texts for s in STYLE_PAIRS[d]]


def encode_words(words: tuple[str, ...] | list[str]) -> list[int]:
    """Text token ids of words."""
    return [WORD_ID[w] for w in words]


def decode_words(ids: list[int]) -> tuple[str, ...]:
    """Words of text token ids; ids outside the vocabulary read as '<unk>'."""
    return tuple(WORDS[i] if 0 <= i < len(WORDS) else "<unk>" for i in ids)
