"""Stage 2 entry point: the distilled reward model.

LoRA adapters on the SFT model (base frozen) learn to predict the judge's Likert score
of (prompt, reply) as one digit token. Data: distillation shards (`train/distill.py`);
with `toy.enabled` they are sampled from the SFT checkpoint and judged by the toy rule
judge first (resumable). The final model (base + adapters) is saved as an Orbax model
checkpoint in `<workdir>/reward_model`; held-out Pearson(RM expected score, judge) is
reported, and what of the reply it reads (`reward.view`) is written beside it in
`reward_model/reward_input.json`. The training step directories in
`<workdir>/checkpoints` hold only the adapters (and the optimizer): they resume this
stage; GRPO and sampling read `<workdir>/reward_model`. With `data.whisper_features`
(as the SFT checkpoint was trained; a mismatch is refused) the sampled prompts and the
RM read the prompts' Whisper features, which the distillation records name
("prompt_features").
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from paras2s_jax import sharding
from paras2s_jax.checkpoint.orbax_io import save_model
from paras2s_jax.model.lora import LoRAConfig
from paras2s_jax.policy import SpeechPolicy, policy_for
from paras2s_jax.sampling import sampling_from_settings
from paras2s_jax.train import plan, prompt_features, stages, trainer
from paras2s_jax.train import step as step_lib
from paras2s_jax.train.distill import DistillJudge, distill, read_scored, toy_judge
from paras2s_jax.train.hosts import agreed, host_value, process_rows
from paras2s_jax.train.inputs import InputMismatch
from paras2s_jax.train.reward import (
    check_view,
    expected_score,
    pearson,
    score_loss,
)
from paras2s_jax.train.select import CRITERIA

VIEW_FILE = "reward_input.json"  # inside the reward model directory: what the RM reads


def lora_config(cfg: ml_collections.ConfigDict) -> LoRAConfig:
    return LoRAConfig(rank=cfg.rank, alpha=cfg.alpha, targets=tuple(cfg.targets),
                      within=tuple(cfg.get("within", ())))


def score_token_ids(rcfg: ml_collections.ConfigDict,
                    policy: SpeechPolicy) -> tuple[list[int], tuple[int, ...]]:
    """(suffix ids, ids of "1".."5"): from `reward.tokenizer_dir` (the policy's text
    tokenizer), else the configured ids."""
    if rcfg.tokenizer_dir:
        tok = policy.text_tokenizer(rcfg.tokenizer_dir)
        digits = [tok.encode(str(k)) for k in range(1, 6)]
        if any(len(d) != 1 for d in digits):
            raise ValueError(f"{rcfg.tokenizer_dir}: the digits 1..5 are not single tokens")
        return tok.encode(rcfg.suffix_text), tuple(d[0] for d in digits)
    if len(rcfg.digit_ids) != 5:
        raise ValueError("config.reward.digit_ids needs the 5 ids of '1'..'5' "
                         "(or set config.reward.tokenizer_dir)")
    return list(rcfg.suffix_ids), tuple(rcfg.digit_ids)


def write_view(directory: str | Path, view: str) -> None:
    """Record the reward model's view beside its checkpoint."""
    (Path(directory) / VIEW_FILE).write_text(json.dumps({"view": check_view(view)}) + "\n")


def read_view(directory: str | Path, view: str) -> str:
    """The view recorded beside the reward model in `directory`; `InputMismatch` (one
    line naming the field and the file) when it is not `view` or was never recorded."""
    path = Path(directory) / VIEW_FILE
    if not path.exists():
        raise InputMismatch(f"{path} does not exist: the view the reward model was trained "
                            f"with is unknown (config.reward.view={view!r}); retrain it, or "
                            'write {"view": "both"} there for one trained on both streams')
    recorded = json.loads(path.read_text()).get("view")
    if recorded != check_view(view):
        raise InputMismatch(f"config.reward.view={view!r} but {path} says the reward model "
                            f"was trained with view {recorded!r}")
    return recorded


def collate_left(records: list[dict], config, suffix_ids, buckets, rows: int,
                 view: str, whisper_features: bool = False) -> dict:
    """The policy's reward-model inputs [rows, bucket] (`SpeechPolicy.reward_inputs`) +
    int32 scores [rows, 1] (0 on padding rows)."""
    batch = policy_for(config).reward_inputs(records, suffix_ids, view, buckets, rows,
                                             whisper_features)
    scores = np.zeros((rows, 1), np.int32)  # 2-D: every batch field shards on its rows
    scores[: len(records), 0] = [int(r["score"]) for r in records]
    return {**batch, "score": scores}


def training_batches(records: list[dict], config, cfg: ml_collections.ConfigDict):
    """The endless shuffled iterator of this process's rows of each global training
    batch (`collate_left` under `cfg.reward.view`), with a checkpointable state."""
    rows = cfg.data.global_batch
    suffix, _ = score_token_ids(cfg.reward, policy_for(config))
    ds = grain.MapDataset.source(records).shuffle(seed=cfg.data.shuffle_seed).repeat(None)
    # Each process keeps its rows of the global batch, padded to the global batch's bucket.
    ds = ds.batch(rows, drop_remainder=True, batch_fn=lambda rs: process_rows(collate_left(
        list(rs), config, suffix, cfg.data.buckets, rows, cfg.reward.view,
        cfg.data.whisper_features)))
    return iter(ds.to_iter_dataset())


def _loss_fns(policy: SpeechPolicy, digit_ids: tuple[int, ...]):
    def loss_fn(model, batch, rng):
        del rng
        return {"score": score_loss(policy.reward_logits(model, batch), batch["score"][:, 0],
                                    digit_ids)}

    def count_fn(batch):
        return {"score": jnp.sum(batch["score"] >= 1)}

    return loss_fn, count_fn


SELECTIONS = ("random", "uncertainty")


def _unjudged(record: dict, text: list[int], audio: list[int]) -> tuple[int, str]:
    """The pool's stand-in judge: replies sampled for uncertainty selection, not judged."""
    return 0, ""


def _distil_splits(cfg, run_model, workdir: Path, train: list[dict], held: list[dict],
                   judge_fn, judge_name: str):
    """Sample replies to the train and held-out queries and judge them; they become
    `data.train_files` / `data.eval_files`. Under `distill.selection` "uncertainty" the
    train replies are only sampled (to distill/pool), and (train queries, judge, its name)
    are returned for the rounds; else None."""
    sampling = sampling_from_settings(cfg.distill.sampling, cfg.distill.samples_per_query)
    rounds = cfg.distill.selection == "uncertainty"
    for name, queries in (("train", train), ("heldout", held)):
        pool = name == "train" and rounds
        distill(run_model, queries, _unjudged if pool else judge_fn,
                workdir / "distill" / ("pool" if pool else name), sampling,
                "unjudged" if pool else judge_name, seed=cfg.seed + (name == "heldout"),
                chunk_queries=cfg.distill.chunk_queries,
                whisper_features=cfg.data.whisper_features)
    with cfg.unlocked():
        cfg.data.train_files = sorted(str(p) for p in (workdir / "distill/train").glob("*.jsonl"))
        cfg.data.eval_files = sorted(str(p) for p in (workdir / "distill/heldout").glob("*.jsonl"))
    return (train, judge_fn, judge_name) if rounds and train else None


def _toy_distillation(cfg: ml_collections.ConfigDict, run_model, workdir: Path):
    """Sample and judge toy replies of the SFT model (train prompts and held-out queries);
    returns the train queries, the judge and its name when rounds are still to judge."""
    from paras2s_jax.toyworld.demos import read_queries
    from paras2s_jax.train.inputs import require

    toy_dir = require(cfg.toy.data_dir, "config.toy.data_dir (the toy SFT data)",
                      cfg.init.get("made_by", "") or "python launch/demo.py")
    train = {}
    for path in sorted(toy_dir.glob("train-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "scenario" in rec:  # general-ability demonstrations are not RL prompts
                train.setdefault(rec["id"], rec)
    train_queries = list(train.values())[: cfg.toy.num_train_queries]
    held = [rec for rec, _ in read_queries(toy_dir / "eval-queries.jsonl")]
    return _distil_splits(cfg, run_model, workdir, train_queries, held, toy_judge,
                          "toy-rule-judge")


def _bench_distillation(cfg: ml_collections.ConfigDict, run_model, workdir: Path,
                        judge: DistillJudge):
    """Sample replies of the SFT model to the judge's prompts and score them with it (the
    benchmark pipeline, when launch/train.py builds it). Every `heldout_every`-th item is
    held out."""
    bcfg = cfg.distill.bench
    queries = judge.query_records(cfg.data.whisper_features)
    held = queries[bcfg.heldout_every - 1::bcfg.heldout_every]
    train = [q for i, q in enumerate(queries) if (i + 1) % bcfg.heldout_every]
    return _distil_splits(cfg, run_model, workdir, train, held, judge, judge.name)


ROUND_EVALS = "distill/round_evals.jsonl"  # held-out agreement of each round's refit


def read_pool(pool_dir: Path, queries: list[dict]) -> list[tuple[dict, list, list]]:
    """The sampled pool's replies as (query record, reply text, reply audio), in shard
    order; a reply sampled hearing Whisper features has the absolute path of their file
    as its query's "prompt_features" (the round records and the RM read them there)."""
    by_id = {q["id"]: q for q in queries}
    pool = []
    for path in sorted(pool_dir.glob("distill-*.jsonl")):
        for rec in map(json.loads, path.read_text().splitlines()):
            q = by_id[rec["query_id"]]
            if "prompt_features" in rec:
                q = {**q, "prompt_features": prompt_features.resolve(rec, path)[
                    "prompt_features"]}
            pool.append((q, rec["reply_text"], rec["reply_audio"]))
    return pool


def _judge_rounds(cfg, run: trainer.Run, step_fn, workdir: Path, queries: list[dict],
                  judge_fn, judge_name: str, heldout: list[dict]) -> None:
    """Uncertainty selection (`select.judge_in_rounds`) over distill/pool: before each
    chosen round the adapters are refitted from their initial values for
    `distill.round_steps` steps on every pair judged so far; the judged rounds are
    written to distill/train and become `data.train_files`. Each refit's agreement with
    the judge on the `heldout` pairs (when there are any) is appended to ROUND_EVALS as
    {"judged", "steps", "pearson", "accuracy", "mean_predicted"}. The run's state is
    left at the initial adapters, for the final training on all judged pairs."""
    from paras2s_jax.train import data as data_lib
    from paras2s_jax.train.select import judge_in_rounds

    pool = read_pool(workdir / "distill/pool", queries)
    initial = jax.tree.map(jnp.copy, run.state)

    def fit(records):
        run.state = jax.tree.map(jnp.copy, initial)  # the step donates its state
        batches = training_batches(records, run.model_config, cfg)
        for _ in range(cfg.distill.round_steps):
            run.state, _ = step_fn(run.state, data_lib.to_global(next(batches), run.mesh),
                                   run.rest)
        if heldout:
            row = {"judged": len(records), "steps": cfg.distill.round_steps,
                   **evaluate_rm(run.model(), heldout, cfg)}
            if jax.process_index() == 0:
                print(f"round refit on {len(records)} judged pairs: held-out pearson="
                      f"{row['pearson']:.3f}, accuracy={row['accuracy']:.3f}", flush=True)
                with open(workdir / ROUND_EVALS, "a") as f:
                    f.write(json.dumps(row) + "\n")

    def score(replies):
        # (unjudged: "score" 0 is only collate_left's padding value, never a target here)
        return digit_probs(run.model(), [{**q, "reply_text": t, "reply_audio": a, "score": 0}
                                         for q, t, a in replies], cfg)

    judge_in_rounds(pool, judge_fn, workdir / "distill/train", cfg.distill.rounds,
                    cfg.distill.per_round, fit, score, judge_name, seed=cfg.seed,
                    criterion=cfg.distill.criterion)
    run.state = initial
    with cfg.unlocked():
        cfg.data.train_files = sorted(str(p) for p in (workdir / "distill/train").glob(
            "round-*.jsonl"))


def _digit_logits(model, records: list[dict], cfg):
    """Yield (rows of `records` in the chunk, float32[global_batch, 5] digit logits) for
    each `data.global_batch` records, the replies read under `cfg.reward.view`, in
    `train.eval_micro_batches` parts."""
    mc = model.config
    suffix, digits = score_token_ids(cfg.reward, policy_for(mc))
    rows, micro = cfg.data.global_batch, cfg.train.eval_micro_batches
    if micro < 1 or rows % micro:
        raise ValueError(f"config.train.eval_micro_batches={micro} must be >= 1 and divide "
                         f"config.data.global_batch={rows}")
    mesh = sharding.mesh_of(nnx.state(model))
    for i in range(0, len(records), rows):
        chunk = records[i:i + rows]
        b = collate_left(chunk, mc, suffix, cfg.data.buckets, rows, cfg.reward.view,
                         cfg.data.whisper_features)
        if mesh is not None:  # the same rows on every process: split them over the mesh
            b = {k: sharding.replicated_batch_to_global(v, mesh) for k, v in b.items()}
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            d = policy_for(mc).reward_digit_logits(model, b, digits, micro)
        yield len(chunk), d


def evaluate_rm(model, records: list[dict], cfg) -> dict[str, float]:
    """Pearson and exact-digit accuracy of the RM against the judge on `records`, the
    replies read under `cfg.reward.view`, `data.global_batch` rows per forward in
    `train.eval_micro_batches` parts."""
    predicted, argmax = [], []
    for n, d in _digit_logits(model, records, cfg):
        predicted += host_value(expected_score(d))[:n].tolist()
        argmax += (host_value(jnp.argmax(d, -1))[:n] + 1).tolist()
    judge = np.asarray([r["score"] for r in records], np.float64)
    return {"pearson": pearson(np.asarray(predicted), judge),
            "accuracy": float(np.mean(np.asarray(argmax) == judge)),
            "mean_predicted": float(np.mean(predicted))}


def digit_probs(model, records: list[dict], cfg) -> np.ndarray:
    """float64[N, 5]: the RM's distribution over the digits "1".."5" for each record."""
    parts = [host_value(jax.nn.softmax(d.astype(jnp.float32), -1))[:n]
             for n, d in _digit_logits(model, records, cfg)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 5))


def build_step(cfg: ml_collections.ConfigDict, run: trainer.Run,
               digits: tuple[int, ...]) -> sharding.mesh_jit:
    """The jitted RM train step `(adapter state, batch, frozen base) -> ...`."""
    loss_fn, count_fn = _loss_fns(run.policy, digits)
    return trainer.jit_step(run, step_lib.build_train_step(
        run.graphdef, loss_fn, count_fn, {"score": 1.0}, run.tx, run.schedule,
        cfg.optimizer.accum_steps))


def planned(cfg: ml_collections.ConfigDict, length: int | None = None) -> plan.StagePlan:
    """The RM train step and its held-out eval forward, abstract, for the plan (GRPO's
    plan has the scoring forward GRPO runs, at its shapes)."""
    check_view(cfg.reward.view)
    run = trainer.setup(cfg, abstract=True, adapters=lora_config(cfg.lora))
    length = length or max(cfg.data.buckets)
    rows, accum = cfg.data.global_batch, cfg.optimizer.accum_steps
    digits = tuple(cfg.reward.digit_ids)  # shapes are what matter: no tokenizer needed
    inputs = plan.abstract_batch(run.policy.batch_spec(
        "reward", rows, length, cfg.data.whisper_features, view=cfg.reward.view), run.mesh)
    batch = inputs | plan.abstract_batch({"score": ((rows, 1), np.int32)}, run.mesh)
    step = plan.Planned(f"RM step {rows}x{length}, accum {accum}",
                        build_step(cfg, run, digits), (run.state, batch, run.rest),
                        rows * length, 6)
    model = run.model()
    micro = cfg.train.eval_micro_batches
    forward = run.policy.reward_digit_program(model, inputs, digits, micro)
    evaluation = plan.Planned(f"RM eval {rows}x{length}, {micro} micro-batches", forward.fn,
                              forward.args, rows * length, 2, mesh=run.mesh,
                              static_kwargs=forward.static)
    n = plan.matmul_params(nnx.state(model, nnx.Param)) - plan.matmul_params(run.state["params"])
    return plan.StagePlan([step, evaluation], n, run.mesh, run.model_config)


@stages.register("reward")
def run_reward(cfg: ml_collections.ConfigDict, judge: DistillJudge | None = None) -> dict:
    """Train the LoRA reward model; returns RM–judge agreement on held-out pairs."""
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "reward_model"
    check_view(cfg.reward.view)
    if out.exists():  # a finished model of this workdir: only under the same view
        read_view(out, cfg.reward.view)
    prompt_features.check_init(cfg)
    if cfg.distill.batch and cfg.distill.scorer != "bench":
        raise ValueError(f"config.distill.batch=True applies to config.distill.scorer='bench' "
                         f"(the benchmark's OpenAI judge); scorer {cfg.distill.scorer!r} "
                         "makes no API calls")
    if cfg.distill.selection not in SELECTIONS:
        raise ValueError(f"config.distill.selection={cfg.distill.selection!r}: use one of "
                         f"{SELECTIONS}")
    if cfg.distill.selection == "uncertainty":
        if jax.process_count() > 1:
            raise ValueError("config.distill.selection='uncertainty' runs in one process "
                             "(multi-process rounds are not implemented)")
        if cfg.distill.criterion not in CRITERIA:
            raise ValueError(f"config.distill.criterion={cfg.distill.criterion!r}: use one "
                             f"of {tuple(CRITERIA)}")
        if cfg.distill.round_steps < 1:
            raise ValueError(f"config.distill.round_steps={cfg.distill.round_steps} must "
                             "be >= 1")
    mesh = sharding.make_mesh(sharding.MeshConfig(**cfg.mesh.to_dict()))
    model = trainer.init_model(cfg, mesh)
    pending = None
    if cfg.distill.scorer == "bench":
        if judge is None:
            raise ValueError("config.distill.scorer='bench' needs the benchmark's judge: run "
                             "the stage through launch/train.py, which builds it from "
                             "config.distill.bench")
        pending = _bench_distillation(cfg, model, workdir, judge)
    elif cfg.toy.enabled:
        pending = _toy_distillation(cfg, model, workdir)
    elif cfg.distill.selection == "uncertainty":
        raise ValueError("config.distill.selection='uncertainty' selects among replies it "
                         "samples: it needs config.toy.enabled or config.distill.scorer='bench'")
    run = trainer.setup(cfg, adapters=lora_config(cfg.lora), model=model)
    mc = run.model_config
    _, digits = score_token_ids(cfg.reward, run.policy)
    step_fn = build_step(cfg, run, digits)
    heldout = read_scored(cfg.data.eval_files) if cfg.data.eval_files else []
    if pending:
        _judge_rounds(cfg, run, step_fn, workdir, *pending, heldout)
    data_iter = training_batches(read_scored(cfg.data.train_files), mc, cfg)

    eval_fn = (lambda r: evaluate_rm(r.model(), heldout, cfg)) if heldout else None

    ckpt = trainer.checkpointer(run)
    start = trainer.restore_latest(run, ckpt, data_iter)
    last = trainer.train_loop(run, step_fn, data_iter, ckpt=ckpt, start_step=start,
                              eval_fn=eval_fn, data_state=data_iter)
    ckpt.close()
    final = run.model()
    results = {f"train/{k}": v for k, v in last.items()}
    if heldout:
        results.update({f"heldout/{k}": v for k, v in evaluate_rm(final, heldout, cfg).items()})
    if not agreed(out.exists()):  # every process writes its shards: the save is collective
        save_model(out, final, lora=lora_config(cfg.lora),
                   meta={"stage": "reward", **prompt_features.meta(cfg)})
    if jax.process_index() == 0:
        write_view(out, cfg.reward.view)
        print("reward model vs judge (held-out pairs): " + ", ".join(
            f"{k}={v:.3f}" for k, v in results.items() if k.startswith("heldout/")), flush=True)
        (workdir / "results.json").write_text(json.dumps(
            {k: float(v) for k, v in results.items()}, indent=2))
    return results
