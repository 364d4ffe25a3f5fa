"""Stage 1 (SFT) configs. Presets: `toy` (default), `toy_omni` (the toy run on the
toy-sized Qwen2.5-Omni: `python launch/train.py --config configs/sft.py:toy_omni`),
`kimi_audio_7b`, `qwen25_omni_7b` and `qwen25_omni_3b`.

Toy run (tiny model, 2 CPU cores, a few minutes)::

    python launch/train.py --config configs/sft.py:toy

writes the toy world's demonstrations to <workdir>/toy_data, trains the tiny Kimi-Audio
on them (~1.5 minutes), and prints the toy judge's mean held-out score of the untrained
model (1.0) and of the SFT model (about 4.5 of 5: right content, the fitting voice about
half the time, as in the imperfect demonstrations; RL has the rest to gain). Metrics go to
<workdir>/tb (TensorBoard), checkpoints to <workdir>/checkpoints; killing and
restarting the same command resumes from the last checkpoint.

Paper run (8x H100, Kimi-Audio-7B converted to a HF safetensors directory)::

    python launch/train.py --config configs/sft.py:kimi_audio_7b \
        --config.init.path=/ckpt/kimi-audio-7b --config.data.train_files='["/data/sft-*.jsonl"]'

Qwen2.5-Omni (the HF checkpoint directory as published; prompts are log-mel files,
record field "prompt_mel", see paras2s_jax/policy/qwen_omni_data.py)::

    python launch/train.py --config configs/sft.py:qwen25_omni_7b \
        --config.init.path=/ckpt/Qwen2.5-Omni-7B --config.data.train_files='["/data/omni-*.jsonl"]'

Any field can be overridden: `--config.optimizer.lr=3e-5 --config.train.total_steps=50`.
"""

from __future__ import annotations

import ml_collections

from configs.base import base_config, toy_omni

# every preset get_config accepts (tests load each)
PRESETS = ("toy", "toy_omni", "kimi_audio_7b", "qwen25_omni_7b", "qwen25_omni_3b")


def get_config(preset: str = "toy") -> ml_collections.ConfigDict:
    """The SFT config for `preset` (one of `PRESETS`)."""
    c = base_config()
    c.stage = "sft"  # runs paras2s_jax/train/sft_stage.py

    c.loss = ml_collections.ConfigDict()
    c.loss.weights = ml_collections.ConfigDict()
    c.loss.weights.text = 1.0  # weight of the text-stream CE (reply text tokens)
    c.loss.weights.audio = 1.0  # weight of the audio-stream CE (reply audio codes)

    c.toy = ml_collections.ConfigDict()
    c.toy.enabled = False  # generate the toy world's data and use it as train/eval files
    c.toy.judge = False  # score held-out toy queries with the rule judge before/after
    c.toy.queries = ""  # held-out query file (set automatically when toy.enabled)
    c.toy.eval_seed = 0  # sampling RNG of the judge evaluation
    # Also judge at every eval step ("eval/toy_score"); rank checkpoints by it with
    # --config.checkpoint.best_metric=eval/toy_score --config.checkpoint.best_mode=max.
    c.toy.judge_in_eval = False  # costs one sampling pass per eval
    c.toy.data = ml_collections.ConfigDict()  # see paras2s_jax/toyworld/demos.py
    c.toy.data.seed = 0  # world split and rendering noise
    c.toy.data.eval_fraction = 0.25  # share of (template, topic) texts held out
    c.toy.data.renderings = 8  # demonstrations per (text, style)
    c.toy.data.speaker_noise = 0.1  # chance a prosody code is from a random style
    c.toy.data.p_right_content = 0.8  # demos with the fitting reply (else generic)
    c.toy.data.p_right_voice = 0.5  # demos in the fitting voice (else neutral)
    c.toy.data.num_shards = 4  # training JSONL shards
    c.toy.data.general_renderings = 8  # demos per general-ability request (forgetting probe)
    c.toy.sampling = ml_collections.ConfigDict()  # reply sampling for the judge
    c.toy.sampling.max_new_tokens = 24  # reply columns (toy replies need ~13)
    c.toy.sampling.text_temperature = 0.0  # greedy text
    c.toy.sampling.text_top_k = 5  # text top-k (unused when greedy)
    c.toy.sampling.audio_temperature = 0.8  # audio sampling temperature
    c.toy.sampling.audio_top_k = 10  # audio top-k
    c.toy.sampling.batch_size = 64  # prompts per sampler call
    c.toy.sampling.prompt_bucket = 16  # prompts padded to 16 * 2**k columns (one compile each)

    if preset in ("toy", "toy_omni"):
        c.workdir = "/tmp/paras2s/sft_toy"  # toy_data/, checkpoints/, tb/, results.json
        c.toy.enabled = True  # train on the toy world
        c.toy.judge = True  # print base vs SFT judge scores
        c.toy.sampling.prompt_bucket = 20  # toy prompts are 12-18 columns: one shape
        c.model.preset = "tiny"  # ~0.5M parameters, CPU
        c.mesh.data = -1  # pure data parallel over whatever devices exist
        c.optimizer.lr = 3e-3  # a tiny model from scratch wants a large lr
        c.optimizer.warmup_steps = 50  # ~1 epoch of toy data
        c.optimizer.decay_steps = 550  # cosine to the end of the run
        c.optimizer.weight_decay = 0.01  # light regularisation
        c.data.global_batch = 32  # toy sequences per update
        c.data.buckets = [32, 48, 64]  # toy sequences are ~30 tokens
        c.train.total_steps = 600  # ~1-2 minutes on 2 CPU cores
        c.train.eval_every = 100  # eval loss on held-out demonstrations
        c.train.save_every = 100  # checkpoint cadence
        if preset == "toy_omni":
            toy_omni(c)
            c.workdir = "/tmp/paras2s/sft_toy_omni"  # as toy: toy_data/, checkpoints/, tb/
            # An Omni batch pads its prompt (18-22 ids), reply text (at most 5 with the
            # stop) and reply codes (at most 9) to a bucket each: 24, 16 and 16, one
            # shape for every batch (one compiled train step).
            c.data.buckets = [16, 24, 32]
            # Omni prompts are 18-22 columns (chat template + one audio placeholder per code)
            c.toy.sampling.prompt_bucket = 24
            # 900 steps: the Omni thinker hears the prompt through its audio encoder and
            # learns the general-ability requests later than Kimi-Audio (general-ability
            # probe 2.9 after 600 steps, 4.3-4.4 after 900; held-out toy score 4.3-4.5
            # after either); 1200 overfit the training texts (held-out 4.1, age 3.3).
            c.train.total_steps = 900
            c.optimizer.decay_steps = 850  # cosine to the end of the run
    elif preset == "kimi_audio_7b":
        c.workdir = "/checkpoints/paras2s/sft_7b"  # shared storage on a cluster
        c.model.preset = "kimi_audio_7b"  # the published sizes
        c.model.dtype = "bfloat16"  # H100 compute
        # fp32 master weights: a 1e-5 update is below bf16 resolution for most weights;
        # 9.77B x (4 + 8 Adam) bytes = 117 GB, 14.7 GB per GPU with 8-way FSDP.
        c.model.param_dtype = "float32"  # master weights (see above)
        # Each layer's activations are recomputed in the backward pass: only the residual
        # stream at layer boundaries is kept (8 rows x 4096 x 3584 bf16 = 235 MB a layer).
        c.model.remat = True
        c.init.source = "hf"  # set --config.init.path to the converted checkpoint
        c.mesh.data = 1  # all 8 devices on the fsdp axis
        c.mesh.fsdp = 8  # paper: 8-way FSDP on 8 H100s
        c.optimizer.lr = 1e-5  # paper value
        c.optimizer.warmup_steps = 20  # short warm-up from the pretrained model
        c.optimizer.decay_steps = 1500  # cosine over the run
        c.data.global_batch = 64  # paper value
        # 8 micro-batches of 8 rows: one 4096-token row per GPU at a time. XLA's attention
        # keeps [heads, L, L] fp32 scores (1.9 GB a row at 4096), the chunked heads one
        # [row, 512, 168448] fp32 chunk; `launch/plan.py` measures a 44 GB peak per device
        # on 8 fake CPU devices (accumulation 1: 1.5 TB). Accumulation keeps the true
        # token mean (losses are divided by the global token count).
        c.optimizer.accum_steps = 8
        c.data.whisper_features = True  # Kimi-Audio hears prompts through Whisper too
        c.data.buckets = [512, 1024, 2048, 4096]  # speech prompts up to ~5 min
        c.train.total_steps = 1600  # ~10 epochs of 10k prompts at batch 64
        c.train.eval_every = 200  # eval loss cadence
        # The eval forward in 8 parts of 8 rows too: all 64 rows of 4096 at once need
        # 61.6 GB per device in the plan.
        c.train.eval_micro_batches = 8
        c.train.save_every = 200  # checkpoint cadence
    elif preset in ("qwen25_omni_7b", "qwen25_omni_3b"):
        c.workdir = f"/checkpoints/paras2s/sft_{preset}"  # shared storage on a cluster
        c.model.family = "qwen25_omni"  # thinker + audio encoder + talker
        c.model.preset = preset  # the published sizes
        c.model.dtype = "bfloat16"  # H100 compute
        c.model.param_dtype = "float32"  # fp32 master weights, as for Kimi-Audio
        c.model.remat = True  # keep only layer-boundary activations for the backward pass
        c.init.source = "hf"  # set --config.init.path to the HF checkpoint directory
        c.data.whisper_features = False  # the thinker hears prompts as log-mel only
        c.mesh.data = 1  # all 8 devices on the fsdp axis
        c.mesh.fsdp = 8  # 8-way FSDP on 8 H100s, as for Kimi-Audio
        c.optimizer.lr = 1e-5  # the paper's SFT rate
        c.optimizer.warmup_steps = 20  # short warm-up from the pretrained model
        c.optimizer.decay_steps = 1500  # cosine over the run
        c.data.global_batch = 64  # paper value
        # The prompt, the reply text and the reply codes are each padded to a bucket:
        # up to 1024 prompt tokens (~40 s of speech at 25 audio tokens a second), 1024
        # reply text ids and 1024 reply codes. `launch/plan.py` (8 fake CPU devices): with
        # a 2048 bucket the 7B step below needs 67.4 GB per device (52.9 GB temporaries).
        c.data.buckets = [256, 512, 1024]
        # 8 micro-batches of 8 rows: one row a GPU at a time. `launch/plan.py` at 1024
        # for all three (8 fake CPU devices) peaks at 50.1 GB (7B) / 33.1 GB (3B).
        c.optimizer.accum_steps = 8
        c.train.total_steps = 1600  # ~10 epochs of 10k prompts at batch 64
        c.train.eval_every = 200  # eval loss cadence
        # The eval forward in 8 parts of one row a GPU too: 14.0 GB (7B) / 8.1 GB (3B).
        c.train.eval_micro_batches = 8
        c.train.save_every = 200  # checkpoint cadence
    else:
        raise ValueError(f"configs/sft.py: unknown preset {preset!r}; use one of {PRESETS}")
    return c
