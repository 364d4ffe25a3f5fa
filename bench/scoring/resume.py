"""What a resumed run scores again: the items a change touches, nothing else.

A judgement already in the results folder is kept unless
- its prompt or reply audio changed (sha256). This holds for a failed item too: its
  digests are recorded wherever the file existed, so a fixed or newly supplied file is
  retried without --retry-failed;
- the words its captions would get now (emotion, speed, volume, pitch, gender, age)
  differ from the recorded ones. The prosody captioner reads pitch and speed against a
  speaker register, a median over many files (all of a speaker's prompts; all files of
  a reply folder), which moves a little when one of them changes. Every kept item is
  captioned again (measurements are cached by content: local and cheap); captions are
  banded, so most keep their words and only those that change are judged again. The
  measured numbers in a caption's text may move without a new judgement.
- it failed with a transient error (always tried again), or permanently and
  --retry-failed is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.backends.systems import ReplyError, WavFolderSystem
from bench.data.audio import file_sha256
from bench.data.schema import Judgement, Query, StyleVariant
from bench.scoring.item import caption_words
from bench.scoring.registers import Registers

SHOWN = 5  # changed items named in the resume message; run.json lists them all


@dataclass
class ResumePlan:
    items: list[tuple[Query, StyleVariant]]  # to score now, in query order
    kept: dict[str, Judgement]  # item id -> its earlier judgement, kept as it is
    rescored: dict[str, str] = field(default_factory=dict)  # item id -> why scored again


def _sha256_now(path: str | None) -> str:
    return file_sha256(path) if path and Path(path).is_file() else ""


def audio_changed(j: Judgement, query: Query, style: StyleVariant, system) -> str | None:
    """Why this item must be scored again because its audio changed, or None."""
    failed = j.score is None
    prompt_now = _sha256_now(style.audio)
    # A scored item whose prompt file went away keeps its score: there is nothing to redo.
    if prompt_now and prompt_now != j.prompt_sha256:
        return "prompt audio changed" + (" (it had failed)" if failed else "")
    if not isinstance(system, WavFolderSystem):
        return None  # remote replies live in the content-addressed cache, nobody edits them
    if failed and j.reply_audio is None and j.error_stage != "system":
        return None  # it failed before asking for a reply: the reply file played no part
    try:
        now = system.respond(query, style).audio
    except ReplyError:
        return None if failed else "reply file removed"
    if now != j.reply_audio or _sha256_now(now) != j.reply_sha256:
        return "reply audio changed" + (" (it had failed)" if failed else "")
    return None


def caption_changed(j: Judgement, style: StyleVariant, captioner,
                    registers: Registers) -> str | None:
    """Why this scored item must be judged again because its caption words would change
    (its speaker's or its reply folder's register moved), or None."""
    if not hasattr(captioner, "measure"):
        return None  # a remote captioner hears the clip alone: no register shapes its words
    sides = [("prompt", style.audio, registers.prompt.get(style.speaker), j.input_transcript,
              j.input_caption_words)]
    if j.reply_audio and Path(j.reply_audio).is_file():
        sides.append(("reply", j.reply_audio, registers.reply, j.reply_transcript,
                      j.reply_caption_words))
    for side, path, register, transcript, recorded in sides:
        try:
            now = caption_words(captioner.describe(path, register, transcript=transcript))
        except Exception as err:  # the new run will record the failure on this item
            return f"{side} caption cannot be made again ({type(err).__name__}: {err})"
        if now != recorded:
            diff = ", ".join(f"{k} {recorded.get(k)} -> {v}" for k, v in now.items()
                             if recorded.get(k) != v)
            return f"{side} caption words changed ({diff})"
    return None


def plan(previous: list[Judgement], queries: list[Query], system, captioner,
         registers: Registers, retry_failed: bool) -> ResumePlan:
    """Split the selected items into those kept from `previous` and those to score now."""
    by_id = {q.item_id(s): (q, s) for q in queries for s in q.styles}
    kept, rescored = {}, {}
    for j in previous:
        if j.item_id not in by_id or j.transient:
            continue
        query, style = by_id[j.item_id]
        why = audio_changed(j, query, style, system)
        if why is None and j.score is not None:
            why = caption_changed(j, style, captioner, registers)
        if why:
            rescored[j.item_id] = why
        elif not (retry_failed and j.score is None):
            kept[j.item_id] = j
    items = [(q, s) for q in queries for s in q.styles if q.item_id(s) not in kept]
    in_order = {i: rescored[i] for i in by_id if i in rescored}  # query order, as reported
    return ResumePlan(items, kept, in_order)


def resume_message(p: ResumePlan, results: Path) -> str:
    """One line on stderr: what is scored now, what is kept, what is scored again and why."""
    failed = sum(j.score is None for j in p.kept.values())
    msg = f"Scoring {len(p.items)} items -> {results}"
    if p.kept:
        msg += f"; {len(p.kept)} already done ({len(p.kept) - failed} scored, {failed} failed)"
    if failed:
        msg += "; failed items are kept as failures: add --retry-failed to try them again"
    if p.rescored:
        shown = "; ".join(f"{i}: {why}" for i, why in list(p.rescored.items())[:SHOWN])
        more = len(p.rescored) - SHOWN
        msg += (f"; {len(p.rescored)} scored again because what they were scored from "
                f"changed: {shown}" + (f"; and {more} more (run.json)" if more > 0 else ""))
    return msg
