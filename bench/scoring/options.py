"""The flags `python -m bench.score` takes and the back ends they build.

Shared by every command that scores through the benchmark's pipeline (bench.score,
bench.voicebench, reward-model distillation), so none of them imports another command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.backends.asr import OpenAIASR, PocketSphinxASR, WhisperLocalASR
from bench.backends.cache import digest
from bench.backends.judge import JUDGE_FIELDS, OpenAIJudge, RuleJudge, judge_prompt
from bench.backends.prompt_template import field_list
from bench.backends.remote import ConfigError, Endpoint
from bench.backends.runtime import Runtime
from bench.backends.style import (
    CAPTION_FIELDS,
    OpenAIStyleCaptioner,
    ProsodyCaptioner,
    caption_prompt,
)
from bench.backends.systems import (
    AudioChatSystem,
    CheckpointSystem,
    PipelineSystem,
    ToplineSystem,
    WavFolderSystem,
)
from bench.backends.tts import EspeakTTS, OpenAITTS
from bench.data.audio import MAX_SECONDS
from bench.data.schema import Query

OFFLINE_DIR = Path(__file__).parent.parent / "data" / "offline"
DEFAULT_MODELS = {"system": "gpt-4o-audio-preview", "asr": "whisper-1",
                  "style": "gpt-4o-audio-preview", "judge": "gpt-4.1", "tts": "gpt-4o-mini-tts",
                  "chat": "gpt-4.1"}


def _endpoint_args(ap: argparse.ArgumentParser, role: str) -> None:
    ap.add_argument(f"--{role}-model", default=DEFAULT_MODELS[role], help=f"{role} model name")
    ap.add_argument(f"--{role}-base-url", default=None,
                    help=f"{role}: OpenAI-compatible base URL (default: the OpenAI API)")
    ap.add_argument(f"--{role}-key-env", default="OPENAI_API_KEY",
                    help=f"{role}: NAME of the environment variable holding the API key "
                         "('' for keyless servers)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every default and keeps the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        # Flags and unset options say nothing; a help that explains its default keeps it.
        if action.default is None or action.default is False or action.default == "" \
                or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


EPILOG = """examples:
  python -m bench.score                      # offline: bundled set, style-aware replies
  python -m bench.score --system-path bench/data/offline/replies/style_blind
  python -m bench.score --system wavdir --system-path runs/a/replies --system-name a

  (the paper's set-up is shown at the top)
"""


def parse_args(argv: list[str] | None = None, description: str | None = None,
               prog: str = "python -m bench.score") -> argparse.Namespace:
    """The flags of `bench.score`, which every command that scores through it shares."""
    ap = argparse.ArgumentParser(prog=prog, description=description,
                                 formatter_class=HelpFormatter, epilog=EPILOG)
    ap.add_argument("--queries", type=Path, default=OFFLINE_DIR / "queries.jsonl",
                    help="queries.jsonl to score (default: the bundled offline set)")
    ap.add_argument("--out", type=Path, default=None, help="results folder "
                    "(default runs/bench/<system name>)")
    ap.add_argument("--cache", type=Path, default=Path("runs/bench/cache.sqlite"),
                    help="SQLite cache of every back-end call, shared between runs")
    ap.add_argument("--system", default="wavdir",
                    choices=["wavdir", "pipeline", "topline", "audio-chat", "checkpoint"],
                    help="the system under test")
    ap.add_argument("--system-path", type=Path, default=OFFLINE_DIR / "replies" / "style_aware",
                    help="wavdir: reply folder <dir>/<query id>/<style>.wav; checkpoint: "
                         "Orbax checkpoint")
    ap.add_argument("--system-name", default=None,
                    help="name of the system in judgements and reports (default: the kind and "
                         "model, or for wavdir the folder name plus a digest of its path)")
    ap.add_argument("--system-speech", type=Path, default=None,
                    help="checkpoint (Kimi-Audio): speech models (glm-4-voice-tokenizer/, "
                         "whisper-large-v3/, audio_detokenizer/, vocoder/); a Qwen2.5-Omni "
                         "checkpoint holds its own token2wav")
    ap.add_argument("--system-seed", type=int, default=0, help="checkpoint: sampling seed")
    ap.add_argument("--system-max-new-tokens", type=int, default=256,
                    help="checkpoint: reply length cap (12.5 tokens per second of speech)")
    ap.add_argument("--system-voice", default="alloy", help="audio-chat reply voice")
    ap.add_argument("--system-prompt", default="", help="audio-chat: optional system message")
    _endpoint_args(ap, "system")
    _endpoint_args(ap, "chat")  # text model of pipeline/topline
    ap.add_argument("--tts", default="openai", choices=["openai", "espeak"],
                    help="speech output of pipeline/topline")
    ap.add_argument("--tts-voice", default="alloy", help="openai TTS voice")
    _endpoint_args(ap, "tts")
    ap.add_argument("--asr", default="pocketsphinx", choices=["pocketsphinx", "whisper-local",
                                                               "openai"],
                    help="speech recognition of prompts and replies (paper: Whisper-large-v3)")
    ap.add_argument("--asr-checkpoint", default=None, help="whisper-local: checkpoint .pt file")
    _endpoint_args(ap, "asr")
    ap.add_argument("--style", default="prosody", choices=["prosody", "openai"],
                    help="style captioner (paper: Audio-Reasoner)")
    _endpoint_args(ap, "style")
    ap.add_argument("--judge", default="rule", choices=["rule", "openai"],
                    help="rule: offline HEURISTIC judge; openai: LLM judge (paper: GPT-4.1)")
    _endpoint_args(ap, "judge")
    ap.add_argument("--judge-reasks", type=int, default=1, help="re-asks on a malformed answer")
    ap.add_argument("--judge-prompt", type=Path, default=None, metavar="FILE",
                    help="--judge openai: prompt template replacing the bundled one (e.g. the "
                         "paper's own); lines [system] / [user] split the messages, {{ }} are "
                         "literal braces; it must ask for 'The score is N.'. Fields "
                         "(docs/benchmark.md, 'Prompt templates'; single-turn queries have "
                         "conversation_history "
                         "'(none)'): " + field_list(JUDGE_FIELDS))
    ap.add_argument("--caption-prompt", type=Path, default=None, metavar="FILE",
                    help="--style openai: prompt template replacing the bundled one, sent with "
                         "the audio. Fields: " + field_list(CAPTION_FIELDS))
    ap.add_argument("--batch", action="store_true",
                    help="--judge openai: send the judge calls not yet cached as one OpenAI "
                         "Batch API job (half price, answers within 24 h) after ASR and "
                         "captions of every item, then score from the cache; a re-run resumes "
                         "a pending batch (<out>/batch/state.json)")
    ap.add_argument("--batch-poll", type=float, default=30.0,
                    help="--batch: seconds between status checks")
    ap.add_argument("--batch-timeout", type=float, default=24 * 3600.0,
                    help="--batch: stop waiting after this many seconds (exit 3; the same "
                         "command resumes the batch)")
    ap.add_argument("--concurrency", type=int, default=4, help="items in flight at once")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    ap.add_argument("--max-attempts", type=int, default=5, help="tries per call (429/5xx/timeout)")
    ap.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    ap.add_argument("--max-cost", type=float, default=None,
                    help="stop starting new items once this run's estimated spend (USD) reaches it")
    ap.add_argument("--max-rps", type=float, default=0.0,
                    help="at most this many remote requests per second, all back ends (0: off)")
    ap.add_argument("--max-audio-seconds", type=float, default=MAX_SECONDS,
                    help="refuse prompt or reply audio longer than this (0: no limit); "
                         "ASR and captioners are built for turns of up to 30 s")
    ap.add_argument("--prices", type=Path, default=None, help="JSON price table override")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N queries")
    ap.add_argument("--dimensions", default=None, help="comma list, e.g. emotion,sarcasm")
    ap.add_argument("--split", default="all", choices=["all", "synthetic", "real"],
                    help="score only this split")
    ap.add_argument("--retry-failed", action="store_true",
                    help="also redo items that failed permanently (cached calls are reused)")
    ap.add_argument("--force-new", action="store_true",
                    help="when --out holds results of another set-up, move them to "
                         "<out>/superseded-<time>/ and score again")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--no-plots", action="store_true", help="no PNG plots")
    return ap.parse_args(argv)


def endpoint(args: argparse.Namespace, role: str) -> Endpoint:
    """The --<role>-model / -base-url / -key-env endpoint."""
    return Endpoint(model=getattr(args, f"{role}_model"),
                    base_url=getattr(args, f"{role}_base_url"),
                    key_env=getattr(args, f"{role}_key_env"), timeout_s=args.timeout)


def build_backends(args: argparse.Namespace, runtime: Runtime):
    """(system, asr, style, judge) as the flags ask; ConfigError when one cannot be set up."""
    if args.asr == "openai":
        asr = OpenAIASR(endpoint(args, "asr"), runtime)
    elif args.asr == "whisper-local":
        if not args.asr_checkpoint:
            raise ConfigError("--asr whisper-local needs --asr-checkpoint PATH.pt")
        asr = WhisperLocalASR(args.asr_checkpoint, runtime)
    else:
        asr = PocketSphinxASR(runtime)
    if args.caption_prompt is not None and args.style != "openai":
        raise ConfigError("--caption-prompt applies to --style openai; the prosody captioner "
                          "reads no prompt")
    if args.batch and args.judge != "openai":
        raise ConfigError("--batch applies to --judge openai (the OpenAI Batch API); the rule "
                          "judge makes no calls")
    if args.judge_prompt is not None and args.judge != "openai":
        raise ConfigError("--judge-prompt applies to --judge openai; the rule judge reads no "
                          "prompt")
    style = (OpenAIStyleCaptioner(endpoint(args, "style"), runtime,
                                  caption_prompt(args.caption_prompt))
             if args.style == "openai" else ProsodyCaptioner(runtime))
    judge = (OpenAIJudge(endpoint(args, "judge"), runtime, args.judge_reasks,
                         judge_prompt(args.judge_prompt))
             if args.judge == "openai" else RuleJudge())
    if args.system == "checkpoint":
        system = CheckpointSystem(args.system_path, args.system_speech, runtime,
                                  seed=args.system_seed,
                                  max_new_tokens=args.system_max_new_tokens)
    elif args.system == "wavdir":
        system = WavFolderSystem(args.system_path)
    elif args.system == "audio-chat":
        system = AudioChatSystem(endpoint(args, "system"), runtime, args.system_voice,
                                 args.system_prompt)
    else:
        tts = (OpenAITTS(endpoint(args, "tts"), runtime, args.tts_voice) if args.tts == "openai"
               else EspeakTTS(runtime))
        chat = endpoint(args, "chat")
        system = (PipelineSystem(asr, chat, tts, runtime) if args.system == "pipeline"
                  else ToplineSystem(chat, tts, runtime))
    return system, asr, style, judge


def select(queries: list[Query], args: argparse.Namespace) -> list[Query]:
    """Apply --split, --dimensions, --limit (in that order)."""
    out = [q for q in queries if args.split == "all" or q.split == args.split]
    if args.dimensions:
        wanted = {d.strip() for d in args.dimensions.split(",") if d.strip()}
        out = [q for q in out if q.dimension in wanted]
    return out[: args.limit] if args.limit is not None else out


def slug(name: str) -> str:
    """A system name as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def default_system_name(system, args: argparse.Namespace) -> str:
    """--system-name, else one unique per system: a wav folder adds a digest of its path."""
    if args.system_name:
        return args.system_name
    if isinstance(system, WavFolderSystem):
        return f"{system.name}-{digest(str(system.dir.resolve()))[:6]}"
    return system.name
