r"""Score a system on ParaS2SBench: `python -m bench.score`.

Every (query, style) item goes: prompt speech -> system under test -> reply speech;
then ASR and style captions of prompt and reply -> judge -> a 1-5 score. With no
arguments it scores the bundled offline set (espeak-ng speech, pocketsphinx ASR,
prosody captions, HEURISTIC rule judge) with no keys and no downloads:

    python -m bench.score

The paper's set-up (keys from the environment, OpenAI-compatible servers):

    python -m bench.score --queries Q.jsonl --system audio-chat \
        --system-model gpt-4o-audio-preview --asr openai --asr-model whisper-1 \
        --style openai --style-base-url http://HOST/v1 \
        --style-model Audio-Reasoner --style-key-env '' --judge openai --judge-model gpt-4.1

Our own model, from an Orbax checkpoint plus its speech models (`launch/convert.py
random-speech` writes random ones in the published layout):

    python -m bench.score --system checkpoint --system-path ckpt/kimi \
        --system-speech /ckpt/speech

Every back-end call is cached in SQLite (--cache), results are appended durably to
<out>/judgements.jsonl, and re-running the same command resumes: finished items are
skipped and no paid call is repeated. Items that failed with retryable errors are
tried again on the next run; permanent failures with --retry-failed. A resume is refused
when the set-up changed (model, prompt, rubric, parser, captioner rules; see
fingerprint.json) unless --force-new; items whose prompt or reply audio changed are
scored again.

The headline counts every failed item as 1 and says how many failed; the scored-items
mean (what the paper reports) stands beside it. Exit status: 0 all items scored, 1 some
failed (summary by stage on stderr), 2 bad set-up or input.

Outputs in --out (default runs/bench/<system name>): judgements.jsonl (one record per item:
score or error with its stage, transcripts, captions, audio sha256, back ends, judge
snapshot, cost, latency), report.md + table.csv + PNG plots, ledger.jsonl (every call:
cached or not, attempts, latency, estimated cost, failures) and ledger_summary.json,
run.json, fingerprint.json. Spend controls: --concurrency, --max-rps, --max-cost, --prices.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from bench import report
from bench.backends.asr import OpenAIASR, PocketSphinxASR, WhisperLocalASR
from bench.backends.cache import Cache, digest
from bench.backends.judge import JudgeInput, OpenAIJudge, RuleJudge
from bench.backends.remote import (
    ConfigError,
    Endpoint,
    RateLimiter,
    RetryPolicy,
    TransientError,
    redact,
)
from bench.backends.runtime import Runtime
from bench.backends.style import OpenAIStyleCaptioner, ProsodyCaptioner
from bench.backends.systems import (
    AudioChatSystem,
    CheckpointSystem,
    PipelineSystem,
    ToplineSystem,
    WavFolderSystem,
)
from bench.backends.tts import EspeakTTS, OpenAITTS
from bench.data.audio import MAX_SECONDS, AudioError, file_sha256, load_audio
from bench.fingerprint import audio_changed, check_run_folder, fingerprint_id, run_fingerprint
from bench.registers import build_registers
from bench.schema import (
    JsonlAppender,
    Judgement,
    Query,
    StyleVariant,
    read_judgements,
    read_queries,
    write_jsonl,
)

OFFLINE_DIR = Path(__file__).parent / "data" / "offline"
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.score", description=__doc__,
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
                    help="checkpoint: speech models (glm-4-voice-tokenizer/, whisper-large-v3/, "
                         "audio_detokenizer/, vocoder/)")
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


def _endpoint(args: argparse.Namespace, role: str) -> Endpoint:
    return Endpoint(model=getattr(args, f"{role}_model"),
                    base_url=getattr(args, f"{role}_base_url"),
                    key_env=getattr(args, f"{role}_key_env"), timeout_s=args.timeout)


def build_backends(args: argparse.Namespace, runtime: Runtime):
    """(system, asr, style, judge) as the flags ask; ConfigError when one cannot be set up."""
    if args.asr == "openai":
        asr = OpenAIASR(_endpoint(args, "asr"), runtime)
    elif args.asr == "whisper-local":
        if not args.asr_checkpoint:
            raise ConfigError("--asr whisper-local needs --asr-checkpoint PATH.pt")
        asr = WhisperLocalASR(args.asr_checkpoint, runtime)
    else:
        asr = PocketSphinxASR(runtime)
    style = (OpenAIStyleCaptioner(_endpoint(args, "style"), runtime) if args.style == "openai"
             else ProsodyCaptioner(runtime))
    judge = (OpenAIJudge(_endpoint(args, "judge"), runtime, args.judge_reasks)
             if args.judge == "openai" else RuleJudge())
    if args.system == "checkpoint":
        system = CheckpointSystem(args.system_path, args.system_speech, runtime,
                                  seed=args.system_seed,
                                  max_new_tokens=args.system_max_new_tokens)
    elif args.system == "wavdir":
        system = WavFolderSystem(args.system_path)
    elif args.system == "audio-chat":
        system = AudioChatSystem(_endpoint(args, "system"), runtime, args.system_voice,
                                 args.system_prompt)
    else:
        tts = (OpenAITTS(_endpoint(args, "tts"), runtime, args.tts_voice) if args.tts == "openai"
               else EspeakTTS(runtime))
        chat = _endpoint(args, "chat")
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


def score_item(query: Query, style: StyleVariant, backends, runtime: Runtime,
               run_info: dict) -> Judgement:
    """Run one item end to end; any failure becomes an error on this item only."""
    system, asr, captioner, judge = backends
    base = dict(item_id=query.item_id(style), query_id=query.id, style=style.name,
                dimension=query.dimension, split=query.split, system=run_info["system_name"],
                backends=run_info["names"], heuristic=judge.heuristic,
                fingerprint=run_info["fingerprint"])
    t0 = time.monotonic()
    fields: dict = {}
    stage = "input_audio"
    with runtime.item() as stats:
        try:
            # Refuse a bad prompt before paying for a reply.
            load_audio(style.audio, max_seconds=run_info["max_seconds"])
            fields["prompt_sha256"] = file_sha256(style.audio)
            stage = "asr"
            fields["input_transcript"] = asr.transcribe(style.audio)
            if not fields["input_transcript"].strip():
                stage = "input_audio"
                raise AudioError(f"{style.audio}: no speech recognised in the prompt "
                                 f"({asr.name}); a reply to it cannot be judged")
            stage = "system"
            out = system.respond(query, style)
            fields["reply_audio"] = out.audio
            stage = "reply_audio"
            load_audio(out.audio, max_seconds=run_info["max_seconds"])
            fields["reply_sha256"] = file_sha256(out.audio)
            stage = "asr"
            fields["reply_transcript"] = asr.transcribe(out.audio)
            stage = "style"
            regs = run_info["registers"]
            cap_in = captioner.describe(style.audio, regs.prompt.get(style.speaker))
            cap_out = captioner.describe(out.audio, regs.reply)
            fields["input_caption"], fields["reply_caption"] = cap_in.caption, cap_out.caption
            stage = "judge"
            verdict = judge.judge(JudgeInput(
                scenario=query.scenario, reference=style.reference,
                contrast_reference=query.contrast(style).reference, reply_style=style.reply_style,
                user_transcript=fields["input_transcript"], user_caption=cap_in,
                reply_transcript=fields["reply_transcript"], reply_caption=cap_out))
            result = dict(score=verdict.score, reason=verdict.reason,
                          judge_version=verdict.version)
        except Exception as err:  # one item's failure must not end a weeks-long run
            msg = str(err) if isinstance(err, TransientError) else f"{type(err).__name__}: {err}"
            result = dict(score=None, error=redact(msg)[:1000], error_stage=stage,
                          transient=isinstance(err, TransientError))
    return Judgement(**base, **fields, **result, cost_usd=round(stats.cost_usd, 6),
                     latency_s=round(time.monotonic() - t0, 3), cached_calls=stats.cached,
                     paid_calls=stats.paid)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def default_system_name(system, args: argparse.Namespace) -> str:
    """--system-name, else one unique per system: a wav folder adds a digest of its path."""
    if args.system_name:
        return args.system_name
    if isinstance(system, WavFolderSystem):
        return f"{system.name}-{digest(str(system.dir.resolve()))[:6]}"
    return system.name


def plan(previous: list[Judgement], queries: list[Query], system, retry_failed: bool):
    """(items to score, kept judgements, ids re-scored because their audio changed)."""
    by_id = {q.item_id(s): q for q in queries for s in q.styles}
    kept, changed = {}, {}
    for j in previous:
        if j.item_id not in by_id or j.transient or (retry_failed and j.score is None):
            continue
        why = audio_changed(j, by_id[j.item_id], system)
        if why:
            changed[j.item_id] = why
        else:
            kept[j.item_id] = j
    items = [(q, s) for q in queries for s in q.styles if q.item_id(s) not in kept]
    return items, kept, changed


def _resume_message(items, kept: dict, changed: dict, results: Path) -> str:
    failed = sum(j.score is None for j in kept.values())
    msg = f"Scoring {len(items)} items -> {results}"
    if kept:
        msg += f"; {len(kept)} already done ({len(kept) - failed} scored, {failed} failed)"
    if failed:
        msg += "; failed items are kept as failures: add --retry-failed to try them again"
    if changed:
        msg += f"; {len(changed)} scored again because their audio changed " \
               f"(e.g. {next(iter(changed))}: {next(iter(changed.values()))})"
    return msg


def run(args: argparse.Namespace) -> list[Judgement]:
    every_query = read_queries(args.queries)
    queries = select(every_query, args)
    if args.prices and not args.prices.is_file():
        raise FileNotFoundError(f"--prices: price table not found: {args.prices}")
    prices = json.loads(args.prices.read_text()) if args.prices else None
    cache = Cache(args.cache)
    runtime = Runtime(cache, retry=RetryPolicy(args.max_attempts, args.backoff), prices=prices,
                      limiter=RateLimiter(args.max_rps))
    backends = build_backends(args, runtime)
    system, asr, style, judge = backends
    system_name = default_system_name(system, args)
    out = args.out or Path("runs/bench") / _slug(system_name)
    registers = build_registers(every_query, system, style)
    fp = run_fingerprint(system, asr, style, judge, system_name)
    fp["style"].update(registers.identity())
    moved = check_run_folder(out, fp, args.force_new)
    if moved:
        print(f"Earlier results of another set-up moved to {moved}", file=sys.stderr)
    runtime.open_ledger(out / "ledger.jsonl")
    names = {"system": system.name, "asr": asr.name, "style": style.name, "judge": judge.name}
    run_info = {"system_name": system_name, "names": names, "fingerprint": fingerprint_id(fp),
                "max_seconds": args.max_audio_seconds, "registers": registers}
    results_path = out / "judgements.jsonl"
    previous = read_judgements(results_path, tolerate_torn_tail=True) if results_path.exists() \
        else []
    items, kept, changed = plan(previous, queries, system, args.retry_failed)
    (out / "run.json").write_text(json.dumps({
        "queries": str(args.queries), "system_name": system_name, "backends": names,
        "fingerprint": run_info["fingerprint"], "started": time.time(),
        "items_total": 2 * len(queries), "items_resumed": len(kept),
        "items_rescored_audio_changed": len(changed),
        "heuristic_judge": judge.heuristic}, indent=2) + "\n")
    print(_resume_message(items, kept, changed, results_path), file=sys.stderr)
    writer = JsonlAppender(results_path)
    pool = ThreadPoolExecutor(max_workers=max(1, args.concurrency))
    stopped = 0
    try:
        with tqdm(total=len(items), disable=args.no_progress, file=sys.stderr, unit="item") as bar:
            futures = [pool.submit(score_item, q, s, backends, runtime, run_info)
                       for q, s in items]
            for fut in as_completed(futures):
                if fut.cancelled():
                    continue
                writer.append(fut.result())
                bar.update(1)
                if args.max_cost is not None and runtime.totals.cost_usd >= args.max_cost \
                        and not stopped:
                    # Spend guard: queued items are dropped, items in flight still finish.
                    stopped = sum(f.cancel() for f in futures)
    finally:
        # On Ctrl-C: drop queued items, let running ones finish (their calls get cached).
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        runtime.close()
    # Compact: one record per item (the last); this selection first, in query order. Records
    # outside the selection (an earlier run with other filters) are kept, never dropped.
    order = {q.item_id(s): i for i, q in enumerate(queries) for s in q.styles}
    everything = read_judgements(results_path, True)
    final = sorted((j for j in everything if j.item_id in order), key=lambda j: order[j.item_id])
    write_jsonl(results_path, final + [j for j in everything if j.item_id not in order])
    totals = runtime.totals
    summary = {"calls": totals.calls, "cached": totals.cached, "unpriced": totals.unpriced,
               "failed": totals.failed,
               "est_cost_usd": round(totals.cost_usd, 4), "by_backend": totals.by_backend}
    (out / "ledger_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report.write_report(final, out, plots=not args.no_plots, ledger=summary)
    print(report.render_markdown(final))
    if stopped:
        print(f"STOPPED: estimated spend ${totals.cost_usd:.4f} reached --max-cost; {stopped} "
              "items were not scored (not in the table). Re-run to continue.")
    print(f"\nScored by: system={names['system']}; ASR={names['asr']}; style={names['style']}; "
          f"judge={names['judge']}")
    if judge.heuristic:
        print("NOTE: HEURISTIC rule judge (offline, not an LLM): these numbers are NOT "
              "comparable with the paper's GPT-4.1 scores.")
    print(f"Calls this run: {totals.calls} ({totals.cached} from cache), "
          f"estimated cost ${totals.cost_usd:.4f}"
          + (f" (+{totals.unpriced} calls to models without a price; see --prices)"
             if totals.unpriced else "") + f". Report: {out / 'report.md'}")
    print(report.failure_summary(final, results_path), file=sys.stderr)
    cache.close()
    return final


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        final = run(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished items are saved; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 1 if any(j.score is None for j in final) else 0


if __name__ == "__main__":
    sys.exit(main())
