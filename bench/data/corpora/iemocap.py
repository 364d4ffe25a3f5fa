"""IEMOCAP from a local copy of the release (IEMOCAP_full_release), in its own layout:

    ROOT/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt     labels (majority emotion)
    ROOT/Session{1..5}/dialog/transcriptions/<dialog>.txt    "<turn> [start-end]: text"
    ROOT/Session{1..5}/sentences/wav/<dialog>/<turn>.wav     one file per turn

A label line reads `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]`;
the speaker's gender is the first letter of the turn's last part (F000 -> female).
Turns labelled xxx (no agreement) or oth are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.data.corpora.common import ImportError_, Utterance, require

LABELS = {"neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
          "fru": "frustrated", "fea": "fearful", "sur": "surprised", "dis": "disgusted"}
_LABEL = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\w+)\s+\[")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[\d.]+-[\d.]+\]:\s*(.*)$")


def _labels(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LABEL.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _transcripts(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def read_iemocap(root: str | Path, sessions: tuple[int, ...] = (1, 2, 3, 4, 5)
                 ) -> list[Utterance]:
    """Every labelled turn of the given sessions (ImportError_ names a missing file)."""
    root = require(Path(root), "IEMOCAP root folder")
    utts = []
    for n in sessions:
        sess = require(root / f"Session{n}", f"IEMOCAP session folder (Session{n})")
        label_dir = require(sess / "dialog" / "EmoEvaluation", "IEMOCAP label folder")
        label_files = sorted(label_dir.glob("*.txt"))
        if not label_files:
            raise ImportError_(f"no label files (*.txt) in {label_dir}")
        for lf in label_files:
            dialog = lf.stem
            text_file = require(sess / "dialog" / "transcriptions" / f"{dialog}.txt",
                                f"IEMOCAP transcription of {dialog}")
            texts = _transcripts(text_file)
            for turn, code in _labels(lf).items():
                if code not in LABELS:
                    continue
                if turn not in texts:
                    raise ImportError_(f"{text_file}: no transcript line for turn {turn} "
                                       f"(labelled in {lf})")
                wav = require(sess / "sentences" / "wav" / dialog / f"{turn}.wav",
                              f"IEMOCAP audio of turn {turn}")
                who = turn.rsplit("_", 1)[-1][:1]
                gender = {"F": "female", "M": "male"}.get(who, "")
                utts.append(Utterance(turn, str(wav.resolve()), texts[turn], LABELS[code],
                                      gender, f"Session{n}{who}", f"Session{n}"))
    return utts
