"""Stage 3 entry point: GRPO with the distilled reward model, KL to the SFT model.

Each step: take `grpo.query_batch` prompts, sample `grpo.group_size` replies each with
the current policy (jitted sampler), score them with the reward model, normalise the
rewards within each group, recompute the policy's ("old") and the frozen reference's
log-probabilities of the sampled tokens on the same mesh, then take
`grpo.updates_per_rollout` optimizer steps on the clipped dual-stream objective with the
k3 KL penalty (see `train/grpo.py`). The reference is the initial (SFT) policy.
The reward model reads the replies under the view it was trained with
(`reward.view`, checked against the record beside it). In the toy world every step also
has the integer toy judge score the same replies: logged beside the reward model's
statistics (`judge_*`), never trained on.
With `audit.every` > 0 the policy is audited before training and every `audit.every`
steps: its replies to fixed held-out prompts are scored by the reward model and the
judge, and `audit.rule` acts on a divergence (see `train/grpo_audit.py`).
With `data.whisper_features` (which must match what the SFT checkpoint and the reward
model were trained with) every forward reads the prompts' Whisper features, as SFT did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from paras2s_jax import sharding
from paras2s_jax.checkpoint.orbax_io import restore_model, save_model
from paras2s_jax.policy import PromptBatch, SpeechPolicy
from paras2s_jax.sampling import SampleOutput, SamplingConfig, sampling_from_settings
from paras2s_jax.train import grpo_audit, grpo_models, prompt_features, stages, trainer
from paras2s_jax.train.checkpointing import Checkpointer, abstract_like
from paras2s_jax.train.distill import DistillJudge, Judge, toy_judge
from paras2s_jax.train.grpo import STREAMS, group_advantages, group_spread
from paras2s_jax.train.grpo_update import (
    build_step,
    per_update_schedule,
    prompt_rows,
    sampling_config,
)
from paras2s_jax.train.hosts import agreed, host_value
from paras2s_jax.train.inputs import MissingInput, require
from paras2s_jax.train.metrics import MetricWriter
from paras2s_jax.train.reward_stage import read_view, score_token_ids
from paras2s_jax.train.rollout import judge_replies


def apply_length_cap(rewards: np.ndarray, finished: np.ndarray, batch: dict, policy: str,
                     penalty: float) -> np.ndarray:
    """Rewards after the length-cap policy for replies cut at `max_new_tokens`:
    "penalise" (reward := `penalty`; a listener hears the speech stop mid-reply),
    "mask" (no policy-gradient or KL tokens; the reward still counts in its group's
    statistics; the batch's masks change in place) or "keep"."""
    truncated = ~np.asarray(finished, bool)
    if policy == "penalise":
        return np.where(truncated, np.float32(penalty), rewards)
    if policy == "mask":
        for s in STREAMS:
            batch[f"{s}_mask"] = batch[f"{s}_mask"] & ~truncated[:, None]
    elif policy != "keep":
        raise ValueError(f"config.grpo.truncated must be 'penalise', 'mask' or 'keep', "
                         f"got {policy!r}")
    return rewards


def prompt_records(cfg: ml_collections.ConfigDict) -> tuple[list[dict], list[str]]:
    """The RL prompt records (toy world or `data.train_files`) and where each came from
    ("file:line", or the toy data directory), for error messages."""
    if cfg.toy.enabled:
        records = toy_prompts(cfg)
        return records, [f"config.toy.data_dir {cfg.toy.data_dir}"] * len(records)
    records, where = [], []
    for f in cfg.data.train_files:
        for number, line in enumerate(Path(f).read_text().splitlines(), 1):
            records.append(prompt_features.resolve(json.loads(line), f))
            where.append(f"{f}:{number}")
    return records, where


def check_prompt_lengths(records: list[dict], where: list[str], policy: SpeechPolicy,
                         max_prompt_len: int) -> None:
    """Refuse prompts longer than `config.data.max_prompt_len` tokens (the prompt columns
    `launch/plan.py` plans the rollout, log-prob, scoring and update memory for): one
    error naming the first such record, where it came from and how many there are."""
    over = [(i, n) for i, n in enumerate(policy.prompt_length(r) for r in records)
            if n > max_prompt_len]
    if over:
        i, n = over[0]
        name = records[i].get("id", records[i].get("query_id", "?"))
        raise ValueError(
            f"{where[i]}: prompt {name!r} is {n} tokens, over config.data.max_prompt_len="
            f"{max_prompt_len} ({len(over)} of {len(records)} prompts are); drop or shorten "
            "them, or raise the cap and check with launch/plan.py that GRPO still fits")


def toy_prompts(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Unlabelled speech prompts: the toy world's paralinguistic training prompts
    (replies unused; general-ability requests are never RL prompts)."""
    from paras2s_jax.toyworld.demos import rl_prompts

    made_by = cfg.init.get("made_by", "") or "python launch/demo.py"
    data_dir = require(cfg.toy.data_dir, "config.toy.data_dir", made_by)
    records = rl_prompts(data_dir)
    if not records:
        raise MissingInput(f"config.toy.data_dir {data_dir} has no train-*.jsonl shards; "
                           f"create them with: {made_by}")
    return records


def _global(batch: dict, mesh) -> dict:
    """The rollout batch (the same on every process) as global arrays split by rows."""
    return {k: sharding.replicated_batch_to_global(np.asarray(v), mesh)
            for k, v in batch.items()}


# (prompts, sampler output, replies per prompt) -> one reward per reply row
ScoreFn = Callable[[PromptBatch, SampleOutput, int], np.ndarray]
JudgeFn = Callable[[list[dict], SampleOutput], np.ndarray]  # (prompt records, replies)


def rollout_step(cfg: ml_collections.ConfigDict, run: trainer.Run, picks: list[dict],
                 key: jax.Array, sampling: SamplingConfig, score: ScoreFn,
                 judge: JudgeFn | None = None) -> tuple[dict, dict[str, float]]:
    """Sample G replies for each record of `picks` with the run's policy, score them with
    `score(prompts, sampler output, G)` (one reward per reply row, rows grouped G per
    prompt) and return the rollout batch with its group advantages, plus rollout
    diagnostics. With `data.whisper_features` the records' features go everywhere. With
    `judge(picks, sampler output)` the same replies are also judged, under the same
    length-cap policy, and its group statistics are logged as `judge_*` (not trained on)."""
    policy = run.policy
    prompts = policy.prompt_batch(picks, sampling.prompt_bucket, cfg.data.whisper_features)
    if cfg.grpo.query_batch % cfg.grpo.rollout_micro_batches:
        raise ValueError(f"config.grpo.rollout_micro_batches={cfg.grpo.rollout_micro_batches}"
                         f" does not divide the {cfg.grpo.query_batch} prompts of a step "
                         "(config.grpo.query_batch)")
    # Replies come back whole on every process (they may span processes).
    out = policy.sample(run.model(), prompts, key, sampling, cfg.grpo.rollout_micro_batches)
    batch = policy.rollout_batch(prompts, out, cfg.grpo.group_size)
    rewards = apply_length_cap(np.asarray(score(prompts, out, cfg.grpo.group_size),
                                          np.float32), out.finished,
                               batch, cfg.grpo.truncated, cfg.grpo.truncated_reward)
    adv, _ = group_advantages(rewards, cfg.grpo.group_size)
    batch["advantages"] = np.asarray(adv)
    diag = {"reward_mean": float(np.mean(rewards)), "reward_std": float(np.std(rewards)),
            **group_spread(rewards, cfg.grpo.group_size),
            "truncated_fraction": float(np.mean(~np.asarray(out.finished, bool)))}
    if judge is not None:
        judged = apply_length_cap(np.asarray(judge(picks, out), np.float32), out.finished,
                                  batch, cfg.grpo.truncated, cfg.grpo.truncated_reward)
        diag["judge_reward_mean"] = float(np.mean(judged))
        diag.update({f"judge_{k}": v for k, v in group_spread(judged, cfg.grpo.group_size)
                     .items()})
    for s in policy.streams:  # KL and entropy per stream come from the updates' metrics
        diag[f"reply_length_{s}"] = float(batch[f"{s}_mask"].sum(axis=1).mean())
    return batch, diag


# Mean gaps: a float32 reference forward on CPU matches the sampler to ~1e-7
# (tests/train/test_whisper_rl.py); one that misses the prompt's Whisper features is off by
# several 1e-2 on the same test model. bf16 rounding alone can reach the limit, so
# bf16 runs only log the gap.
FLOAT32_SAMPLER_GAP_LIMIT = 1e-2


def sampler_gap(batch: dict, logprobs: dict) -> dict[str, float]:
    """`sampler_gap_{s}`: mean |log-prob - the sampler's| over each stream's chosen
    tokens. 0 up to float error when `logprobs` are the sampling policy's: the reference's
    at a run's first update (policy = reference), where a larger gap means the two
    forwards read different inputs (e.g. one without the prompt's Whisper features)."""
    gaps = {}
    for s in logprobs:
        mask = np.asarray(batch[f"{s}_mask"], bool)
        diff = np.abs(np.asarray(logprobs[s], np.float64) - batch[f"sampler_{s}_logprobs"])
        gaps[f"sampler_gap_{s}"] = float(diff[mask].mean()) if mask.any() else 0.0
    return gaps


def check_first_update(gaps: dict[str, float], compute_dtype) -> None:
    """Refuse a float32 run whose reference (= the policy at the first update) does not
    reproduce the sampler's log-probabilities (`FLOAT32_SAMPLER_GAP_LIMIT`)."""
    if jnp.dtype(compute_dtype) != jnp.float32:
        return
    for name, gap in gaps.items():
        if gap > FLOAT32_SAMPLER_GAP_LIMIT:
            raise RuntimeError(
                f"{name} = {gap:.3g} at the first update: the reference forward, which is "
                "the sampling policy there, does not reproduce the sampler's log-"
                "probabilities. Its inputs differ from the sampler's (prompt Whisper "
                "features, attention mask, temperature) and the KL penalty would be "
                "measured against another model.")


def update_step(cfg: ml_collections.ConfigDict, run: trainer.Run, batch: dict,
                step_fn: sharding.mesh_jit, log_probs: sharding.mesh_jit,
                reference) -> dict[str, float]:
    """Reference (and, for mu > 1, old) log-probs of the rollout, then mu optimizer
    updates on it; `batch` gains those fields; returns the updates' averaged metrics,
    and at a run's first step (policy = reference, so its first update's `kl_*` are 0)
    the reference's `sampler_gap` (checked in float32: `check_first_update`)."""
    first = int(host_value(run.state["step"])) == 0
    inputs = _global(batch, run.mesh)
    ref = log_probs(reference, run.rest, inputs)
    # "Old" log-probs only when several updates share the rollout (mu > 1).
    old = (log_probs(run.state["params"], run.rest, inputs)
           if cfg.grpo.updates_per_rollout > 1 else None)
    for s in STREAMS:
        batch[f"ref_{s}_logprobs"] = host_value(ref[s])
        if old is not None:
            batch[f"old_{s}_logprobs"] = host_value(old[s])
    inputs = _global(batch, run.mesh)
    history = []  # metrics of the mu updates, averaged
    for _ in range(cfg.grpo.updates_per_rollout):
        run.state, metrics = step_fn(run.state, inputs, run.rest)
        history.append(jax.device_get(metrics))
    result = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
    if first:
        gaps = sampler_gap(batch, {s: batch[f"ref_{s}_logprobs"] for s in STREAMS})
        check_first_update(gaps, run.model_config.compute_dtype)
        result.update(gaps)
    return result


def audit_prompts(cfg: ml_collections.ConfigDict, judge: DistillJudge | None) -> list[dict]:
    """The fixed held-out audit prompts (`audit.prompts` of them, drawn with `audit.seed`):
    from the judge's own query records, else (toy world) the toy data's held-out eval
    queries, never the RL prompts."""
    scorers = ("toy", "bench")
    if cfg.audit.scorer not in scorers:
        raise ValueError(f"config.audit.scorer={cfg.audit.scorer!r}: use one of {scorers}")
    if cfg.audit.scorer == "bench" and judge is None:
        raise ValueError("config.audit.scorer='bench' needs the benchmark's judge: run the "
                         "stage through launch/train.py, which builds it from "
                         "config.audit.bench")
    if judge is not None:
        pool = judge.query_records(cfg.data.whisper_features)
    elif cfg.toy.enabled:
        from paras2s_jax.toyworld.demos import read_queries

        made_by = cfg.init.get("made_by", "") or "python launch/demo.py"
        data_dir = require(cfg.toy.data_dir, "config.toy.data_dir", made_by)
        pool = [rec for rec, _ in read_queries(Path(data_dir) / "eval-queries.jsonl")]
    else:
        raise ValueError("config.audit.every > 0 outside the toy world needs a judge: "
                         "run_grpo(cfg, judge=...) with a DistillJudge (its query records "
                         "are the audit prompts); set config.audit.every=0 to run without")
    return grpo_audit.fixed_sample(pool, cfg.audit)


def audit_replies(cfg: ml_collections.ConfigDict, run: trainer.Run, records: list[dict],
                  key: jax.Array, score: ScoreFn,
                  judge_fn: Judge) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(RM scores, judge scores, the judge calls' dollars or None) of
    `audit.samples_per_prompt` replies of the current policy to each of `records`, as
    scored (no length-cap policy); process 0 judges (`grpo_audit.judge_scores`)."""
    n, policy = cfg.audit.samples_per_prompt, run.policy
    sampling = sampling_from_settings(cfg.grpo.sampling, n)
    prompts = policy.prompt_batch(records, sampling.prompt_bucket, cfg.data.whisper_features)
    out = policy.sample(run.model(), prompts, key, sampling)
    rm = np.asarray(score(prompts, out, n), np.float32)
    # (prompt record, reply text, reply audio) per row; row r answers prompt r // n
    replies = [(records[row // n], *reply) for row, reply in enumerate(policy.replies(out))]
    return (rm, *grpo_audit.judge_scores(judge_fn, replies))


def audit_step(cfg: ml_collections.ConfigDict, run: trainer.Run, audits: grpo_audit.Audits,
               step: int,
               measure: Callable[[jax.Array], tuple[np.ndarray, np.ndarray, float | None]],
               ckpt: Checkpointer, writer: MetricWriter) -> str:
    """Audit the policy after `step` updates, log it (TensorBoard, metrics.jsonl,
    audits.jsonl), checkpoint it ranked by its judge mean, and act on `audit.rule`:
    a rollback restores the best-judged checkpoint and saves that state as `step`.
    Returns the action ("", "warn", "stop" or "rollback")."""
    rec = audits.record(step, *measure(jax.random.fold_in(jax.random.key(cfg.audit.seed),
                                                          step)))
    values = audits.metrics(rec)
    writer.scalars(step, values, prefix="audit")
    if jax.process_index() == 0:
        with open(Path(cfg.workdir) / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **{f"audit/{k}": v for k, v in values.items()}})
                    + "\n")
    meta = {"stage": "grpo", **prompt_features.meta(cfg)}
    target = None
    if rec["action"] == "rollback":
        ckpt.wait()
        target = ckpt.best_step()
        run.state, _ = ckpt.restore(target, abstract_like(run.state, run.shardings))
        ckpt.save(step, run.state, None, model_config=run.model_config, meta=meta)
    else:
        ckpt.save(step, run.state, None, model_config=run.model_config, meta=meta,
                  metrics={grpo_audit.METRIC: rec["judge_mean"]})
    if rec["action"]:
        writer.text(audits.message(rec, target))
    return rec["action"]


@stages.register("grpo")
def run_grpo(cfg: ml_collections.ConfigDict, judge: DistillJudge | None = None) -> dict:
    """Run GRPO from `cfg.init` (the SFT checkpoint); returns the last metrics.
    `judge`: the audits' judge and prompt source (default: the toy judge and the toy
    data's held-out queries; required for audits outside the toy world)."""
    workdir = Path(cfg.workdir)
    held_out = []  # the audits' fixed prompts
    if cfg.audit.every:  # refused before anything is built
        grpo_audit.check_config(cfg)
        held_out = audit_prompts(cfg, judge)
    if cfg.reward.path and Path(cfg.reward.path).exists():  # before anything is built
        read_view(cfg.reward.path, cfg.reward.view)  # scored as it was trained, or refused
    records, where = prompt_records(cfg)
    if len(records) < cfg.grpo.query_batch:
        raise ValueError(f"config.grpo.query_batch={cfg.grpo.query_batch} exceeds the "
                         f"{len(records)} prompts")
    adapters = grpo_models.policy_adapters(cfg)
    sampling = sampling_config(cfg)  # refuses greedy rollouts before anything is built
    prompt_features.check_init(cfg)
    run = trainer.setup(per_update_schedule(cfg), adapters=adapters)
    rm_path = require(cfg.reward.path, "config.reward.path (the reward model)",
                      cfg.reward.get("made_by", "") or "python launch/demo.py")
    prompt_features.check_trained_with(cfg, rm_path, "the reward model")
    mc, policy = run.model_config, run.policy
    check_prompt_lengths(records, where, policy, cfg.data.max_prompt_len)
    # The frozen SFT policy and the reward model share one base (see grpo_models).
    reference = grpo_models.reference_params(run, adapters is not None)
    reward_model, shared = grpo_models.share_reward_base(
        restore_model(str(rm_path), run.mesh),
        grpo_models.base_weights(run, reference, adapters is not None))
    if not shared and jax.process_index() == 0:
        print(f"{cfg.reward.path}: trained on other base weights; it keeps its own copy",
              flush=True)
    suffix, digits = score_token_ids(cfg.reward, policy)
    g, b = cfg.grpo.group_size, cfg.grpo.query_batch
    rollout_judge = None
    if cfg.toy.enabled:  # the toy world's integer judge, logged beside the RM's rewards
        def rollout_judge(recs, out):
            return judge_replies(recs, policy.replies(out), g, toy_judge)

    def rm_score(prompts, out, group):
        return policy.reward_scores(reward_model, prompts, out, group, suffix, digits,
                                    cfg.reward.view, micro=cfg.grpo.forward_micro_batches)

    step_fn = build_step(cfg, run, sampling)

    log_probs = grpo_models.build_log_probs(run, sampling, cfg.grpo.forward_micro_batches,
                                            prompt_rows(cfg, cfg.grpo.forward_micro_batches))

    # With audits, checkpoints are ranked by the audits' judge mean (rollback targets).
    ckpt = (trainer.checkpointer(run, grpo_audit.METRIC, "max") if cfg.audit.every
            else trainer.checkpointer(run))
    start = trainer.restore_latest(run, ckpt, None)
    writer = MetricWriter(workdir / "tb", cfg.train.total_steps, start, cfg.train.progress)
    audits = grpo_audit.Audits(cfg.audit, workdir, start) if cfg.audit.every else None

    def audit(step: int) -> str | None:
        """The audit's action at `step`, or None when `step` is not an audit step."""
        if audits is None or not audits.due(step):
            return None
        return audit_step(cfg, run, audits, step, lambda k: audit_replies(
            cfg, run, held_out, k, rm_score, judge or toy_judge), ckpt, writer)

    order = np.random.default_rng(cfg.data.shuffle_seed).permutation(len(records))
    key = jax.random.key(cfg.seed)
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        action = audit(0) if start == 0 else None  # the SFT policy: the first baseline
        for step in range(start, cfg.train.total_steps):
            if action == "stop":
                break
            # Deterministic in (seed, step), so a resumed run samples the same rollouts.
            picks = [records[order[(step * b + i) % len(records)]] for i in range(b)]
            batch, diag = rollout_step(
                cfg, run, picks, jax.random.fold_in(key, step), sampling,
                rm_score, rollout_judge)
            metrics = update_step(cfg, run, batch, step_fn, log_probs, reference)
            last = writer.train_step(step, {**metrics, **diag}, time.perf_counter() - t0)
            t0 = time.perf_counter()
            if jax.process_index() == 0:  # a plain per-step record next to TensorBoard
                with open(workdir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": step + 1, **last}) + "\n")
            action = audit(step + 1)  # saves its own checkpoint
            if action is None and ((step + 1) % cfg.train.save_every == 0
                                   or step + 1 == cfg.train.total_steps):
                ckpt.save(step + 1, run.state, None, model_config=mc,
                          meta={"stage": "grpo", **prompt_features.meta(cfg)})
    finally:
        ckpt.wait()
        ckpt.close()
        writer.close()
    # Training checkpoints hold the adapters; this one is the whole policy. Every
    # process writes its shards: the save is collective.
    if adapters is not None and not agreed((workdir / "policy_model").exists()):
        save_model(workdir / "policy_model", run.model(), lora=adapters,
                   meta={"stage": "grpo", **prompt_features.meta(cfg)})
    if audits is not None:
        last.update(audits.results())
    if jax.process_index() == 0:
        (workdir / "results.json").write_text(json.dumps(last, indent=2))
    return last
