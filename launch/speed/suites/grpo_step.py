"""One GRPO iteration, ours against TRL's `GRPOTrainer`: completions per second.

    python -m launch.speed grpo-step [--prompts 8 --group 8 --completion 32]

An iteration: sample G completions for each of P prompts, score them, group-normalise
the advantages, compute the reference log-probabilities, one AdamW update of the clipped
objective with the k3 KL term (β 0.2; "old" is the stop-gradient of the update's own
log-probabilities, one update per rollout on both sides). Ours is the library's GRPO
path (`sampling.generate`, `train.rollout`, `train.grpo`, the shared jitted step; the
reference and update forwards run each prompt's columns once for its G replies); TRL's
is `GRPOTrainer.train` with the same text-only Qwen2 shape and weights, G, completion
length, temperature, top-k, β, optimizer and clipping. The reward (distinct tokens /
length of the completion) costs the same on both sides. A second row of ours runs every
row's prompt columns in those forwards (what prompt sharing is worth at this shape). TRL
runs its steps; after each one a callback times one iteration of each of ours, so the
contenders alternate. TRL comes with the `bench` extra
(`pip install -e ".[bench]"`), not the default install. Target: ours >= 2x TRL's
completions/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time

BETA, TEMPERATURE, TOP_K, LR = 0.2, 1.0, 50, 1e-5
TINY = dict(vocab_size=4096, hidden_size=256, intermediate_size=768, num_layers=4,
            num_heads=8, num_kv_heads=2)


PHASES = ("sampling ms", "reward + reference ms", "update ms")


def phase_ms(phases: list[tuple[float, float, float]]) -> list[float]:
    """Median milliseconds of each phase of an iteration (sampling, reward + reference,
    update); their sum need not equal the median iteration."""
    import statistics

    return [statistics.median(p[i] for p in phases) * 1e3 for i in range(len(PHASES))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=int, default=8, help="prompts per iteration (P)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--completion", type=int, default=32, help="max completion tokens")


def diversity(ids) -> float:
    """The reward: distinct tokens / length of one completion (a list of ids)."""
    return len(set(ids)) / max(len(ids), 1)


def ours_iteration(model, prompt_ids, group: int, steps: int, share_prompts: bool = True):
    """A zero-argument callable running one GRPO iteration of the library's path, and a
    dict holding its state and each call's (sampling, reward + reference, update) seconds.
    `share_prompts=False` runs every row's prompt columns in the log-prob forwards."""
    import jax
    import numpy as np
    from flax import nnx

    from launch.speed.common import block
    from paras2s_jax.policy import policy_for
    from paras2s_jax.sampling import SamplingConfig, generate
    from paras2s_jax.train import step as step_lib
    from paras2s_jax.train.grpo import GRPOLossConfig, group_advantages
    from paras2s_jax.train.grpo_update import loss_fns
    from paras2s_jax.train.optim import OptimizerConfig, make_optimizer, schedule
    from paras2s_jax.train.rollout import reply_logprobs, rollout_batch

    sampling = SamplingConfig(max_new_tokens=steps, text_temperature=TEMPERATURE,
                              text_top_k=TOP_K, output_type="text", num_samples=group,
                              prompt_bucket=prompt_ids.shape[1])
    lcfg = GRPOLossConfig(beta_text=BETA, beta_audio=BETA)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ocfg = OptimizerConfig(lr=LR, weight_decay=0.0)
    tx = make_optimizer(ocfg)
    shared_rows = group if share_prompts else 1  # consecutive rows that share a prompt
    loss_fn, count_fn = loss_fns(policy_for(model.config), lcfg, sampling, shared_rows)
    step = jax.jit(step_lib.build_train_step(graphdef, loss_fn, count_fn,
                                             {"text": 1.0, "audio": 1.0}, tx, schedule(ocfg)),
                   donate_argnums=0)
    log_probs = jax.jit(lambda p, b: reply_logprobs(nnx.merge(graphdef, p, rest), b, sampling,
                                                     group=shared_rows))
    # Copies: the step donates its state, and `model` stays usable (TRL's peer reads it).
    reference = jax.tree.map(lambda x: x.copy(), params)
    holder = {"state": step_lib.init_state(jax.tree.map(lambda x: x.copy(), params), tx, 0),
              "i": 0, "phases": []}
    sp = model.config.special
    prompts = {"text": prompt_ids, "audio": np.full_like(prompt_ids, sp.pad),
               "attention_mask": np.ones(prompt_ids.shape, bool)}
    key = jax.random.key(0)

    def run():
        state = holder["state"]
        holder["i"] += 1
        t0 = time.perf_counter()
        out = block(generate(nnx.merge(graphdef, state["params"], rest), prompts,
                             jax.random.fold_in(key, holder["i"]), sampling))
        t1 = time.perf_counter()
        batch = rollout_batch(prompts, out, group)
        rewards = [diversity(row[m].tolist()) for row, m in
                   zip(batch["text"][:, -steps:], batch["text_mask"], strict=True)]
        batch["advantages"] = np.asarray(group_advantages(np.asarray(rewards), group)[0])
        # One update per rollout, as the GRPO stage runs it: "old" is the stop-gradient of
        # the update's own log-probs, so only the reference needs a forward.
        ref = block(log_probs(reference, batch))
        for s in ("text", "audio"):
            batch[f"ref_{s}_logprobs"] = ref[s]
        t2 = time.perf_counter()
        holder["state"], _ = block(step(state, batch, rest))  # the update too
        holder["phases"].append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        holder["length"] = float(batch["text_mask"].sum(1).mean())
    return run, holder


def _tokenizer(vocab: int, eos: int):
    """A word-level tokenizer whose words are the token ids ("t17" -> 17)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"t{i}": i for i in range(vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token=f"t{eos}",
                                   unk_token="t0")


def trl_run(model, prompt_ids, group: int, steps: int, iterations: int, between):
    """Train TRL's GRPOTrainer for `iterations` steps; returns the seconds of each step,
    its (sampling, reward + reference, update) seconds, and the mean completion lengths.

    `between()` runs after every TRL step (the interleaved measurement of ours)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from launch.speed.shapes import hf_peer

    cfg = model.config
    peer = hf_peer(model, "sdpa")
    tokenizer = _tokenizer(cfg.vocab_size, cfg.special.text_eos)
    peer.generation_config.eos_token_id = cfg.special.text_eos
    peer.generation_config.pad_token_id = 0
    prompts = [" ".join(f"t{i}" for i in row) for row in prompt_ids]
    data = Dataset.from_dict({"prompt": prompts * (iterations + 1)})
    times, lengths, generating, rolling_out = [], [], [], []

    class TimedGRPOTrainer(GRPOTrainer):
        """Times TRL's sampling and its whole rollout (sampling, reward, reference)."""

        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            generating.append(time.perf_counter() - t0)
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            rolling_out.append(time.perf_counter() - t0)
            return out

    def reward(completion_ids, **_):
        lengths.append(sum(map(len, completion_ids)) / len(completion_ids))
        return [diversity(ids) for ids in completion_ids]

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            times.append(time.perf_counter() - self.t0)
            between()

    with tempfile.TemporaryDirectory() as out:
        # TRL builds its reference model from the policy's directory: save it there.
        peer.save_pretrained(out)
        tokenizer.save_pretrained(out)
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=len(prompts) * group,
            num_generations=group, max_completion_length=steps, max_steps=iterations,
            learning_rate=LR, lr_scheduler_type="constant", beta=BETA,
            temperature=TEMPERATURE, top_k=TOP_K, top_p=1.0, loss_type="dapo",
            bf16=False, gradient_checkpointing=False, report_to="none",
            use_cpu=not torch.cuda.is_available(),
            save_strategy="no", logging_steps=10**9, shuffle_dataset=False, seed=0,
            max_grad_norm=1.0, weight_decay=0.0, adam_beta2=0.95, log_completions=False,
            disable_tqdm=True)
        trainer = TimedGRPOTrainer(model=out, reward_funcs=reward, args=args, train_dataset=data,
                              processing_class=tokenizer, callbacks=[Clock()])
        trainer.train()
    phases = [(g, r - g, t - r) for g, r, t in zip(generating, rolling_out, times, strict=True)]
    return times, phases, lengths


def run(args: argparse.Namespace) -> dict:
    import statistics

    import numpy as np
    from flax import nnx

    from launch.speed.common import profile, profile_line, table
    from launch.speed.shapes import trunk_config
    from paras2s_jax.model import KimiAudio

    minute = args.size == "minute"
    cfg = trunk_config("minute" if minute else "bench", **({} if minute else TINY))
    p, g = (2, args.group) if minute else (args.prompts, args.group)
    plen, steps = (8, 4) if minute else (args.prompt_length, args.completion)
    prompt_ids = np.random.default_rng(0).integers(
        1, cfg.text_vocab_size - 512, (p, plen)).astype(np.int32)
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    # Ours as the stage runs it, and with every row's prompt in the log-prob forwards
    # (what prompt sharing is worth at this shape).
    contenders = {name: ours_iteration(model, prompt_ids, g, steps, share)
                  for name, share in (("ours", True), ("ours_every_row", False))}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for run_one, _ in contenders.values():
        run_one()  # compile

    def timed_ours():
        for name, (run_one, _) in contenders.items():
            t0 = time.perf_counter()
            run_one()
            times[name].append(time.perf_counter() - t0)

    results: dict = {"prompts": p, "group": g, "prompt_length": plen, "completion": steps,
                     "beta": BETA, "hidden": cfg.hidden_size, "layers": cfg.num_layers}
    have_trl = importlib.util.find_spec("trl") is not None
    if have_trl:
        # The first TRL step and our iterations after it are warm-up, not timed.
        trl_times, trl_phases, lengths = trl_run(model, prompt_ids, g, steps, args.repeats + 1,
                                                 timed_ours)
        trl_times, trl_phases, lengths = trl_times[1:], trl_phases[1:], lengths[1:]
        times = {name: t[1:] for name, t in times.items()}
    else:
        print("TRL is not installed: the peer is NOT measured (install the bench extra: "
              "pip install -e \".[bench]\"); timing ours alone")
        for _ in range(args.repeats):
            timed_ours()
    busy = profile(contenders["ours"][0], args.profile)
    n = p * g
    labels = {"ours": "ours (jit)", "ours_every_row": "ours, every row's prompt"}
    rows = []
    for name, (_, info) in contenders.items():
        seconds = statistics.median(times[name])
        phases = info["phases"][-len(times[name]):]
        rows.append([labels[name], seconds * 1e3, n / seconds, *phase_ms(phases),
                     info["length"]])
        results[name] = {"iteration_s": seconds, "samples_s": times[name],
                         "completions_per_s": n / seconds, "phases_s": phases}
    if have_trl:
        trl_s = statistics.median(trl_times)
        rows.append(["TRL GRPOTrainer", trl_s * 1e3, n / trl_s, *phase_ms(trl_phases),
                     float(np.mean(lengths))])
        results["trl"] = {"iteration_s": trl_s, "samples_s": trl_times,
                          "completions_per_s": n / trl_s, "phases_s": trl_phases}
        results["ratio"] = trl_s / results["ours"]["iteration_s"]
        results["ratio_every_row"] = trl_s / results["ours_every_row"]["iteration_s"]
    else:
        results["trl"] = None
    print(f"GRPO iteration, {p} prompts x G {g}, prompt {plen}, up to {steps} new tokens, "
          f"hidden {cfg.hidden_size}, {cfg.num_layers} layers, vocab {cfg.vocab_size}, fp32, "
          f"β {BETA}; medians of {len(times['ours'])} alternating iterations")
    print(table(["", "ms / iteration", "completions/s", *PHASES, "mean completion tokens"],
                rows))
    results["profile_ours"] = busy
    print(f"where our iteration's XLA time goes (jax.profiler): {profile_line(busy)}")
    if have_trl:
        r = results["ratio"]
        print(f"target ours >= 2x TRL completions/s: {r:.2f}x ({'met' if r >= 2 else 'NOT met'}; "
              f"{results['ratio_every_row']:.2f}x with every row's prompt in the forwards)")
    return results
