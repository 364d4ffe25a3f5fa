"""IEMOCAP / MELD importers on small fixture trees in the corpora's real layouts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from bench.data.corpora import ImportError_, make_pairs, read_iemocap, read_meld
from bench.data.schema import read_queries
from bench.importers import main
from tests.bench.fake_openai import tone_wav

# (session, dialog, turn, label, transcript)
IEMOCAP_TURNS = [
    (1, "Ses01F_script01_1", "F000", "hap", "What's he going to say?"),
    (1, "Ses01F_script01_1", "M000", "sad", "Maybe he'll be fine."),
    (1, "Ses01F_script01_1", "F001", "xxx", "I don't know."),  # no agreement: skipped
    (1, "Ses01F_script01_1", "M001", "neu", "Okay."),
    (2, "Ses02M_script01_1", "F000", "sad", "What's he going to say?"),
    (2, "Ses02M_script01_1", "M000", "sad", "Maybe he'll be fine."),
    (2, "Ses02M_script01_1", "F001", "neu", "Okay."),
    (2, "Ses02M_script01_1", "M001", "hap", "what's he going to say"),
]


def iemocap_tree(root: Path) -> Path:
    for k, (sess, dialog, turn, label, text) in enumerate(IEMOCAP_TURNS):
        s = root / f"Session{sess}"
        tid = f"{dialog}_{turn}"
        start, end = 2.0 * k + 1.0, 2.0 * k + 2.5
        ev = s / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        if not ev.exists():
            ev.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n")
        with open(ev, "a") as f:
            f.write(f"[{start:.4f} - {end:.4f}]\t{tid}\t{label}\t[2.5000, 3.0000, 3.5000]\n"
                    "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 3; dom  3;\t()\n\n")
        tr = s / "dialog" / "transcriptions" / f"{dialog}.txt"
        tr.parent.mkdir(parents=True, exist_ok=True)
        with open(tr, "a") as f:
            f.write(f"{tid} [{start:08.4f}-{end:08.4f}]: {text}\n")
        wav = s / "sentences" / "wav" / dialog / f"{tid}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(tone_wav(k, seconds=0.3))
    return root


# split -> rows (dialogue, utterance, text, speaker, emotion)
MELD_ROWS = {
    "train": [(0, 0, "Oh my God!", "Rachel", "joy"), (0, 1, "Oh my God!", "Ross", "sadness"),
              (1, 0, "Okay.", "Joey", "neutral"), (1, 1, "Oh, my God.", "Monica", "surprise")],
    "dev": [(0, 0, "Okay.", "Chandler", "anger")],
    "test": [(0, 0, "What?", "Phoebe", "surprise"), (0, 1, "What?", "Joey", "fear")],
}


def meld_tree(root: Path) -> Path:
    folders = {"train": root / "train_splits", "dev": root / "dev" / "dev_splits_complete",
               "test": root / "output_repeated_splits_test"}  # both layouts occur
    for split, rows in MELD_ROWS.items():
        folders[split].mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}_sent_emo.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                        "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"])
            for k, (d, u, text, who, emo) in enumerate(rows, start=1):
                w.writerow([k, text, who, emo, "neutral", d, u, 1, 1, "00:00:01,000",
                            "00:00:02,000"])
                (folders[split] / f"dia{d}_utt{u}.mp4").write_bytes(b"\0video")
                (folders[split] / f"dia{d}_utt{u}.wav").write_bytes(tone_wav(10 * d + u, 0.3))
    return root


def test_iemocap_fixture_imports_to_expected_counts(tmp_path):
    utts = read_iemocap(iemocap_tree(tmp_path / "IEMOCAP_full_release"), sessions=(1, 2))
    assert len(utts) == 7  # 8 turns, one labelled xxx
    f000 = next(u for u in utts if u.id == "Ses01F_script01_1_F000")
    assert (f000.emotion, f000.gender, f000.text) == ("happy", "female",
                                                      "What's he going to say?")
    assert {u.gender for u in utts} == {"female", "male"}
    queries = make_pairs(utts, "iemocap", ("emotion", "gender"))
    by_dim = {d: [q for q in queries if q["dimension"] == d] for d in ("emotion", "gender")}
    assert len(by_dim["emotion"]) == 1 and len(by_dim["gender"]) == 2
    emo = by_dim["emotion"][0]
    assert [s["name"] for s in emo["styles"]] == ["happy", "sad"]
    assert [Path(s["audio"]).name for s in emo["styles"]] == ["Ses01F_script01_1_F000.wav",
                                                              "Ses02M_script01_1_F000.wav"]
    assert len(make_pairs(utts, "iemocap", ("emotion",), include_neutral=True)) == 1


def test_iemocap_cli_writes_a_loadable_real_split(tmp_path, capsys):
    root = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    assert main(["iemocap", "--root", str(root), "--out", str(tmp_path / "out"),
                 "--sessions", "1,2"]) == 0
    qs = read_queries(tmp_path / "out" / "queries.jsonl")
    assert len(qs) == 3 and {q.split for q in qs} == {"real"}
    assert all(Path(s.audio).is_file() for q in qs for s in q.styles)
    assert "7 utterances, 3 queries" in capsys.readouterr().out


@pytest.mark.parametrize("breakage, named", [
    ("Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_M000.wav",
     "Ses02M_script01_1_M000.wav"),
    ("Session1/dialog/transcriptions/Ses01F_script01_1.txt", "Ses01F_script01_1.txt"),
    ("Session2/dialog/EmoEvaluation", "EmoEvaluation"),
    ("Session2", "Session2"),
])
def test_broken_iemocap_tree_names_the_missing_file(tmp_path, breakage, named):
    root = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    target = root / breakage
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ImportError_, match=named) as err:
        read_iemocap(root, sessions=(1, 2))
    assert str(root / breakage) in str(err.value)


def test_meld_fixture_imports_to_expected_counts(tmp_path):
    utts = read_meld(meld_tree(tmp_path / "MELD.Raw"))
    assert len(utts) == 7 and {u.part for u in utts} == {"train", "dev", "test"}
    assert all(u.audio.endswith(".wav") and not u.gender for u in utts)
    first = next(u for u in utts if u.id == "meld-train-dia0_utt0")
    assert (first.emotion, first.speaker, first.text) == ("happy", "Rachel", "Oh my God!")
    queries = make_pairs(utts, "meld")
    pairs = sorted(tuple(s["name"] for s in q["styles"]) for q in queries)
    # "Oh my God!" x3 emotions -> 3 pairs; "What?" -> 1; "Okay." is neutral vs angry
    assert pairs == [("fearful", "surprised"), ("happy", "sad"), ("happy", "surprised"),
                     ("sad", "surprised")]
    assert len(make_pairs(utts, "meld", include_neutral=True)) == 5
    # Each prompt names its speaker, so pitch and rate are judged against their usual voice.
    assert "meld:Rachel" in {s["speaker"] for q in queries for s in q["styles"]}


def test_broken_meld_tree_names_the_missing_file(tmp_path):
    root = meld_tree(tmp_path / "MELD.Raw")
    (root / "train_splits" / "dia0_utt1.wav").unlink()
    (root / "train_splits" / "dia0_utt1.mp4").unlink()
    with pytest.raises(ImportError_, match=r"dia0_utt1.mp4 .*train_sent_emo.csv, row 3"):
        read_meld(root)
    (root / "dev_sent_emo.csv").unlink()
    with pytest.raises(ImportError_, match=r"MELD dev label file not found: .*dev_sent_emo.csv"):
        read_meld(root, splits=("dev",))
    shutil.rmtree(root / "output_repeated_splits_test")
    with pytest.raises(ImportError_, match=r"output_repeated_splits_test"):
        read_meld(root, splits=("test",))


@pytest.mark.skipif(shutil.which("ffmpeg") is not None, reason="ffmpeg would extract the audio")
def test_meld_video_only_clip_says_how_to_get_audio(tmp_path):
    root = meld_tree(tmp_path / "MELD.Raw")
    (root / "dev" / "dev_splits_complete" / "dia0_utt0.wav").unlink()
    with pytest.raises(ImportError_, match=r"dia0_utt0.mp4: only the video exists; install "
                                           "ffmpeg"):
        read_meld(root, splits=("dev",), audio_dir=tmp_path / "audio")
    assert main(["meld", "--root", str(root), "--out", str(tmp_path / "o"),
                 "--splits", "dev"]) == 2
