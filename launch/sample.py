"""Sample dual-stream replies from an Orbax Kimi-Audio (or Qwen2.5-Omni) checkpoint.

    python launch/sample.py --checkpoint ckpt/kimi --audio-codes "12 873 5 ..." \
        --num-samples 4 --out samples.jsonl
    python launch/sample.py --checkpoint ckpt/kimi --text "Tell me a joke." --output-type text
    # speech in, speech out (speech checkpoints: launch/convert.py random-speech layout)
    python launch/sample.py --checkpoint ckpt/kimi --speech /ckpt/speech --wav in.wav \
        --out reply.wav
    # Qwen2.5-Omni: speech in, speech out with the token2wav and voices of its checkpoint
    python launch/sample.py --checkpoint ckpt/omni --wav in.wav --speaker Ethan --out reply.wav

The prompt is one user turn: optional text (encoded with the checkpoint's tokenizer, or
given as ids with --text-ids) followed by optional speech, as semantic codes or as a
--wav file (tokenised, with Whisper features when the model reads them). Each reply is
printed (decoded text when a tokenizer is present, else token ids; audio codes) and
written as one JSON line with both streams and their log-probabilities; with a `.wav`
--out, each reply's audio codes are spoken instead (reply.wav, or reply_<g>.wav for
several samples; 24 kHz, 1920 samples per code).

A Qwen2.5-Omni checkpoint (its stored config's family) answers a --wav prompt: the
thinker's text and the talker's codec ids, spoken by the token2wav kept in the
checkpoint's hf_files/ in the --speaker voice of its spk_dict.pt (24 kHz, 480 samples
per code); no --speech folder is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ints(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in text.replace(",", " ").split()) if text else ()


def _speak(speech, codes: list[int], out: str, g: int, samples: int, seed: int) -> None:
    """Write reply g's audio codes as a wav (reply.wav, or reply_<g>.wav for several)."""
    import time

    import soundfile

    path = Path(out) if samples == 1 else Path(out).with_stem(f"{Path(out).stem}_{g}")
    if not codes:
        raise SystemExit(f"reply {g} holds no audio codes, so there is nothing to write to "
                         f"{path} (try more --max-new-tokens or another --seed)")
    start = time.perf_counter()
    wav = speech.decode(codes, seed=seed)
    seconds = time.perf_counter() - start
    soundfile.write(path, wav, speech.output_rate, subtype="FLOAT")
    duration = wav.size / speech.output_rate
    print(f"    wrote {path} ({wav.size} samples, {duration:.2f} s; detokenised in "
          f"{seconds:.2f} s, real-time factor {seconds / duration:.2f})")


def _write_wav(wav, rate: int, out: str, g: int, samples: int) -> None:
    """Write reply g's wav (reply.wav, or reply_<g>.wav for several)."""
    import soundfile

    path = Path(out) if samples == 1 else Path(out).with_stem(f"{Path(out).stem}_{g}")
    if wav is None:
        raise SystemExit(f"reply {g} holds no audio codes, so there is nothing to write to "
                         f"{path} (try more --max-new-tokens or another --seed)")
    soundfile.write(path, wav, rate, subtype="FLOAT")
    print(f"    wrote {path} ({wav.size} samples, {wav.size / rate:.2f} s)")


def _omni_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A Qwen2.5-Omni checkpoint answering the --wav prompt (see the module docstring)."""
    if not args.wav:
        parser.error("a Qwen2.5-Omni checkpoint answers speech: give --wav")
    unused = [f for f, v in (("--text", args.text), ("--text-ids", args.text_ids),
                             ("--audio-codes", args.audio_codes), ("--speech", args.speech))
              if v]
    if unused:
        parser.error(f"{unused[0]} is a Kimi-Audio option; a Qwen2.5-Omni checkpoint reads "
                     "--wav and speaks with its own token2wav")
    from paras2s_jax.sampling import SamplingConfig
    from paras2s_jax.speech_checkpoint import open_speech_chat

    sampling = SamplingConfig(
        max_new_tokens=args.max_new_tokens, text_temperature=args.text_temperature,
        text_top_k=args.text_top_k, audio_temperature=args.audio_temperature,
        audio_top_k=args.audio_top_k, num_samples=args.num_samples)
    try:
        chat = open_speech_chat(args.checkpoint, sampling, speaker=args.speaker)
    except (KeyError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"--checkpoint {args.checkpoint}: {err}") from err
    replies = chat.reply(args.wav, args.seed)
    speak = bool(args.out and args.out.endswith(".wav"))
    sink = open(args.out, "w") if args.out and not speak else None
    for g, reply in enumerate(replies):
        text = chat.tokenizer.decode(reply.text_ids) if chat.tokenizer else None
        print(f"[{g}] text: {text if text is not None else reply.text_ids!r}\n    codec ids "
              f"({len(reply.codes)}): {reply.codes[:32]}{' ...' if len(reply.codes) > 32 else ''}")
        if sink:
            sink.write(json.dumps({"sample": g, "text_ids": reply.text_ids, "text": text,
                                   "codec_ids": reply.codes}) + "\n")
        if speak:
            _write_wav(reply.wav, chat.output_rate, args.out, g, len(replies))
    if sink:
        sink.close()
        print(f"wrote {len(replies)} replies to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Orbax model checkpoint directory")
    parser.add_argument("--text", help="user text (needs the checkpoint's tokenizer/)")
    parser.add_argument("--text-ids", help="user text as token ids, space separated")
    parser.add_argument("--audio-codes", help="user speech as semantic codes, space separated")
    parser.add_argument("--num-samples", type=int, default=1, help="replies to sample (G)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--text-temperature", type=float, default=0.0)
    parser.add_argument("--text-top-k", type=int, default=5)
    parser.add_argument("--audio-temperature", type=float, default=0.8)
    parser.add_argument("--audio-top-k", type=int, default=10)
    parser.add_argument("--output-type", choices=("both", "text"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wav", help="user speech as an audio file (Kimi-Audio: needs "
                        "--speech)")
    parser.add_argument("--speech", help="speech checkpoints: glm-4-voice-tokenizer/, "
                        "whisper-large-v3/, audio_detokenizer/, vocoder/")
    parser.add_argument("--speaker", help="Qwen2.5-Omni: the voice of its spk_dict.pt "
                        "(default Chelsie, else the first)")
    parser.add_argument("--out", help="JSONL file for the replies, or a .wav file to speak them")
    args = parser.parse_args()
    from paras2s_jax.speech_checkpoint import needs_speech_models

    if not needs_speech_models(args.checkpoint):
        return _omni_main(parser, args)
    if args.speaker:
        parser.error("--speaker is a Qwen2.5-Omni option")
    speak = bool(args.out and args.out.endswith(".wav"))
    if (args.wav or speak) and not args.speech:
        parser.error("--wav and a .wav --out need --speech (the speech checkpoints directory)")
    if args.wav and args.audio_codes:
        parser.error("give the user speech as --wav or as --audio-codes, not both")

    import jax
    import numpy as np

    from paras2s_jax.checkpoint.orbax_io import restore_model
    from paras2s_jax.layout import build_prompt, parse_reply
    from paras2s_jax.sampling import SamplingConfig, generate
    from paras2s_jax.speech import SpeechPrompt
    from paras2s_jax.speech_chat import prompt_arrays, user_turn
    from paras2s_jax.tokenizer import KimiTextTokenizer

    model = restore_model(args.checkpoint)
    cfg = model.config
    tok_dir = Path(args.checkpoint) / "tokenizer"
    tokenizer = KimiTextTokenizer(tok_dir) if tok_dir.exists() else None
    if args.text and tokenizer is None:
        parser.error(f"--text needs a tokenizer at {tok_dir}; pass --text-ids instead")
    text_ids = tuple(tokenizer.encode(args.text)) if args.text else _ints(args.text_ids)
    codes = _ints(args.audio_codes)
    heard = SpeechPrompt(np.asarray(codes, np.int32), None) if codes else None
    speech = None
    if args.speech:
        from paras2s_jax.speech import Speech

        speech = Speech.load(args.speech, detokenizer=speak)
    if args.wav:
        heard = speech.encode(args.wav, features=cfg.use_whisper_feature)
        print(f"{args.wav}: {heard.codes.size} audio codes")
    if not text_ids and heard is None:
        parser.error("give a prompt: --text, --text-ids, --audio-codes and/or --wav")
    prompt = build_prompt(user_turn(heard, text_ids), cfg, output_type=args.output_type)
    sampling = SamplingConfig(
        max_new_tokens=args.max_new_tokens, text_temperature=args.text_temperature,
        text_top_k=args.text_top_k, audio_temperature=args.audio_temperature,
        audio_top_k=args.audio_top_k, output_type=args.output_type,
        num_samples=args.num_samples,
    )
    prompts = prompt_arrays(prompt, cfg, heard.features if heard is not None else None)
    out = generate(model, prompts, jax.random.key(args.seed), sampling)
    out = jax.device_get(out)
    sink = open(args.out, "w") if args.out and not speak else None
    for g in range(args.num_samples):
        text, audio = parse_reply(out.text[g], out.audio[g], cfg)
        record = {
            "sample": g, "text_ids": text, "audio_codes": audio,
            "text": tokenizer.decode(text) if tokenizer else None,
            "finished": bool(out.finished[g]), "steps": int(out.lengths[g]),
            "text_logprob": float(np.sum(out.text_logprobs[g])),
            "audio_logprob": float(np.sum(out.audio_logprobs[g])),
        }
        shown = record["text"] if tokenizer else text
        print(f"[{g}] text: {shown!r}\n    audio codes ({len(audio)}): {audio[:32]}"
              f"{' ...' if len(audio) > 32 else ''}")
        if sink:
            sink.write(json.dumps(record) + "\n")
        if speak:
            _speak(speech, audio, args.out, g, args.num_samples, args.seed)
    if sink:
        sink.close()
        print(f"wrote {args.num_samples} replies to {args.out}")


if __name__ == "__main__":
    main()
