"""MELD from a local copy of MELD.Raw, in its own layout:

    ROOT/{train,dev,test}_sent_emo.csv     one row per utterance: Utterance, Speaker,
                                           Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...
    ROOT/train_splits/dia<D>_utt<U>.mp4    clips (also found under ROOT/train/...)
    ROOT/dev_splits_complete/...           (ROOT/dev/...)
    ROOT/output_repeated_splits_test/...   (ROOT/test/...)

A clip is taken as `.wav` when one sits next to the `.mp4` (audio already extracted);
otherwise the `.mp4`'s audio is extracted to 16 kHz mono WAV with ffmpeg into
`audio_dir`. MELD has no gender or age metadata: emotion queries only.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

from bench.data.corpora.common import ImportError_, Utterance, require

SPLITS = {"train": "train_splits", "dev": "dev_splits_complete",
          "test": "output_repeated_splits_test"}
LABELS = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry",
          "surprise": "surprised", "fear": "fearful", "disgust": "disgusted"}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def _clip_dir(root: Path, split: str) -> Path:
    for cand in (root / SPLITS[split], root / split / SPLITS[split]):
        if cand.is_dir():
            return cand
    raise ImportError_(f"MELD {split} clip folder not found: {root / SPLITS[split]} "
                       f"(or {root / split / SPLITS[split]})")


def _audio(clip_dir: Path, stem: str, audio_dir: Path | None, csv_path: Path, row: int) -> Path:
    wav, mp4 = clip_dir / f"{stem}.wav", clip_dir / f"{stem}.mp4"
    if wav.is_file():
        return wav
    if not mp4.is_file():
        raise ImportError_(f"MELD clip not found: {mp4} (nor {wav.name}); listed in "
                           f"{csv_path}, row {row}")
    if audio_dir is None or shutil.which("ffmpeg") is None:
        raise ImportError_(f"{mp4}: only the video exists; install ffmpeg and pass an audio "
                           "folder, or extract the audio to a .wav next to it")
    out = audio_dir / clip_dir.name / f"{stem}.wav"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(mp4), "-vn", "-ac", "1",
                        "-ar", "16000", str(out)], check=True, timeout=120)
    return out


def read_meld(root: str | Path, splits: tuple[str, ...] = ("train", "dev", "test"),
              audio_dir: Path | None = None) -> list[Utterance]:
    """Every utterance of the given splits (ImportError_ names a missing file)."""
    root = require(Path(root), "MELD root folder")
    utts = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown MELD split {split!r}; use {sorted(SPLITS)}")
        csv_path = require(root / f"{split}_sent_emo.csv", f"MELD {split} label file")
        clip_dir = _clip_dir(root, split)
        # MELD's CSVs carry a few stray cp1252 bytes; replace rather than fail.
        with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ImportError_(f"{csv_path}: column {missing[0]!r} missing from the header")
            for n, row in enumerate(reader, start=2):
                emo = LABELS.get(row["Emotion"].strip().lower())
                if emo is None:
                    raise ValueError(f"{csv_path}:{n}: column 'Emotion': unknown label "
                                     f"{row['Emotion']!r}")
                stem = f"dia{row['Dialogue_ID'].strip()}_utt{row['Utterance_ID'].strip()}"
                path = _audio(clip_dir, stem, audio_dir, csv_path, n)
                utts.append(Utterance(f"meld-{split}-{stem}", str(path.resolve()),
                                      row["Utterance"].strip(), emo, "",
                                      row["Speaker"].strip(), split))
    return utts
