"""Shared part of the real-speech importers: utterances -> contrastive Query pairs.

A ParaS2SBench item is one text said in two contrastive styles. Recorded corpora do not
come in such pairs, but they repeat lines: IEMOCAP's scripted sessions have every actor
read the same script lines, and short lines ("Oh my God!", "Okay.") recur across MELD.
So utterances are grouped by normalised transcript, and every group with two different
emotions (or, for gender, the same emotion from a female and a male speaker) yields one
Query per style pair, using the first utterance (by id) of each style.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

from bench.data.drafts import normalise


class ImportError_(FileNotFoundError):
    """A local corpus copy that is incomplete; the message names the missing path."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: str  # absolute path
    text: str
    emotion: str  # canonical name, see EMOTIONS
    gender: str = ""  # female | male | "" when the corpus does not say
    speaker: str = ""
    part: str = ""  # corpus split or session, e.g. "Session1", "train"


# Canonical emotion -> (what a fitting reply does, how it should sound).
EMOTIONS = {
    "happy": ("Share the joy: react warmly and ask to hear more.", "cheerful, fast"),
    "excited": ("Match the excitement and ask what happened.", "cheerful, fast, loud"),
    "sad": ("Comfort them: acknowledge the feeling, offer support.", "gentle, slow, soft"),
    "angry": ("De-escalate: acknowledge the frustration calmly, offer a fix.", "calm, slow"),
    "frustrated": ("Acknowledge the frustration and help solve the problem.", "calm, slow"),
    "surprised": ("Acknowledge the surprise and explain or ask what was unexpected.", "calm"),
    "fearful": ("Reassure them and offer concrete help.", "gentle, calm, slow"),
    "disgusted": ("Acknowledge the disgust and move to something better.", "calm"),
    "neutral": ("Answer the words plainly and helpfully.", "calm"),
}


def _style(u: Utterance, corpus: str, name: str, how: str) -> dict:
    reference, reply_style = EMOTIONS.get(u.emotion, ("", "calm"))
    if name in ("female", "male"):
        reference = f"Fit a {name} speaker where it matters; {reference[0].lower()}{reference[1:]}"
    style = {"name": name, "audio": u.audio, "description": f"{how} ({corpus} {u.id})",
             "reference": reference, "reply_style": reply_style}
    # The speaker lets the scorer judge pitch and rate against this speaker's usual voice.
    return style | ({"speaker": f"{corpus}:{u.speaker}"} if u.speaker else {})


def make_pairs(utts: list[Utterance], corpus: str, dimensions: tuple[str, ...] = ("emotion",),
               include_neutral: bool = False) -> list[dict]:
    """Query records (bench.data.schema layout, split "real") from repeated lines."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.id):
        if normalise(u.text):
            groups[normalise(u.text)].append(u)
    out = []
    for key, group in groups.items():
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        text = group[0].text
        if "emotion" in dimensions:
            first: dict[str, Utterance] = {}
            for u in group:
                if include_neutral or u.emotion != "neutral":
                    first.setdefault(u.emotion, u)
            for a, b in combinations(sorted(first), 2):
                out.append({
                    "id": f"{corpus}-{digest}-{a}-{b}", "dimension": "emotion", "text": text,
                    "scenario": f"Recorded speech. Said {a}: {EMOTIONS[a][0]} "
                                f"Said {b}: {EMOTIONS[b][0]}",
                    "split": "real",
                    "styles": [_style(first[a], corpus, a, f"{a} speech"),
                               _style(first[b], corpus, b, f"{b} speech")]})
        if "gender" in dimensions:
            by = {}
            for u in group:
                if u.gender:
                    by.setdefault((u.emotion, u.gender), u)
            for emo in sorted({e for e, _ in by}):
                if (emo, "female") in by and (emo, "male") in by:
                    out.append({
                        "id": f"{corpus}-{digest}-{emo}-gender", "dimension": "gender",
                        "text": text, "split": "real",
                        "scenario": "Recorded speech: the same line from a woman and a man; "
                                    "suggestions that depend on the speaker should fit them.",
                        "styles": [_style(by[(emo, g)], corpus, g, f"a {g} speaker, {emo}")
                                   for g in ("female", "male")]})
    return out


def write_import(out: Path, utts: list[Utterance], queries: list[dict]) -> Path:
    """utterances.jsonl (every labelled utterance) and queries.jsonl (the pairs)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "utterances.jsonl").write_text("".join(json.dumps(asdict(u)) + "\n" for u in utts))
    path = out / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in queries))
    return path


def require(path: Path, what: str) -> Path:
    """`path`, or ImportError_ naming it and what it should be."""
    if not path.exists():
        raise ImportError_(f"{what} not found: {path}")
    return path
