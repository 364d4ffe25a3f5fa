"""One benchmark item end to end: prompt speech -> system -> reply -> ASR, captions, judge."""

from __future__ import annotations

import time
from pathlib import Path

from bench.backends.batch import Deferred
from bench.backends.judge import CAPTION_ATTRIBUTES, JudgeInput
from bench.backends.remote import TransientError, redact
from bench.backends.runtime import Runtime
from bench.backends.style import StyleCaption
from bench.data.audio import AudioError, file_sha256, load_audio
from bench.data.schema import Judgement, Query, StyleVariant


def caption_words(caption: StyleCaption) -> dict[str, str | None]:
    """The caption's word per style attribute (emotion, speed, ...): what a judge reads from
    it, without the measured numbers that move a little whenever a register does."""
    return {k: getattr(caption, k) for k in CAPTION_ATTRIBUTES}


def _sha256_if_file(path: str) -> str:
    return file_sha256(path) if Path(path).is_file() else ""


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
            # Recorded even when the file is unusable: a fixed file is retried on resume.
            fields["prompt_sha256"] = _sha256_if_file(style.audio)
            # Refuse a bad prompt before paying for a reply.
            load_audio(style.audio, max_seconds=run_info["max_seconds"])
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
            fields["reply_sha256"] = _sha256_if_file(out.audio)
            load_audio(out.audio, max_seconds=run_info["max_seconds"])
            stage = "asr"
            fields["reply_transcript"] = asr.transcribe(out.audio)
            stage = "style"
            regs = run_info["registers"]
            cap_in = captioner.describe(style.audio, regs.prompt.get(style.speaker),
                                        transcript=fields["input_transcript"])
            cap_out = captioner.describe(out.audio, regs.reply,
                                         transcript=fields["reply_transcript"])
            fields["input_caption"], fields["reply_caption"] = cap_in.caption, cap_out.caption
            # What a resume compares: the item is judged again when these words would change.
            fields["input_caption_words"] = caption_words(cap_in)
            fields["reply_caption_words"] = caption_words(cap_out)
            stage = "judge"
            verdict = judge.judge(JudgeInput(
                scenario=query.scenario, reference=style.reference,
                contrast_reference=query.contrast(style).reference, reply_style=style.reply_style,
                user_transcript=fields["input_transcript"], user_caption=cap_in,
                reply_transcript=fields["reply_transcript"], reply_caption=cap_out))
            result = dict(score=verdict.score, reason=verdict.reason,
                          judge_version=verdict.version)
        except Deferred:
            raise  # its judge call went into a batch: scored after it (bench.backends.batch)
        except Exception as err:  # one item's failure must not end a weeks-long run
            msg = str(err) if isinstance(err, TransientError) else f"{type(err).__name__}: {err}"
            result = dict(score=None, error=redact(msg)[:1000], error_stage=stage,
                          transient=isinstance(err, TransientError))
    return Judgement(**base, **fields, **result, cost_usd=round(stats.cost_usd, 6),
                     latency_s=round(time.monotonic() - t0, 3), cached_calls=stats.cached,
                     paid_calls=stats.paid)
