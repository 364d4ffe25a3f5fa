"""Speak accepted drafts in their styles: N TTS candidates per (query, style) + selection.

    # offline (espeak-ng), 3 candidates, analyser picks the one closest to the style
    python -m bench.synth render --drafts runs/gen/accepted.jsonl --out runs/set \
        --backend espeak --candidates 3 --select auto --replies
    # the paper's TTS: gpt-4o-mini-tts with instructions, 10 candidates
    python -m bench.synth render --drafts D.jsonl --out runs/set --backend openai \
        --candidates 10 --model gpt-4o-mini-tts [--base-url URL --key-env NAME]
    # people listen and fill `choice` in runs/set/selection.csv, then
    python -m bench.synth select --out runs/set --sheet runs/set/selection.csv
    python -m bench.synth presets   # the espeak-ng style preset table (markdown)
    python -m bench.synth styles    # intended style vs measured pitch / rate / level

The bundled offline set is regenerated, offline, with:

    python -m bench.generate seed --out runs/seed --per-dimension 1
    python -m bench.synth render --drafts runs/seed/accepted.jsonl --out runs/offline \
        --backend espeak --candidates 1 --format flac --replies

Outputs in --out: candidates/<query>/<style>/<k>.wav (every candidate, 16 kHz mono
16-bit WAV), audio/<query>/<style>.<format> (the selected one), manifest.jsonl (one line
per clip: path, sample rate, duration, TTS instructions, analyser features, agreement,
selected and by whom), selection.csv (the sheet for manual choice), queries.jsonl (the
Query set bench.score reads), drafts.jsonl (reply texts for bench.data.sft_export),
with --replies replies/style_aware/... (each style's example reply, spoken in its reply
style) and replies/style_blind/... (the draft's neutral reply) as reference systems.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from bench.backends.prosody import analyse
from bench.backends.style import caption_prosody
from bench.backends.tts import TTS
from bench.data.audio import SAMPLE_RATE, decode_bytes, wav_bytes
from bench.data.dimensions import DATASET_FILE, load_dimensions, write_table
from bench.data.drafts import Draft, read_drafts, write_drafts
from bench.data.schema import DIMENSIONS, write_jsonl
from bench.data.style_targets import agreement, expected_attributes

SHEET_COLUMNS = ["query_id", "style", "instructions", "candidates", "agreement", "auto_choice",
                 "choice"]


@dataclass
class Clip:
    query_id: str
    style: str
    candidate: int
    path: str  # relative to the set folder
    instructions: str
    duration_s: float
    features: dict
    expected: dict
    agreement: float
    selected: bool = False
    selected_by: str = ""
    kind: str = "prompt"
    sample_rate: int = SAMPLE_RATE
    speaker: str = ""  # the TTS voice: prompts of one voice give its usual pitch and rate


def _write_audio(samples, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "wav":
        path.write_bytes(wav_bytes(samples))
        return
    buf = io.BytesIO()  # FLAC keeps a bundled set small; soundfile reads it like WAV
    sf.write(buf, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    path.write_bytes(buf.getvalue())


def render_candidates(tts: TTS, drafts: list[Draft], out: Path, n: int,
                      measure: bool = True, by_style: dict[str, TTS] | None = None
                      ) -> list[Clip]:
    """Every candidate clip of every (draft, style), measured by the offline analyser.

    `by_style` gives some styles their own TTS (an OpenAI voice per gender: instructions
    alone do not change the speaker's timbre reliably).
    """
    clips = []
    for d in drafts:
        for s in d.styles:
            expected = expected_attributes(s.description)
            engine = (by_style or {}).get(s.name, tts)
            for k in range(n):
                samples = decode_bytes(engine.synthesize(d.text, s.description, candidate=k),
                                       f"{tts.name}: {d.id}:{s.name} candidate {k}")
                rel = Path("candidates") / d.id / s.name / f"{k}.wav"
                _write_audio(samples, out / rel, "wav")
                feats, score = {}, 0.5
                if measure:
                    cap = caption_prosody(analyse(samples), transcript=d.text)
                    feats, score = cap.features, agreement(cap, expected)
                clips.append(Clip(d.id, s.name, k, str(rel), s.description,
                                  round(len(samples) / SAMPLE_RATE, 3), feats, expected, score,
                                  speaker=engine.speaker(s.description)))
    return clips


def auto_choice(clips: list[Clip]) -> dict[tuple[str, str], int]:
    """Best agreement per (query, style); ties go to the lowest candidate index."""
    best: dict[tuple[str, str], Clip] = {}
    for c in clips:
        key = (c.query_id, c.style)
        if key not in best or c.agreement > best[key].agreement:
            best[key] = c
    return {k: c.candidate for k, c in best.items()}


def write_sheet(clips: list[Clip], choice: dict[tuple[str, str], int], path: Path) -> None:
    rows: dict[tuple[str, str], dict] = {}
    for c in clips:
        r = rows.setdefault((c.query_id, c.style), {
            "query_id": c.query_id, "style": c.style, "instructions": c.instructions,
            "candidates": [], "agreement": [], "auto_choice": choice[(c.query_id, c.style)],
            "choice": ""})
        r["candidates"].append(c.path)
        r["agreement"].append(f"{c.agreement:.3f}")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SHEET_COLUMNS)
        w.writeheader()
        for r in rows.values():
            w.writerow({**r, "candidates": " ".join(r["candidates"]),
                        "agreement": " ".join(r["agreement"])})


def read_sheet(path: Path, clips: list[Clip]) -> dict[tuple[str, str], int]:
    """Manual choices (candidate index) from a filled-in selection sheet."""
    if not path.is_file():
        raise FileNotFoundError(f"selection sheet not found: {path}")
    counts: dict[tuple[str, str], int] = {}
    for c in clips:
        counts[(c.query_id, c.style)] = counts.get((c.query_id, c.style), 0) + 1
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            key = (row.get("query_id", ""), row.get("style", ""))
            if key not in counts:
                raise ValueError(f"{path}:{n}: no candidates for query {key[0]!r} style "
                                 f"{key[1]!r}")
            value = (row.get("choice") or "").strip()
            if not value:
                continue
            if not value.isdigit() or int(value) >= counts[key]:
                raise ValueError(f"{path}:{n}: column 'choice': {value!r} is not a candidate "
                                 f"index 0..{counts[key] - 1}")
            out[key] = int(value)
    return out


def finalize(out: Path, drafts: list[Draft], clips: list[Clip], choice: dict, by: dict,
             fmt: str, split: str = "synthetic") -> Path:
    """Copy the chosen candidates to audio/, write manifest.jsonl and queries.jsonl."""
    records = []
    speakers = {(c.query_id, c.style, c.candidate): c.speaker for c in clips if c.kind == "prompt"}
    for d in drafts:
        styles = []
        for s in d.styles:
            k = choice[(d.id, s.name)]
            rel = Path("audio") / d.id / f"{s.name}.{fmt}"
            src = decode_bytes((out / "candidates" / d.id / s.name / f"{k}.wav").read_bytes(),
                               f"{d.id}:{s.name} candidate {k}")
            _write_audio(src, out / rel, fmt)
            styles.append({"name": s.name, "audio": str(rel), "description": s.description,
                           "reference": s.reference, "reply_style": s.reply_style}
                          | ({"speaker": spk} if (spk := speakers.get((d.id, s.name, k))) else {}))
        records.append({"id": d.id, "dimension": d.dimension, "text": d.text,
                        "scenario": d.scenario, "split": split, "styles": styles})
    for c in clips:
        if c.kind == "prompt":
            c.selected = choice[(c.query_id, c.style)] == c.candidate
            c.selected_by = by.get((c.query_id, c.style), "auto") if c.selected else ""
    write_jsonl(out / "manifest.jsonl", [vars(c) for c in clips])
    path = out / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def render_replies(tts: TTS, drafts: list[Draft], out: Path, fmt: str) -> list[Clip]:
    """Reference replies: each style's example reply, and the style-blind neutral reply."""
    clips = []
    for d in drafts:
        for s in d.styles:
            for kind, text, how in (("style_aware", s.reply, s.reply_style),
                                    ("style_blind", d.neutral_reply, "calm")):
                if not text:
                    continue
                samples = decode_bytes(tts.synthesize(text, how), f"{d.id}:{s.name} {kind}")
                rel = Path("replies") / kind / d.id / f"{s.name}.{fmt}"
                _write_audio(samples, out / rel, fmt)
                clips.append(Clip(d.id, s.name, 0, str(rel), how,
                                  round(len(samples) / SAMPLE_RATE, 3), {}, {}, 0.5, True,
                                  "only", f"reply:{kind}"))
    return clips


def _tts(args) -> tuple[TTS, dict[str, TTS]]:
    """The TTS, and per-style TTS overrides (--voice-map, OpenAI only)."""
    if args.backend == "espeak":
        from bench.backends.tts import EspeakTTS

        return EspeakTTS(), {}
    from bench.backends.cache import Cache
    from bench.backends.remote import Endpoint, RetryPolicy
    from bench.backends.runtime import Runtime
    from bench.backends.tts import OpenAITTS

    rt = Runtime(Cache(args.cache or args.out / "cache.sqlite"), args.out / "ledger.jsonl",
                 RetryPolicy(args.max_attempts, args.backoff))
    endpoint = Endpoint(args.model, args.base_url, args.key_env, args.timeout)
    pairs = [x.split("=", 1) for x in args.voice_map.split(",") if x.strip()]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise SystemExit(f"--voice-map: expected style=voice[,style=voice], got "
                         f"{args.voice_map!r}")
    voices = {v: OpenAITTS(endpoint, rt, v) for v in {v for _, v in pairs}}
    return OpenAITTS(endpoint, rt, args.voice), {k.strip(): voices[v] for k, v in pairs}


def render(args) -> Path:
    drafts = read_drafts(args.drafts)
    args.out.mkdir(parents=True, exist_ok=True)
    tts, by_style = _tts(args)
    clips = render_candidates(tts, drafts, args.out, args.candidates,
                              measure=args.select == "auto", by_style=by_style)
    choice = auto_choice(clips) if args.select == "auto" else {
        (c.query_id, c.style): 0 for c in clips}
    write_sheet(clips, choice, args.out / "selection.csv")
    by = {k: "auto" if args.select == "auto" else "first" for k in choice}
    if args.replies:
        clips += render_replies(tts, drafts, args.out, args.format)
    write_drafts(args.out / "drafts.jsonl", drafts)
    extra = {d.dimension for d in drafts} - set(DIMENSIONS)
    if extra:  # the set declares its extension dimensions so bench.data.schema accepts them
        specs = load_dimensions(args.dimensions_file)
        write_table({k: specs[k] for k in sorted(extra) if k in specs}, args.out / DATASET_FILE)
    (args.out / "synth.json").write_text(json.dumps({"format": args.format, "split": args.split,
                                                     "backend": tts.name}) + "\n")
    return finalize(args.out, drafts, clips, choice, by, args.format, args.split)


def select(out: Path, sheet: Path) -> Path:
    """Apply manual choices from a filled-in selection sheet to a rendered set."""
    from bench.data.schema import iter_jsonl

    clips = [Clip(**raw) for _, raw in iter_jsonl(out / "manifest.jsonl")]
    prompts = [c for c in clips if c.kind == "prompt"]
    choice = {(c.query_id, c.style): c.candidate for c in prompts if c.selected}
    by = {(c.query_id, c.style): c.selected_by for c in prompts if c.selected}
    manual = read_sheet(sheet, prompts)
    choice.update(manual)
    by.update({k: "manual" for k in manual})
    meta = json.loads((out / "synth.json").read_text())
    return finalize(out, read_drafts(out / "drafts.jsonl"), clips, choice, by, meta["format"],
                    meta["split"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--drafts", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--backend", choices=["espeak", "openai"], default="espeak")
    r.add_argument("--candidates", type=int, default=3, help="TTS candidates per style (paper 10)")
    r.add_argument("--select", choices=["auto", "first"], default="auto",
                   help="auto: offline analyser's agreement with the style; first: candidate 0"
                        " (then choose by hand with `select`)")
    r.add_argument("--format", choices=["wav", "flac"], default="wav")
    r.add_argument("--split", choices=["synthetic", "real"], default="synthetic")
    r.add_argument("--replies", action="store_true", help="also speak the reference replies")
    r.add_argument("--dimensions-file", type=Path, default=None)
    r.add_argument("--model", default="gpt-4o-mini-tts")
    r.add_argument("--voice", default="alloy", help="openai: default voice")
    r.add_argument("--voice-map", default="female=coral,male=onyx",
                   help="openai: style=voice overrides ('' for none)")
    r.add_argument("--base-url", default=None)
    r.add_argument("--key-env", default="OPENAI_API_KEY")
    r.add_argument("--cache", type=Path, default=None)
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("--max-attempts", type=int, default=5)
    r.add_argument("--backoff", type=float, default=1.0)
    s = sub.add_parser("select")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--sheet", type=Path, required=True)
    sub.add_parser("presets")
    st = sub.add_parser("styles")
    st.add_argument("--dimensions-file", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "presets":
        from bench.data.style_table import presets_markdown

        print(presets_markdown(), end="")
    elif args.cmd == "styles":
        from bench.data.style_table import format_table, measure_styles

        print(format_table(measure_styles(args.dimensions_file)))
    else:
        try:
            if args.cmd == "select" and not (args.out / "manifest.jsonl").is_file():
                raise FileNotFoundError(f"{args.out / 'manifest.jsonl'} not found: --out must "
                                        "be a folder made by `bench.synth render`")
            path = render(args) if args.cmd == "render" else select(args.out, args.sheet)
        except (FileNotFoundError, ValueError) as err:  # ValueError: SchemaError, ConfigError
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
