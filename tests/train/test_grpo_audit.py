"""Reward audits during GRPO: logged at step 0 and every K steps on the same held-out
prompts; a planted divergence (the judge's score falls while the reward model's does
not) makes the rule warn, stop, or roll back to the best-judged checkpoint; audits off
change nothing. Tiny runs: a fresh tiny policy (also the reward model), toy prompts."""

import contextlib
import io
import json

import jax
import numpy as np
import pytest
from flax import nnx
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs import grpo as grpo_configs
from paras2s_jax.checkpoint.orbax_io import restore_model, save_model
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.policy import KimiAudioPolicy
from paras2s_jax.toyworld.demos import read_queries, write_toy_data
from paras2s_jax.train import grpo_audit
from paras2s_jax.train.grpo_stage import run_grpo
from paras2s_jax.train.reward_stage import write_view

PROMPTS, SAMPLES = 2, 2  # per audit: 4 judge calls


class PlantedJudge:
    """A judge that gives every reply of the k-th audit `scores[k]` (the last one after),
    recording which prompts it judged; each call costs a cent."""

    name = "planted"

    def __init__(self, pool: list[dict], scores: list[float]):
        self.pool, self.scores, self.seen, self.prepared = pool, scores, [], []
        self.cost_usd = 0.0

    def prepare(self, replies):
        self.prepared.append([record["id"] for record, _, _ in replies])

    def query_records(self, whisper_features: bool) -> list[dict]:
        return self.pool

    def __call__(self, record, text, audio):
        k = len(self.seen) // (PROMPTS * SAMPLES)
        self.seen.append(record["id"])
        self.cost_usd += 0.01
        return self.scores[min(k, len(self.scores) - 1)], "planted"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy data and a reward model (a fresh tiny model, as the fresh policy)."""
    root = tmp_path_factory.mktemp("audit_world")
    paths = write_toy_data(root / "toy")
    rm = root / "reward_model"
    save_model(rm, KimiAudio(tiny(), rngs=nnx.Rngs(0)))
    write_view(rm, "audio")
    return {"toy": root / "toy", "rm": rm,
            "pool": [rec for rec, _ in read_queries(paths["queries"])]}


def _cfg(world, workdir, steps, **audit):
    c = grpo_configs.get_config("toy")
    c.workdir, c.init.source = str(workdir), "fresh"
    c.reward.path, c.toy.data_dir = str(world["rm"]), str(world["toy"])
    c.grpo.group_size, c.grpo.query_batch = 2, 2
    c.grpo.sampling.max_new_tokens = 8
    c.optimizer.lr, c.optimizer.warmup_steps, c.optimizer.decay_steps = 1e-2, 0, 10
    c.train.total_steps, c.train.progress = steps, False
    c.checkpoint.keep_last = 10
    c.audit.prompts, c.audit.samples_per_prompt = PROMPTS, SAMPLES
    c.audit.max_gap = c.audit.min_judge_drop = 0.0
    for k, v in audit.items():
        setattr(c.audit, k, v)
    return c


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _params(step_dir):
    return jax.tree.leaves(nnx.state(restore_model(str(step_dir)), nnx.Param))


def _same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def rollback_run(world, tmp_path_factory):
    """Audits at 0, 2, 4, 6, 8; the judge says 3, 4 (best), 3, 1 (diverged), 3."""
    work = tmp_path_factory.mktemp("rollback")
    judge = PlantedJudge(world["pool"], [3, 4, 3, 1, 3])
    cfg = _cfg(world, work, 8, every=2, rule="rollback", min_judge_drop=1.5)
    results = run_grpo(cfg, judge=judge)
    return {"work": work, "judge": judge, "results": results}


def test_audits_are_logged_at_step_0_and_every_k_on_the_same_held_out_prompts(
        rollback_run, world):
    work, judge = rollback_run["work"], rollback_run["judge"]
    audits = [m for m in _lines(work / "metrics.jsonl") if "audit/judge_mean" in m]
    assert [m["step"] for m in audits] == [0, 2, 4, 6, 8]
    assert [m["audit/judge_mean"] for m in audits] == [3, 4, 3, 1, 3]
    for m in audits:
        assert m["audit/gap"] == pytest.approx(m["audit/rm_mean"] - m["audit/judge_mean"])
        assert 1 <= m["audit/rm_mean"] <= 5 and "audit/pearson" in m
        assert m["audit/cost_usd"] == pytest.approx(0.01 * PROMPTS * SAMPLES)
    assert audits[-1]["audit/cost_usd_total"] == pytest.approx(0.05 * PROMPTS * SAMPLES)
    assert [m["audit/judge_best"] for m in audits] == [3, 4, 4, 4, 4]
    per_audit = [judge.seen[i:i + PROMPTS * SAMPLES]
                 for i in range(0, len(judge.seen), PROMPTS * SAMPLES)]
    assert len(per_audit) == 5 and all(p == per_audit[0] for p in per_audit)
    assert judge.prepared == per_audit  # each audit's replies handed over before judging
    held_out = {r["id"] for r in world["pool"]}
    assert set(per_audit[0]) <= held_out and len(set(per_audit[0])) == PROMPTS
    tb = EventAccumulator(str(work / "tb"))
    tb.Reload()
    for name in ("rm_mean", "judge_mean", "gap", "pearson", "judge_best"):
        assert [e.step for e in tb.Scalars(f"audit/{name}")] == [0, 2, 4, 6, 8]
    assert [e.value for e in tb.Scalars("audit/judge_mean")] == [3, 4, 3, 1, 3]
    records = _lines(work / grpo_audit.AUDIT_FILE)
    assert [r["step"] for r in records] == [0, 2, 4, 6, 8]
    assert records[-1]["judge_calls_total"] == 5 * PROMPTS * SAMPLES
    assert rollback_run["results"]["audit_judge_calls"] == 5 * PROMPTS * SAMPLES


def test_a_planted_divergence_rolls_back_to_the_best_judged_checkpoint(rollback_run, capsys):
    work, results = rollback_run["work"], rollback_run["results"]
    records = _lines(work / grpo_audit.AUDIT_FILE)
    assert [r["action"] for r in records] == ["", "", "", "rollback", ""]
    assert "min_judge_drop=1.5" in records[3]["reason"]
    ckpts = work / "checkpoints"
    best, diverged_before, restored, after = (_params(ckpts / str(s)) for s in (2, 4, 6, 8))
    assert _same(restored, best)  # step 6 holds the best-judged (step 2) policy
    assert not _same(best, diverged_before)  # ... not the latest one saved before it
    assert not _same(restored, after)  # and training went on from there
    assert results["audit_rollbacks"] == 1 and results["audit_judge_best_step"] == 2
    assert "audit_stopped_at" not in results


@pytest.mark.slow
def test_rollback_is_said_in_the_log(world, tmp_path, capsys):
    judge = PlantedJudge(world["pool"], [4, 1])
    cfg = _cfg(world, tmp_path, 2, every=1, rule="rollback", min_judge_drop=1.0,
               max_rollbacks=1)
    results = run_grpo(cfg, judge=judge)
    out = capsys.readouterr().out
    assert "audit at step 1: judge mean 1.000 fell 3.000 below the best audit's 4.000" in out
    assert "rolling back to step 0" in out
    # The second firing is past max_rollbacks: the run stops instead.
    assert "audit at step 2:" in out and "config.audit.max_rollbacks=1 reached" in out
    assert results["audit_rollbacks"] == 1 and results["audit_stopped_at"] == 2


@pytest.fixture(scope="module")
def warn_run(world, tmp_path_factory):
    """Audits at 0, 1, 2 under "warn" with patience 2; the judge says 5, then 1."""
    work = tmp_path_factory.mktemp("warn")
    cfg = _cfg(world, work, 2, every=1, rule="warn", max_gap=0.1, patience=2)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        results = run_grpo(cfg, judge=PlantedJudge(world["pool"], [5, 1]))
    return {"work": work, "results": results, "out": out.getvalue()}


def test_warn_waits_for_patience_and_trains_on(warn_run):
    work, out = warn_run["work"], warn_run["out"]
    records = _lines(work / grpo_audit.AUDIT_FILE)
    assert [bool(r["reason"]) for r in records] == [False, True, True]
    assert [r["action"] for r in records] == ["", "", "warn"]
    assert "audit at step 2: RM mean - judge mean" in out and "warning only" in out
    assert "audit at step 1:" not in out
    assert "audit_stopped_at" not in warn_run["results"]
    assert [m["step"] for m in _lines(work / "metrics.jsonl") if "loss" in m] == [1, 2]


def test_audits_off_sample_and_judge_nothing_and_train_the_same_policy(
        world, warn_run, tmp_path):
    calls = []
    sample = KimiAudioPolicy.sample

    def counted(*args, **kwargs):
        calls.append(1)
        return sample(*args, **kwargs)

    quiet = PlantedJudge(world["pool"], [1])
    cfg = _cfg(world, tmp_path, 2, every=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KimiAudioPolicy, "sample", counted)
        off = run_grpo(cfg, judge=quiet)
    assert len(calls) == 2 and quiet.seen == []  # one rollout per step, no audit
    assert not (tmp_path / grpo_audit.AUDIT_FILE).exists()
    assert not any(k.startswith("audit") for k in off)
    assert not any("audit/judge_mean" in m for m in _lines(tmp_path / "metrics.jsonl"))
    # Audits draw their own keys: the policy trains exactly as with audits on.
    assert _same(_params(tmp_path / "checkpoints" / "2"),
                 _params(warn_run["work"] / "checkpoints" / "2"))


@pytest.mark.slow
def test_stop_saves_and_stops_and_a_rerun_resumes_with_the_audit_history(
        world, tmp_path, capsys):
    cfg = _cfg(world, tmp_path, 3, every=1, rule="stop", min_judge_drop=1.0)
    results = run_grpo(cfg, judge=PlantedJudge(world["pool"], [5, 1]))
    assert "audit at step 1: judge mean 1.000" in capsys.readouterr().out
    assert results["audit_stopped_at"] == 1
    assert [m["step"] for m in _lines(tmp_path / "metrics.jsonl") if "loss" in m] == [1]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                  if p.name.isdigit()) == [0, 1]
    # Rerun: resumes at step 1 with the history (best 5 from step 0, 8 calls so far).
    results = run_grpo(cfg, judge=PlantedJudge(world["pool"], [3]))
    records = _lines(tmp_path / grpo_audit.AUDIT_FILE)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[2]["judge_best"] == 5 and records[2]["action"] == "stop"
    assert results["audit_judge_calls"] == 3 * PROMPTS * SAMPLES
    assert results["audit_stopped_at"] == 2


def test_audit_config_is_checked_and_needs_a_judge_outside_the_toy_world(world, tmp_path):
    cfg = _cfg(world, tmp_path, 2, every=1, rule="revert", max_gap=1.0)
    with pytest.raises(ValueError, match=r"config\.audit\.rule must be one of"):
        run_grpo(cfg)
    cfg = _cfg(world, tmp_path, 2, every=1)
    with pytest.raises(ValueError, match=r"config\.audit needs max_gap > 0 or min_judge_drop"):
        run_grpo(cfg)
    cfg = _cfg(world, tmp_path, 2, every=1, rule="rollback", max_gap=1.0)
    cfg.checkpoint.keep_best = 0
    with pytest.raises(ValueError, match=r"needs config\.checkpoint\.keep_best >= 1"):
        run_grpo(cfg)
    cfg = _cfg(world, tmp_path, 2, every=1, max_gap=1.0)
    cfg.toy.enabled = False
    with pytest.raises(ValueError, match=r"config\.audit\.every > 0 outside the toy world "
                                         r"needs a judge"):
        run_grpo(cfg)
    cfg = _cfg(world, tmp_path, 2, every=1, max_gap=1.0, scorer="gpt")
    with pytest.raises(ValueError, match=r"config\.audit\.scorer='gpt': use one of"):
        run_grpo(cfg)
    cfg = _cfg(world, tmp_path, 2, every=1, max_gap=1.0, scorer="bench")
    with pytest.raises(ValueError, match=r"config\.audit\.scorer='bench' needs the "
                                         r"benchmark's judge: run the stage through"):
        run_grpo(cfg)


def test_history_past_the_resumed_checkpoint_is_dropped(world, tmp_path):
    c = _cfg(world, tmp_path, 2, every=1, max_gap=1.0).audit
    (tmp_path / grpo_audit.AUDIT_FILE).write_text("".join(
        json.dumps({"step": s, "judge_mean": 3.0, "reason": "", "action": "",
                    "judge_calls": 4}) + "\n" for s in (0, 1, 2)))
    audits = grpo_audit.Audits(c, tmp_path, start=1)
    assert [r["step"] for r in audits.history] == [0, 1] and audits.judge_calls == 8
    assert audits.due(2) and not audits.due(1)
    assert len(_lines(tmp_path / grpo_audit.AUDIT_FILE)) == 2


class PricedJudge:
    """A judge with a running cost in dollars (as the benchmark's ledger keeps one)."""

    def __init__(self, price: float = 0.25):
        self.cost_usd, self.price, self.calls = 0.0, price, 0

    def __call__(self, record, text, audio):
        self.calls += 1
        self.cost_usd += self.price
        return 2 + len(audio) % 3, "priced"


REPLIES = [({"id": f"q{i}"}, [i], [i] * (i + 1)) for i in range(4)]


def test_process_zero_judges_and_counts_the_dollars(monkeypatch):
    broadcast = []
    monkeypatch.setattr(grpo_audit, "agreed", lambda v: broadcast.append(v.copy()) or v)
    judge = PricedJudge()
    judge.cost_usd = 1.0  # spent before this audit
    scores, cost = grpo_audit.judge_scores(judge, REPLIES)
    assert scores.tolist() == [3, 4, 2, 3] and cost == pytest.approx(1.0)
    assert judge.calls == 4 and len(broadcast) == 1  # one broadcast of scores and cost
    scores, cost = grpo_audit.judge_scores(lambda record, text, audio: (5, ""), REPLIES)
    assert scores.tolist() == [5] * 4 and cost is None  # a judge without a cost


def test_other_processes_never_call_the_judge(monkeypatch):
    monkeypatch.setattr(grpo_audit.jax, "process_index", lambda: 1)
    sent = np.asarray([4.0, 1.0, 5.0, 2.0, 0.75])  # process 0's scores and cost
    got = []
    monkeypatch.setattr(grpo_audit, "agreed", lambda v: got.append(v.copy()) or sent)
    judge = PricedJudge()
    scores, cost = grpo_audit.judge_scores(judge, REPLIES)
    assert judge.calls == 0 and judge.cost_usd == 0.0
    assert got[0].shape == (5,) and not got[0].any()  # its placeholder, of process 0's shape
    assert scores.tolist() == [4, 1, 5, 2] and cost == pytest.approx(0.75)


def test_audit_costs_are_recorded_logged_and_summed(world, tmp_path):
    c = _cfg(world, tmp_path, 2, every=1, max_gap=1.0).audit
    audits = grpo_audit.Audits(c, tmp_path, 0)
    first = audits.record(0, np.full(4, 3.0), np.full(4, 3.0), cost_usd=0.5)
    second = audits.record(1, np.full(4, 3.0), np.full(4, 3.0), cost_usd=0.25)
    assert (first["cost_usd"], second["cost_usd"], second["cost_usd_total"]) == (0.5, 0.25, 0.75)
    assert audits.metrics(second)["cost_usd_total"] == 0.75
    assert audits.results()["audit_cost_usd"] == 0.75
    resumed = grpo_audit.Audits(c, tmp_path, 1)  # read back from audits.jsonl
    assert resumed.cost_usd == 0.75
    (tmp_path / "toy").mkdir()
    toy = grpo_audit.Audits(c, tmp_path / "toy", 0)  # the toy judge keeps no cost
    rec = toy.record(0, np.full(4, 3.0), np.full(4, 3.0))
    assert "cost_usd" not in rec and "cost_usd" not in toy.metrics(rec)
    assert "audit_cost_usd" not in toy.results()
