"""Real-speech test sets from local corpus copies (IEMOCAP, MELD), in bench.data.schema layout.

    python -m bench.importers iemocap --root /data/IEMOCAP_full_release --out runs/iemocap
    python -m bench.importers meld --root /data/MELD.Raw --out runs/meld [--audio-dir DIR]

Each writes utterances.jsonl (every labelled utterance: audio, text, emotion, gender)
and queries.jsonl (contrastive pairs of repeated lines, split "real"; see
bench.data.corpora.common). Nothing is downloaded.
"""

from bench.data.corpora.common import ImportError_, Utterance, make_pairs, write_import
from bench.data.corpora.iemocap import read_iemocap
from bench.data.corpora.meld import read_meld

__all__ = ["ImportError_", "Utterance", "make_pairs", "read_iemocap", "read_meld",
           "write_import"]
