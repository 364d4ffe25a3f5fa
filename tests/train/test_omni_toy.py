"""The toy recipe on the toy-sized Qwen2.5-Omni (`configs/*.py:toy_omni`): a short SFT run
through `launch/train.py` restores as an Omni model that fits the held-out
demonstrations better than the untrained one, and answers from the prompt's last
position (where the sampler reads its first reply token) with a toy reply opener; the
whole demo (`launch/demo.py --model qwen25_omni --fast`) as a slow test."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import grpo, reward, sft
from paras2s_jax.checkpoint.orbax_io import restore_model
from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.policy import policy_for
from paras2s_jax.toyworld.world import GENERIC, REPLY_RULES, WORD_ID
from paras2s_jax.train import trainer
from tests.train.test_train_e2e import _env, _run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 30


def _cmd(workdir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch" / "train.py"), "--config",
            str(ROOT / "configs" / "sft.py") + ":toy_omni", f"--config.workdir={workdir}",
            "--config.train.progress=False", *overrides]


def test_toy_omni_presets_are_the_toy_runs_on_omni():
    for stage in (sft, reward, grpo):
        toy, omni = stage.get_config("toy"), stage.get_config("toy_omni")
        assert omni.model.family == "qwen25_omni" and omni.model.preset == "toy"
        assert isinstance(trainer.model_config(omni.model), trainer.model_family(
            omni.model).config_class)
        assert omni.optimizer.lr == toy.optimizer.lr
        if stage is not sft:  # Omni's SFT runs longer (configs/sft.py says why)
            assert omni.train.total_steps == toy.train.total_steps
    # the later stages read what `launch/demo.py --model qwen25_omni` writes
    sft_steps = sft.get_config("toy_omni").train.total_steps
    assert reward.get_config("toy_omni").init.path == \
        f"/tmp/paras2s/demo_omni/sft/checkpoints/{sft_steps}"
    assert grpo.get_config("toy_omni").reward.path.startswith("/tmp/paras2s/demo_omni/")


@nnx.jit
def _last_logits(model: QwenOmni, x: dict) -> jax.Array:
    return model.thinker_forward(x["input_ids"], x["attention_mask"], x["mel"], x["mel_mask"],
                                 last_only=True).logits[:, -1]


def _eval_losses(stdout: str, step: int) -> dict[str, float]:
    line = next(x for x in stdout.splitlines() if x.startswith(f"step {step}: eval/"))
    return {s: float(re.search(rf"eval/loss_{s}=([0-9.]+)", line).group(1))
            for s in ("text", "audio")}


def test_toy_omni_sft_runs_end_to_end_and_restores_as_omni(tmp_path):
    overrides = ("--config.toy.judge=False", "--config.toy.data.renderings=1",
                 "--config.toy.data.general_renderings=1", f"--config.train.total_steps={STEPS}",
                 f"--config.train.save_every={STEPS}", "--config.train.eval_every=10",
                 "--config.optimizer.warmup_steps=5", f"--config.optimizer.decay_steps={STEPS - 5}")
    stdout = _run(_cmd(tmp_path, *overrides), _env(1))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["train/skipped_total"] == 0 and np.isfinite(results["train/loss"])
    first, last = _eval_losses(stdout, 10), _eval_losses(stdout, STEPS)
    for stream in ("text", "audio"):  # held-out demonstrations, both streams learnt
        assert last[stream] < first[stream] - 0.5, (stream, first, last)

    cfg = sft.get_config("toy_omni")
    model = restore_model(tmp_path / "checkpoints" / str(STEPS))
    assert isinstance(model, QwenOmni) and model.config == trainer.model_config(cfg.model)
    policy = policy_for(model.config)
    records = policy.read_records([str(tmp_path / "toy_data" / "eval-demos.jsonl")])
    # every toy prompt pads to the samplers' one prompt bucket and passes GRPO's cap
    lengths = {policy.prompt_length(r) for r in records}
    assert max(lengths) <= cfg.toy.sampling.prompt_bucket
    assert max(lengths) <= grpo.get_config("toy_omni").data.max_prompt_len

    # The first reply token comes from the prompt's last position alone (no reply in the
    # input): after SFT it is an opener of a toy reply for held-out prompts.
    prompts = policy.prompt_batch(records[:32], cfg.toy.sampling.prompt_bucket)
    x = {k: jnp.asarray(v) for k, v in prompts.inputs.items()}
    first_tokens = np.asarray(jnp.argmax(_last_logits(model, x), axis=-1))
    openers = {WORD_ID[o] for o, _, _ in REPLY_RULES.values()} | {WORD_ID[GENERIC[0]]}
    assert np.mean([t in openers for t in first_tokens]) > 0.9, first_tokens


@pytest.mark.slow
def test_omni_demo_fast_runs_every_stage(tmp_path):
    cmd = [sys.executable, "launch/demo.py", "--model", "qwen25_omni", "--fast", "--seeds",
           "1", "--workdir", str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for effect in ("| base < SFT < GRPO | emotion:", "| base < SFT < GRPO | overall:",
                   "| KL term keeps general ability |", "| small groups often tie (no signal) |",
                   "| reward model reads what the judge hears |"):
        assert effect in out, effect
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert set(saved["grpo"]) == {"0.2", "0"} and all(len(v) == 2 for v in saved["grpo"].values())
    dims = ("emotion", "sarcasm", "age", "gender")
    for row in (saved["base"], saved["sft"], *saved["grpo"]["0.2"], *saved["grpo"]["0"]):
        # overall: the mean over all queries (the held-out split need not balance them)
        assert min(row[d] for d in dims) <= row["overall"] <= max(row[d] for d in dims)
    assert saved["sft"]["overall"] > saved["base"]["overall"]
    # every stage's checkpoint is an Omni model
    assert isinstance(restore_model(tmp_path / "sft" / "checkpoints" / "60"), QwenOmni)
    assert isinstance(restore_model(tmp_path / "reward" / "reward_model"), QwenOmni)
    assert isinstance(restore_model(tmp_path / "grpo" / "checkpoints" / "4"), QwenOmni)
    assert json.loads((tmp_path / "demo_mode.json").read_text())["model"] == "qwen25_omni"
    history = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text()
               .splitlines()]
    assert len(history) == 4
    # the first step's reference (= the sampling policy) gives the sampler's log-probs
    assert history[0]["sampler_gap_text"] < 1e-4 and history[0]["sampler_gap_audio"] < 1e-4
