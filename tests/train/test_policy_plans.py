"""Memory plans of either model family: the batch shapes a policy declares for its plans
(`SpeechPolicy.batch_spec`) are those of the batches it makes, and a tiny Qwen2.5-Omni
plan of every stage compiles its real functions with them on 8 fake devices (the train
steps' compiles: `-m slow`)."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_config
from configs import reward as reward_config
from configs import sft as sft_config
from paras2s_jax.model import KimiAudio
from paras2s_jax.model import tiny as kimi_tiny
from paras2s_jax.model.families import family_of
from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.model.qwen_omni.model import tiny as omni_tiny
from paras2s_jax.policy import KimiAudioPolicy, QwenOmniPolicy
from paras2s_jax.policy.qwen_omni import OmniPolicySample
from paras2s_jax.policy.qwen_omni_data import max_frames, prompt_ids
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.train import grpo_models, plan, reward_stage, sft_stage

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
L = 32  # every padded stream of the toy batches fills this bucket
ROWS, GROUP, STEPS = 2, 2, 4


def _shapes(batch: dict) -> dict:
    return {k: (tuple(np.shape(v)), np.dtype(np.asarray(v).dtype)) for k, v in batch.items()}


def _spec_shapes(spec: dict) -> dict:
    return {k: (tuple(entry[0]), np.dtype(entry[1])) for k, entry in spec.items()}


def _omni_records(reply_text: int, reply_codes: int, fill: int) -> list[dict]:
    """Records whose prompt (toy codes) takes `fill` columns: one placeholder a code."""
    overhead = len(prompt_ids({}, omni_tiny(), 0))
    return [{"prompt_audio": [(i + j) % 50 for j in range(fill - overhead)],
             "reply_text": [10 + (i + j) % 90 for j in range(reply_text)],
             "reply_audio": [(i * 3 + j) % 50 for j in range(reply_codes)]} for i in range(ROWS)]


def _kimi_records() -> list[dict]:
    return [{"prompt_audio": list(range(5 + i, 15 + i)), "prompt_text": [20, 21],
             "reply_text": [30 + i, 31, 32], "reply_audio": [40, 41, 42 + i, 43, 44, 45]}
            for i in range(ROWS)]


def _sampled(policy, model, prompts, sampling):
    """A sampler output of the sampler program's shapes (zeros, not sampled)."""
    rows = {k: np.repeat(v, GROUP, axis=0) for k, v in prompts.inputs.items()}
    prog = policy.sampler_program(model, rows, jax.random.key(0), sampling)
    shapes = prog.fn.eval_shape(*prog.args, **prog.static)
    out = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return OmniPolicySample(out) if isinstance(policy, QwenOmniPolicy) else out


def test_omni_mel_frames_are_the_longest_clip_a_prompt_holds():
    mc, chunk = omni_tiny(), omni_tiny().audio.chunk_frames
    for columns in range(12, 80):
        longest = max(f for f in range(1, 4 * columns) if len(prompt_ids({}, mc, f)) <= columns)
        assert max_frames(mc, columns) == -(-longest // chunk) * chunk, columns


def _read(policy, records: list[dict], tmp_path) -> list[dict]:
    path = tmp_path / f"records{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return policy.read_records([str(path)])


@pytest.mark.parametrize("family", ["qwen25_omni", "kimi_audio"])
def test_batch_specs_are_the_shapes_of_the_policys_batches(family, tmp_path):
    omni = family == "qwen25_omni"
    mc = omni_tiny() if omni else kimi_tiny()
    policy = (QwenOmniPolicy if omni else KimiAudioPolicy)(mc)
    # Omni: prompt, reply text and codes each fill the bucket (the clip fills the frames
    # L columns hold); Kimi: one bucket for the whole sequence
    records = _read(policy, _omni_records(L - 1, L - 1, L) if omni else _kimi_records(),
                    tmp_path)
    train = next(iter(policy.train_batches(records, ROWS, (L,), seed=0)))
    assert _shapes(train) == _spec_shapes(policy.batch_spec("train", ROWS, L))

    prompts = policy.prompt_batch(records, L, rows=ROWS)
    assert _shapes(prompts.inputs) == _spec_shapes(policy.batch_spec("prompt", ROWS, L))

    sampling = SamplingConfig(max_new_tokens=STEPS, num_samples=GROUP, prompt_bucket=L)
    model = nnx.eval_shape(lambda: (QwenOmni if omni else KimiAudio)(mc, rngs=nnx.Rngs(0)))
    rollout = policy.rollout_batch(prompts, _sampled(policy, model, prompts, sampling), GROUP)
    assert _shapes(rollout) == _spec_shapes(
        policy.batch_spec("rollout", ROWS * GROUP, L, reply=STEPS))

    # reward inputs: prompt 14 columns, 3 reply text ids, 12 codes, 1 suffix id
    scored = _read(policy, _omni_records(3, 12, 14) if omni else _kimi_records(), tmp_path)
    for view in ("text", "audio", "both") if omni else ("audio",):
        inputs = policy.reward_inputs(scored, [5], view, (2 * L,), ROWS)
        got, spec = _shapes(inputs), _spec_shapes(policy.batch_spec("reward", ROWS, 2 * L,
                                                                    view=view))
        if omni:  # the clips are as long as the prompt's; the spec's fill 2L columns
            for k in ("mel", "mel_mask"):
                assert got[k][0][-1] <= spec[k][0][-1]
                got[k] = (got[k][0][:-1] + spec[k][0][-1:], got[k][1])
            assert (inputs["attention_mask"].sum(1) == policy.reward_columns(
                14, 3, 1, view)).all(), view
        assert got == spec, view

    with pytest.raises(ValueError, match="unknown batch kind 'eval'"):
        policy.batch_spec("eval", ROWS, L)


def _omni_cfg(module, **extra):
    cfg = module.get_config("toy")
    with cfg.unlocked():
        cfg.model.family, cfg.model.preset = "qwen25_omni", "tiny"
        cfg.mesh.data, cfg.mesh.fsdp = 1, 8
        cfg.data.global_batch, cfg.data.buckets = 16, [L]
        if module is not sft_config:
            cfg.reward.view = "text"
            cfg.reward.suffix_ids, cfg.reward.digit_ids = [10], [5, 6, 7, 8, 9]
        if module is grpo_config:
            cfg.grpo.query_batch, cfg.grpo.group_size = 2, 4
            cfg.grpo.sampling.max_new_tokens = STEPS
            cfg.grpo.sampling.prompt_bucket = 16
            cfg.data.max_prompt_len = L
            cfg.grpo.lora.rank = 4
        for key, value in extra.items():
            section, field = key.split("__")
            cfg[section][field] = value
    return cfg


def _omni_plans() -> dict[str, plan.StagePlan]:
    return {"sft": sft_stage.planned(_omni_cfg(sft_config)),
            "reward": reward_stage.planned(_omni_cfg(reward_config)),
            "grpo": grpo_models.planned(_omni_cfg(grpo_config))}


def _lower(p: plan.Planned):
    if p.mesh is None:
        return p.fn.lower(*p.args, **p.static_kwargs)
    with jax.set_mesh(p.mesh):
        return p.fn.lower(*p.args, **p.static_kwargs)


@needs_8
def test_tiny_omni_plans_compile_every_stage():
    """Forward functions compile; the train steps (k = 6) lower with the same batches
    (their compiles take ~30 s: the slow test below)."""
    plans = _omni_plans()
    names = {stage: [p.name.split()[0] for p in sp.functions] for stage, sp in plans.items()}
    assert names == {"sft": ["SFT", "SFT"], "reward": ["RM", "RM"],
                     "grpo": ["rollout", "old", "reference", "reward", "GRPO"]}
    grpo = plans["grpo"].functions
    assert "prompt 32 + 4 steps" in grpo[0].name
    update_batch = grpo[-1].args[1]
    assert update_batch["reply_audio"].shape == (8, 4 * STEPS)  # codecs_per_text codes a step
    assert update_batch["ref_audio_logprobs"].shape == (8, 4 * STEPS)
    assert not any(grpo[0].args[4].sharding.spec)  # the sampler's clips are replicated
    for sp in plans.values():
        assert family_of(sp.model_config).describe(sp.model_config) == (
            "thinker 2 + talker 2 + audio encoder 2 layers")  # the plan's header line
        for p in sp.functions:
            if p.flops_per_param_token == 6:
                assert _lower(p).as_text(), p.name
            else:
                row = plan.compile_plan(p, sp.matmul_params)
                assert row.peak_gb > 0 and row.hlo_flops > 0, p.name


@pytest.mark.slow
@needs_8
def test_tiny_omni_plans_compile_every_function_of_every_stage():
    for stage, sp in _omni_plans().items():
        rows = plan.run_plan(sp.functions, sp.matmul_params)
        assert all(r.peak_gb > 0 and r.hlo_flops > 0 for r in rows), stage
