"""The benchmark pipeline as Stage 2's distillation judge (the paper's 320k scored replies).

Each SFT reply's audio codes are spoken by the detokenizer, then scored exactly as a
`bench.score` item: ASR and style captions of prompt and reply, then the judge, with the
back ends, flags and SQLite cache of `bench.score` (`--config.distill.bench.args` holds
its command-line flags). Every call is cached by its inputs and the spoken reply is
deterministic for a seed, so a distillation run that is killed and restarted gets each
finished call from the cache and pays for nothing twice.

With `config.distill.batch` the judge calls of each distillation chunk go to the OpenAI
Batch API (bench.backends.batch) before its replies are scored: `prepare` transcribes and
captions the chunk's replies, sends the judge calls not yet cached as one batch (state in
`<--out, else the cache's folder>/distill-batch/<digest of the requests>/`) and waits; a
restarted run makes the same requests for the chunk and resumes polling that batch.

Scores: a reply without audio codes, or whose speech is unusable (silent, too short),
is a failed reply and scores 1 (as `bench.score --system-failures-as-1`); any other
failure (the judge server down after its retries, ...) stops the run, so no pair is
recorded with a made-up score.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

from bench.backends.batch import BatchCollector, Deferred, Polling, run_batch
from bench.backends.cache import Cache, digest
from bench.backends.judge import OpenAIJudge
from bench.backends.remote import RateLimiter, RetryPolicy
from bench.backends.runtime import Runtime
from bench.backends.systems import SystemOutput
from bench.data.audio import wav_bytes
from bench.data.schema import Query, StyleVariant, read_queries
from bench.scoring import options
from bench.scoring.fingerprint import fingerprint_id, run_fingerprint
from bench.scoring.item import score_item
from bench.scoring.registers import build_registers

FAILED_REPLY_SCORE = 1
SYSTEM_NAME = "sft-reply"


@dataclasses.dataclass(frozen=True)
class _SpokenReply:
    """A `System` whose reply is already spoken (the SFT model's, detokenised)."""

    name: str
    audio: str

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        return SystemOutput(self.audio)


class BenchJudge:
    """`distill`'s judge: (query record, reply text ids, reply codes) -> (score, rationale).

    argv: `bench.score` flags choosing the queries, cache and the ASR / style / judge back
    ends (e.g. "--queries Q.jsonl --judge openai --judge-model gpt-4.1"); the system flags
    are ignored. speech: a `paras2s_jax.speech.Speech` with a detokenizer.
    """

    def __init__(self, argv: Sequence[str], speech, seed: int = 0, batch: bool = False):
        self.args = options.parse_args(list(argv))
        if self.args.batch:
            raise ValueError("config.distill.bench.args: --batch is bench.score's switch; set "
                             "config.distill.batch=True instead")
        if speech.detokenizer is None:
            raise ValueError("the bench scorer needs a detokenizer: the speech folder has no "
                             "audio_detokenizer/ and vocoder/")
        self.speech, self.seed = speech, seed
        a = self.args
        self.runtime = Runtime(Cache(a.cache), retry=RetryPolicy(a.max_attempts, a.backoff),
                               limiter=RateLimiter(a.max_rps))
        _, self.asr, self.captioner, self.judge = options.build_backends(a, self.runtime)
        if batch and not isinstance(self.judge, OpenAIJudge):
            raise ValueError("config.distill.batch=True needs the OpenAI judge: add --judge "
                             "openai to config.distill.bench.args")
        self.batch = Polling(a.batch_poll, a.batch_timeout) if batch else None
        self._spoken: dict[tuple[int, ...], str] = {}  # a prepared chunk's reply audio
        self.name = f"bench/{self.judge.name}"
        every = read_queries(a.queries)
        self.items = {q.item_id(s): (q, s) for q in options.select(every, a) for s in q.styles}
        system = _SpokenReply(SYSTEM_NAME, "")
        names = {"system": SYSTEM_NAME, "asr": self.asr.name, "style": self.captioner.name,
                 "judge": self.judge.name}
        fingerprint = run_fingerprint(system, self.asr, self.captioner, self.judge, SYSTEM_NAME)
        # As bench.score: prompt pitch and speed are captioned against each speaker's register.
        self.run_info = {"system_name": SYSTEM_NAME, "names": names,
                         "fingerprint": fingerprint_id(fingerprint),
                         "max_seconds": a.max_audio_seconds,
                         "registers": build_registers(every, system, self.captioner)}

    @property
    def cost_usd(self) -> float:
        """Dollars of the calls made so far, from the runtime's cost ledger (cached answers
        cost nothing)."""
        return self.runtime.totals.cost_usd

    def query_records(self, whisper_features: bool) -> list[dict]:
        """One distillation query per benchmark item: its prompt speech as codes (and
        Whisper features when the model reads them), in the queries file's order."""
        records = []
        for item_id, (_, style) in self.items.items():
            heard = self.speech.encode(style.audio, features=whisper_features)
            rec = {"id": item_id, "prompt_audio": heard.codes.tolist()}
            if heard.features is not None:
                rec["whisper_features"] = heard.features
            records.append(rec)
        return records

    def _speak(self, codes: list[int]) -> str:
        """The reply's audio file in the cache's blobs (decoded once per prepared chunk)."""
        blob = self._spoken.pop(tuple(codes), None)
        if blob is None:
            wav = self.speech.decode(codes, seed=self.seed)
            blob = self.runtime.cache.put_blob(wav_bytes(wav, self.speech.output_rate))
        return blob

    def prepare(self, replies: Sequence[tuple[dict, list[int], list[int]]]) -> None:
        """With batch mode: everything up to the judge for a chunk's replies, then their
        judge calls not yet cached as one OpenAI batch, whose answers land in the cache."""
        if self.batch is None:
            return
        collector = BatchCollector(self.judge)
        self._spoken = {}
        for record, _, codes in replies:
            if not codes:
                continue
            blob = self._speak(codes)
            self._spoken[tuple(codes)] = blob
            backends = (_SpokenReply(SYSTEM_NAME, blob), self.asr, self.captioner, collector)
            try:
                score_item(*self.items[record["id"]], backends, self.runtime, self.run_info)
            except Deferred:
                pass  # its judge call is in collector.requests
        if collector.requests:
            folder = (self.args.out or self.args.cache.parent) / "distill-batch" / digest(
                sorted(collector.requests))
            run_batch(self.judge, list(collector.requests.values()), folder, self.batch)

    def __call__(self, record: dict, text: list[int], codes: list[int]) -> tuple[int, str]:
        query, style = self.items[record["id"]]
        if not codes:
            return FAILED_REPLY_SCORE, "failed reply: no audio codes"
        backends = (_SpokenReply(SYSTEM_NAME, self._speak(codes)), self.asr, self.captioner,
                    self.judge)
        verdict = score_item(query, style, backends, self.runtime, self.run_info)
        if verdict.score is not None:
            return int(verdict.score), verdict.reason
        if verdict.error_stage == "reply_audio":
            return FAILED_REPLY_SCORE, f"failed reply: {verdict.error}"
        raise RuntimeError(f"bench scoring of {record['id']} failed at {verdict.error_stage}: "
                           f"{verdict.error}")


def judge_from_config(cfg, section: str = "distill") -> BenchJudge:
    """The judge `config.<section>.bench` describes ("distill": the reward stage's
    distillation; "audit": GRPO's reward audits): its bench.score flags (`args`) and the
    speech models that speak each reply (`speech_dir`), seeded with `config.seed`; batch
    mode with `config.distill.batch` (distillation only: an audit waits for its scores)."""
    from paras2s_jax.speech import Speech

    bench = cfg[section].bench
    if not bench.speech_dir:
        raise ValueError(f"config.{section}.bench.speech_dir is empty: the bench judge speaks "
                         "each reply with the speech models there (glm-4-voice-tokenizer/, "
                         "audio_detokenizer/, vocoder/)")
    return BenchJudge(shlex.split(bench.args), Speech.load(bench.speech_dir), seed=cfg.seed,
                      batch=section == "distill" and cfg.distill.batch)
