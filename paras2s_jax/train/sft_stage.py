"""Stage 1 entry point: supervised fine-tuning on demonstrations, with toy-judge eval."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import nnx

from paras2s_jax import sharding
from paras2s_jax.train import data as data_lib
from paras2s_jax.train import plan, stages, trainer
from paras2s_jax.train import step as step_lib
from paras2s_jax.train.metrics import MetricWriter


def _toy_files(cfg: ml_collections.ConfigDict, workdir: Path) -> None:
    """Write the toy world's data (once; process 0) and point the config at it."""
    from paras2s_jax.toyworld import ToyDataConfig, write_toy_data

    out = workdir / "toy_data"
    toy = ToyDataConfig(**cfg.toy.data.to_dict())
    marker = out / "DONE.json"
    wanted = cfg.toy.data.to_dict()
    if marker.exists() and json.loads(marker.read_text()) != wanted:
        # A resumed run must see the data it started with.
        raise ValueError(f"{out} was written with another config.toy.data "
                         f"({marker.read_text()}); use a fresh config.workdir")
    if jax.process_index() == 0 and not marker.exists():
        write_toy_data(out, toy)
        marker.write_text(json.dumps(wanted))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("toy data written")
    with cfg.unlocked():
        cfg.data.train_files = sorted(str(p) for p in out.glob("train-*.jsonl"))
        cfg.data.eval_files = [str(out / "eval-demos.jsonl")]
        cfg.toy.queries = str(out / "eval-queries.jsonl")


def build_eval(cfg: ml_collections.ConfigDict, run: trainer.Run) -> sharding.mesh_jit:
    """The jitted eval forward `(params, rest, batch) -> ({stream: CE sum}, {stream: token
    count})`, the batch's rows in `train.eval_micro_batches` parts one after another
    (forward only: a part's activations are freed before the next one runs)."""
    micro = cfg.train.eval_micro_batches
    if micro < 1 or cfg.data.global_batch % micro:
        raise ValueError(f"config.train.eval_micro_batches={micro} must be >= 1 and divide "
                         f"config.data.global_batch={cfg.data.global_batch}")

    def sums(params, rest, batch):
        terms = run.policy.sft_loss(nnx.merge(run.graphdef, params, rest), batch)
        return {k: v[0] for k, v in terms.items()}, {k: v[1] for k, v in terms.items()}

    def eval_sums(params, rest, batch):
        if micro == 1:
            return sums(params, rest, batch)
        parts = jax.lax.map(lambda mb: sums(params, rest, mb),
                            step_lib.micro_batches(batch, micro))
        return jax.tree.map(lambda x: x.sum(0), parts)

    return sharding.mesh_jit(eval_sums, run.mesh)


def _eval_loss_fn(run: trainer.Run, batches: list[dict], sums: sharding.mesh_jit):
    """Mean eval CE per stream (token-weighted over the whole eval set) from `sums`
    (`build_eval`)."""
    def evaluate(r: trainer.Run) -> dict[str, float]:
        tot = {s: 0.0 for s in r.policy.streams}
        cnt = {s: 0.0 for s in r.policy.streams}
        for local in batches:
            batch = data_lib.to_global(local, r.mesh)
            s, c = jax.device_get(sums(r.state["params"], r.rest, batch))
            for k in tot:
                tot[k] += float(s[k])
                cnt[k] += float(c[k])
        w = r.cfg.loss.weights
        out = {f"loss_{k}": tot[k] / max(cnt[k], 1.0) for k in tot}
        out["loss"] = sum(w[k] * out[f"loss_{k}"] for k in tot)
        return out

    return evaluate


def toy_score(run: trainer.Run, cfg: ml_collections.ConfigDict, params=None):
    """Toy-judge scores of the model on the held-out toy queries (None off process 0)."""
    from paras2s_jax.sampling import sampling_from_settings
    from paras2s_jax.toyworld.demos import read_queries
    from paras2s_jax.toyworld.evaluate import score_model

    sampling = sampling_from_settings(cfg.toy.sampling)
    params = run.state["params"] if params is None else params
    if jax.process_count() > 1:
        # The sampler takes host-local prompts: gather the (toy-sized) model everywhere and
        # let process 0 score it alone. Every process must join the gather.
        from jax.experimental import multihost_utils

        host = multihost_utils.process_allgather(params, tiled=True)
        if jax.process_index() != 0:
            return None
        params = jax.device_put(host, jax.local_devices()[0])
    queries = read_queries(cfg.toy.queries)
    return score_model(run.model(params), queries, jax.random.PRNGKey(cfg.toy.eval_seed),
                       sampling, batch_size=cfg.toy.sampling.batch_size)


def _with_toy_score(eval_fn, cfg: ml_collections.ConfigDict):
    """`eval_fn` plus "toy_score": the judge as an eval metric (e.g. to rank checkpoints)."""
    def evaluate(r: trainer.Run) -> dict[str, float]:
        out = eval_fn(r)
        score = toy_score(r, cfg)
        value = np.float32(score.mean if score is not None else 0.0)
        if jax.process_count() > 1:  # every process must rank checkpoints the same way
            from jax.experimental import multihost_utils

            value = multihost_utils.broadcast_one_to_all(value)
        out["toy_score"] = float(value)
        return out

    return evaluate


def _log_scores(run: trainer.Run, scores: dict[str, float]) -> None:
    """Judge scores into the run's TensorBoard log, at the final step."""
    writer = MetricWriter(run.workdir / "tb", run.cfg.train.total_steps, progress=False)
    writer.scalars(run.cfg.train.total_steps, scores, prefix="eval")
    writer.close()


def build_step(cfg: ml_collections.ConfigDict, run: trainer.Run) -> sharding.mesh_jit:
    """The jitted SFT train step `(state, batch, rest) -> (state, metrics)`."""
    step = step_lib.build_train_step(
        run.graphdef, run.policy.sft_loss, run.policy.sft_counts, dict(cfg.loss.weights),
        run.tx, run.schedule, accum_steps=cfg.optimizer.accum_steps)
    return trainer.jit_step(run, step)


def planned(cfg: ml_collections.ConfigDict, length: int | None = None) -> plan.StagePlan:
    """The SFT step and the eval forward with abstract sharded arguments, for
    `launch/plan.py`; `length`: padded sequence length (default: the largest bucket,
    which eval batches are padded to as well)."""
    run = trainer.setup(cfg, abstract=True)
    length = length or max(cfg.data.buckets)
    rows, accum = cfg.data.global_batch, cfg.optimizer.accum_steps
    batch = plan.abstract_batch(run.policy.batch_spec("train", rows, length,
                                                      cfg.data.whisper_features), run.mesh)
    step = plan.Planned(f"SFT step {rows}x{length}, accum {accum}", build_step(cfg, run),
                        (run.state, batch, run.rest), rows * length, 6)
    micro = cfg.train.eval_micro_batches
    evaluation = plan.Planned(f"SFT eval loss {rows}x{length}, {micro} micro-batches",
                              build_eval(cfg, run), (run.state["params"], run.rest, batch),
                              rows * length, 2)
    return plan.StagePlan([step, evaluation], plan.matmul_params(run.state["params"]),
                          run.mesh, run.model_config)


@stages.register("sft")
def run_sft(cfg: ml_collections.ConfigDict) -> dict:
    """Train with the SFT loss; returns the final metrics (and toy scores if enabled)."""
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.toy.enabled:
        _toy_files(cfg, workdir)
    run = trainer.setup(cfg)
    results: dict = {}
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)

    judge = cfg.toy.enabled and cfg.toy.judge
    if judge:
        base = toy_score(run, cfg)
        if base is not None:
            results["toy_score_base"] = base.mean
            say(f"toy judge, base model : {base.summary()}", flush=True)

    feats = cfg.data.whisper_features
    policy = run.policy
    records = policy.read_records(cfg.data.train_files, feats)
    ds = policy.train_batches(records, cfg.data.global_batch, cfg.data.buckets,
                              cfg.data.shuffle_seed, feats)
    data_iter = iter(ds)
    eval_fn = None
    if cfg.data.eval_files:
        eval_records = policy.read_records(cfg.data.eval_files, feats)
        eval_fn = _eval_loss_fn(run, policy.eval_batches(
            eval_records, cfg.data.global_batch, cfg.data.buckets, feats), build_eval(cfg, run))
    if judge and cfg.toy.judge_in_eval and eval_fn is not None:
        eval_fn = _with_toy_score(eval_fn, cfg)

    step_fn = build_step(cfg, run)

    ckpt = trainer.checkpointer(run)
    start = trainer.restore_latest(run, ckpt, data_iter)
    if start:
        say(f"resumed from step {start} ({ckpt.manager.directory})", flush=True)
    last = trainer.train_loop(run, step_fn, data_iter, ckpt=ckpt, start_step=start,
                              eval_fn=eval_fn, data_state=data_iter)
    ckpt.close()
    results.update({f"train/{k}": v for k, v in last.items()})
    if run.preempted:  # skip the final evaluation: the job must stop now
        results["preempted"] = 1.0
    elif eval_fn is not None:
        results.update({f"eval/{k}": v for k, v in eval_fn(run).items()})

    final = toy_score(run, cfg) if judge and not run.preempted else None
    if final is not None:
        results["toy_score_sft"] = final.mean
        _log_scores(run, {"toy_judge_base": results["toy_score_base"],
                          "toy_judge_sft": final.mean, **{
                              f"toy_judge_{d}": v for d, v in final.per_dimension.items()}})
        say(f"toy judge, base model : {results['toy_score_base']:.3f}", flush=True)
        say(f"toy judge, after SFT  : {final.summary()}", flush=True)
    if jax.process_index() == 0:
        (workdir / "results.json").write_text(json.dumps(
            {k: float(v) for k, v in results.items()}, indent=2))
    return results
