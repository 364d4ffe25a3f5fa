"""Stage-1 SFT pairs from a rendered set: (prompt speech, expressive reply text, reply speech).

    python -m bench.data.sft_export --set runs/set --out runs/sft [--shard-size 1000] \
        [--speech SPEECH_DIR | --codes-dir CODES] --text-tokenizer CKPT_DIR [--features]

--set is a bench.synth output rendered with --replies (queries.jsonl, drafts.jsonl,
replies/style_aware/...). One record per (query, style):

    {"id", "dimension", "style", "prompt_wav", "reply_transcript", "reply_style",
     "reply_wav"}

Without a code source the records hold *paths and text only* and the Stage-1 trainer
(paras2s_jax.train.data) rejects them (it needs audio codes). With a code source
configured, every record also gets the trainer's token fields:

    "prompt_audio": [codes], "reply_text": [ids], "reply_audio": [codes]

Code sources: --speech tokenises prompt and reply speech with GLM-4-Voice's tokenizer
(`<SPEECH_DIR>/glm-4-voice-tokenizer`, see `paras2s_jax.speech`); --codes-dir holds codes
computed elsewhere as `<sha256 of the wav file>.npy` (1-D ints, content-addressed, so
moving the set does not break the lookup). With both, codes found in --codes-dir are
reused and new ones are stored there. --features (needs --speech with its
whisper-large-v3/) also writes each prompt's Whisper features to
`<out>/features/<sha256>.npy` and names them in "prompt_features".
--text-tokenizer is a Kimi-Audio checkpoint folder with tiktoken.model. export.json
records which kind of shard was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.data.audio import file_sha256
from bench.data.drafts import read_drafts
from bench.data.schema import read_queries, write_jsonl

LIMITATION = ("paths and text only: no speech tokenizer is configured, so these records lack "
              "prompt_audio / reply_audio codes and the Stage-1 trainer cannot read them yet; "
              "re-run with --speech (or --codes-dir) and --text-tokenizer")


class ExportError(ValueError):
    """A set that cannot be exported; the message names the file and what is missing."""


class CodeDir:
    """Semantic codes of audio files, stored as DIR/<sha256 of the file>.npy."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise ExportError(f"codes folder not found: {self.dir}")

    def __call__(self, wav: str | os.PathLike) -> list[int]:
        path = self.dir / f"{file_sha256(wav)}.npy"
        if not path.is_file():
            raise ExportError(f"no audio codes for {wav} (expected {path}); run the speech "
                              "tokenizer over the set first (or export with --speech)")
        codes = np.load(path)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ExportError(f"{path}: expected a 1-D integer array, got {codes.dtype}"
                              f"{list(codes.shape)}")
        return [int(c) for c in codes]


class SpeechCodes:
    """Codes from the speech tokenizer, optionally cached in (and read from) a CodeDir;
    with `features_dir`, prompt Whisper features are written there too."""

    def __init__(self, speech_dir: str | os.PathLike, cache: CodeDir | None = None,
                 features_dir: Path | None = None):
        from paras2s_jax.speech import Speech

        self.speech = Speech.load(speech_dir, detokenizer=False)
        if features_dir is not None and self.speech.whisper is None:
            raise ExportError(f"--features needs a Whisper encoder at {speech_dir}/"
                              "whisper-large-v3")
        self.cache, self.features_dir = cache, features_dir

    def __call__(self, wav: str | os.PathLike) -> list[int]:
        if self.cache is not None and (self.cache.dir / f"{file_sha256(wav)}.npy").is_file():
            return self.cache(wav)
        try:
            codes = self.speech.encode(wav, features=False).codes
        except (OSError, ValueError) as err:
            raise ExportError(f"cannot tokenise {wav}: {err}") from err
        if self.cache is not None:
            np.save(self.cache.dir / f"{file_sha256(wav)}.npy", codes)
        return [int(c) for c in codes]

    def features(self, wav: str | os.PathLike) -> str:
        """Write the prompt's Whisper features; returns their path relative to the shards."""
        name = f"{file_sha256(wav)}.npy"
        path = self.features_dir / name
        if not path.is_file():
            prompt = self.speech.encode(wav)
            self.features_dir.mkdir(parents=True, exist_ok=True)
            np.save(path, prompt.features)
        return f"{self.features_dir.name}/{name}"


def sft_records(set_dir: str | os.PathLike, codes: Callable[[str], list[int]] | None = None,
                encode: Callable[[str], list[int]] | None = None) -> list[dict]:
    """One record per (query, style) with a spoken reply; token fields when configured."""
    set_dir = Path(set_dir)
    queries = read_queries(set_dir / "queries.jsonl")
    drafts = {d.id: d for d in read_drafts(set_dir / "drafts.jsonl")}
    if (codes is None) != (encode is None):
        raise ExportError("token fields need both a code source (--codes-dir) and a text "
                          "tokenizer (--text-tokenizer)")
    out = []
    for q in queries:
        d = drafts.get(q.id)
        if d is None:
            raise ExportError(f"{set_dir / 'drafts.jsonl'}: no draft for query {q.id!r} "
                              "(reply texts come from the drafts)")
        for s in q.styles:
            ds = next((x for x in d.styles if x.name == s.name), None)
            if ds is None or not ds.reply:
                raise ExportError(f"{set_dir / 'drafts.jsonl'}: query {q.id!r} style "
                                  f"{s.name!r} has no reply text")
            reply_wav = next(iter(sorted((set_dir / "replies" / "style_aware" / q.id).glob(
                f"{s.name}.*"))), None)
            if reply_wav is None:
                raise ExportError(f"reply audio not found: {set_dir}/replies/style_aware/"
                                  f"{q.id}/{s.name}.wav (render the set with --replies)")
            rec = {"id": q.item_id(s), "dimension": q.dimension, "style": s.name,
                   "prompt_wav": s.audio, "reply_transcript": ds.reply,
                   "reply_style": ds.reply_style, "reply_wav": str(reply_wav.resolve())}
            if codes is not None and encode is not None:
                rec.update(prompt_audio=codes(s.audio), reply_text=encode(ds.reply),
                           reply_audio=codes(str(reply_wav)))
                if getattr(codes, "features_dir", None) is not None:
                    rec["prompt_features"] = codes.features(s.audio)
            out.append(rec)
    return out


def export(set_dir: str | os.PathLike, out: str | os.PathLike, shard_size: int = 1000,
           codes_dir: str | None = None, text_tokenizer: str | None = None,
           speech_dir: str | None = None, features: bool = False) -> dict:
    """Write sft-XXXXX-of-YYYYY.jsonl shards and export.json; return the summary."""
    if features and not speech_dir:
        raise ExportError("--features needs --speech (the Whisper encoder computes them)")
    out = Path(out)
    codes = CodeDir(codes_dir) if codes_dir else None
    if speech_dir:
        codes = SpeechCodes(speech_dir, codes, out / "features" if features else None)
    encode = None
    if text_tokenizer:
        from paras2s_jax.tokenizer import KimiTextTokenizer

        encode = KimiTextTokenizer(text_tokenizer).encode
    out.mkdir(parents=True, exist_ok=True)
    records = sft_records(set_dir, codes, encode)
    n = max(1, -(-len(records) // shard_size))
    shards = []
    for i in range(n):
        path = out / f"sft-{i:05d}-of-{n:05d}.jsonl"
        write_jsonl(path, records[i * shard_size:(i + 1) * shard_size])
        shards.append(path.name)
    summary = {"records": len(records), "shards": shards, "tokens": codes is not None,
               "note": "trainer-ready token fields" if codes is not None else LIMITATION}
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.data.sft_export",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--set", type=Path, required=True, help="bench.synth output (--replies)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--codes-dir", default=None, help="DIR/<sha256 of wav>.npy audio codes")
    ap.add_argument("--text-tokenizer", default=None, help="Kimi-Audio tokenizer folder")
    ap.add_argument("--speech", default=None, help="speech checkpoints folder (tokenise wavs)")
    ap.add_argument("--features", action="store_true",
                    help="also write prompt Whisper features (needs --speech)")
    args = ap.parse_args(argv)
    try:
        summary = export(args.set, args.out, args.shard_size, args.codes_dir,
                         args.text_tokenizer, args.speech, args.features)
    except (ExportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
