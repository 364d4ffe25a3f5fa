"""Real-speech test sets from IEMOCAP and MELD: `python -m bench.importers`.

    python -m bench.importers iemocap --root /data/IEMOCAP_full_release --out runs/iemocap
    python -m bench.importers meld --root /data/MELD.Raw --out runs/meld [--audio-dir DIR]

The readers live in bench.data.corpora (see its docstring for what is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.data.corpora import ImportError_, make_pairs, read_iemocap, read_meld, write_import


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.importers")
    ap.add_argument("corpus", choices=["iemocap", "meld"])
    ap.add_argument("--root", type=Path, required=True, help="local copy of the corpus")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sessions", default="1,2,3,4,5", help="IEMOCAP sessions")
    ap.add_argument("--splits", default="train,dev,test", help="MELD splits")
    ap.add_argument("--audio-dir", type=Path, default=None,
                    help="MELD: where audio extracted from .mp4 clips goes (needs ffmpeg)")
    ap.add_argument("--include-neutral", action="store_true",
                    help="also pair neutral with emotional readings")
    args = ap.parse_args(argv)
    try:
        if args.corpus == "iemocap":
            sessions = tuple(int(s) for s in args.sessions.split(",") if s.strip())
            utts, dims = read_iemocap(args.root, sessions), ("emotion", "gender")
        else:
            splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
            utts, dims = read_meld(args.root, splits, args.audio_dir), ("emotion",)
    except ImportError_ as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    queries = make_pairs(utts, args.corpus, dims, args.include_neutral)
    path = write_import(args.out, utts, queries)
    print(f"{len(utts)} utterances, {len(queries)} queries -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
