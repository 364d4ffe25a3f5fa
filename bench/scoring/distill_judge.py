"""The benchmark pipeline as Stage 2's distillation judge (the paper's 320k scored replies).

Each SFT reply's audio codes are spoken by the detokenizer, then scored exactly as a
`bench.score` item: ASR and style captions of prompt and reply, then the judge, with the
back ends, flags and SQLite cache of `bench.score` (`--config.distill.bench.args` holds
its command-line flags). Every call is cached by its inputs and the spoken reply is
deterministic for a seed, so a distillation run that is killed and restarted gets each
finished call from the cache and pays for nothing twice.

Scores: a reply without audio codes, or whose speech is unusable (silent, too short),
is a failed reply and scores 1 (as `bench.score --system-failures-as-1`); any other
failure (the judge server down after its retries, ...) stops the run, so no pair is
recorded with a made-up score.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence

from bench.backends.cache import Cache
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

    def __init__(self, argv: Sequence[str], speech, seed: int = 0):
        self.args = options.parse_args(list(argv))
        if speech.detokenizer is None:
            raise ValueError("the bench scorer needs a detokenizer: the speech folder has no "
                             "audio_detokenizer/ and vocoder/")
        self.speech, self.seed = speech, seed
        a = self.args
        self.runtime = Runtime(Cache(a.cache), retry=RetryPolicy(a.max_attempts, a.backoff),
                               limiter=RateLimiter(a.max_rps))
        _, self.asr, self.captioner, self.judge = options.build_backends(a, self.runtime)
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

    def __call__(self, record: dict, text: list[int], codes: list[int]) -> tuple[int, str]:
        query, style = self.items[record["id"]]
        if not codes:
            return FAILED_REPLY_SCORE, "failed reply: no audio codes"
        wav = self.speech.decode(codes, seed=self.seed)
        blob = self.runtime.cache.put_blob(wav_bytes(wav, self.speech.output_rate))
        backends = (_SpokenReply(SYSTEM_NAME, blob), self.asr, self.captioner, self.judge)
        verdict = score_item(query, style, backends, self.runtime, self.run_info)
        if verdict.score is not None:
            return int(verdict.score), verdict.reason
        if verdict.error_stage == "reply_audio":
            return FAILED_REPLY_SCORE, f"failed reply: {verdict.error}"
        raise RuntimeError(f"bench scoring of {record['id']} failed at {verdict.error_stage}: "
                           f"{verdict.error}")


def judge_from_config(cfg) -> BenchJudge:
    """The judge `config.distill.bench` describes: its bench.score flags (`args`) and the
    speech models that speak each reply (`speech_dir`), seeded with `config.seed`."""
    from paras2s_jax.speech import Speech

    bench = cfg.distill.bench
    return BenchJudge(shlex.split(bench.args), Speech.load(bench.speech_dir), seed=cfg.seed)
