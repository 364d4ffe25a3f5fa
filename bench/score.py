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
    # Qwen2.5-Omni speaks with the token2wav and speaker presets of its checkpoint
    python -m bench.score --system checkpoint --system-path ckpt/omni

Every back-end call is cached in SQLite (--cache), results are appended durably to
<out>/judgements.jsonl, and re-running the same command resumes: finished items are
skipped and no paid call is repeated. Items that failed with retryable errors are
tried again on the next run; permanent failures with --retry-failed. A resume is refused
when the set-up changed (model, prompt, rubric, parser, captioner rules; see
fingerprint.json) unless --force-new. Only what changed is scored again: items whose
prompt or reply audio changed (a failed one too), and items whose caption words a moved
speaker register changes (bench.scoring.resume); run.json lists them with the reason.

The headline counts every failed item as 1 and says how many failed; the scored-items
mean (what the paper reports) stands beside it. Exit status: 0 all items scored, 1 some
failed (summary by stage on stderr), 2 bad set-up or input, 3 a --batch job that failed,
expired or is still pending after --batch-timeout (the same command resumes it).

With --batch (and --judge openai) the judge calls go to the OpenAI Batch API at half the
online price: ASR and captions of every item first, then one batch of the judge calls
not yet cached (<out>/batch/), then the items are scored from the cache. Same cache and
fingerprint as online: batch and online answers are interchangeable.

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
from bench.backends.batch import BatchCollector, BatchError, Deferred, Polling, run_batch
from bench.backends.cache import Cache
from bench.backends.remote import ConfigError, RateLimiter, RetryPolicy, redact
from bench.backends.runtime import Runtime
from bench.data.schema import (
    JsonlAppender,
    Judgement,
    read_judgements,
    read_queries,
    write_jsonl,
)
from bench.scoring import options
from bench.scoring.fingerprint import check_run_folder, fingerprint_id, run_fingerprint
from bench.scoring.item import score_item
from bench.scoring.registers import build_registers
from bench.scoring.resume import plan, resume_message


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """bench.score's flags (bench.scoring.options), with this command's help text."""
    return options.parse_args(argv, description=__doc__)


def run(args: argparse.Namespace) -> list[Judgement]:
    every_query = read_queries(args.queries)
    queries = options.select(every_query, args)
    if args.prices and not args.prices.is_file():
        raise FileNotFoundError(f"--prices: price table not found: {args.prices}")
    prices = json.loads(args.prices.read_text()) if args.prices else None
    cache = Cache(args.cache)
    runtime = Runtime(cache, retry=RetryPolicy(args.max_attempts, args.backoff), prices=prices,
                      limiter=RateLimiter(args.max_rps))
    backends = options.build_backends(args, runtime)
    system, asr, style, judge = backends
    system_name = options.default_system_name(system, args)
    out = args.out or Path("runs/bench") / options.slug(system_name)
    registers = build_registers(every_query, system, style)
    # Registers are not in the fingerprint: a moved register re-scores only the items whose
    # caption words it changes (bench.scoring.resume).
    fp = run_fingerprint(system, asr, style, judge, system_name)
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
    todo = plan(previous, queries, system, style, registers, args.retry_failed)
    (out / "run.json").write_text(json.dumps({
        "queries": str(args.queries), "system_name": system_name, "backends": names,
        "prompts": {role: str(b.prompt.source) for role, b in (("style", style), ("judge", judge))
                    if hasattr(b, "prompt")},
        "fingerprint": run_info["fingerprint"], "started": time.time(),
        "items_total": 2 * len(queries), "items_resumed": len(todo.kept),
        "items_rescored": todo.rescored, "registers": registers.as_dict(),
        "heuristic_judge": judge.heuristic}, indent=2) + "\n")
    print(resume_message(todo, results_path), file=sys.stderr)
    writer = JsonlAppender(results_path)
    pool = ThreadPoolExecutor(max_workers=max(1, args.concurrency))
    batches: list[dict] = []
    try:
        with tqdm(total=len(todo.items), disable=args.no_progress, file=sys.stderr,
                  unit="item") as bar:
            def score_all(items, backends):
                # After a batch its answers are paid and cached: the spend guard has had its say.
                return _score_all(items, backends, runtime, run_info, writer, bar, pool,
                                  None if batches else args.max_cost)

            items, stopped = todo.items, 0
            if args.batch:
                # First pass: everything up to the judge; judge calls not cached go into a batch.
                collector = BatchCollector(judge)
                items, stopped = score_all(items, (system, asr, style, collector))
                if stopped:
                    stopped += len(items)  # deferred to a batch never sent: not scored either
                elif items:
                    batches = run_batch(judge, list(collector.requests.values()),
                                        out / "batch", Polling(args.batch_poll,
                                                               args.batch_timeout))
            if not stopped:
                stopped = score_all(items, backends)[1]
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
    for b in batches:
        print(f"Judge answers from OpenAI batch {b['id']} ({b['status']}): {b['cached']} of "
              f"{b['count']} cached, {b['unusable']} unusable (re-asked online), {b['failed']} "
              f"failed (asked online); state: {out / 'batch' / 'state.json'}")
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


def _score_all(items, backends, runtime: Runtime, run_info: dict, writer: JsonlAppender, bar,
               pool: ThreadPoolExecutor, max_cost: float | None) -> tuple[list, int]:
    """Score `items` on `pool`, appending each judgement to `writer`. Returns the items whose
    judge call was deferred to a batch (in order) and how many the spend guard dropped."""
    futures = {pool.submit(score_item, q, s, backends, runtime, run_info): i
               for i, (q, s) in enumerate(items)}
    deferred, stopped = [], 0
    for fut in as_completed(futures):
        if fut.cancelled():
            continue
        try:
            writer.append(fut.result())
        except Deferred:
            deferred.append(futures[fut])
            continue
        bar.update(1)
        if max_cost is not None and runtime.totals.cost_usd >= max_cost and not stopped:
            # Spend guard: queued items are dropped, items in flight still finish.
            stopped = sum(f.cancel() for f in futures)
    return [items[i] for i in sorted(deferred)], stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        final = run(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    except BatchError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: finished items are saved; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 1 if any(j.score is None for j in final) else 0


if __name__ == "__main__":
    sys.exit(main())
