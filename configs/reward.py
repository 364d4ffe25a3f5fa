"""Stage 2 (distilled reward model) configs. Presets: `toy` (default), `toy_omni` (the toy
run on the toy-sized Qwen2.5-Omni), `kimi_audio_7b`, `qwen25_omni_7b` and `qwen25_omni_3b`
(the latter from the Qwen2.5-Omni SFT checkpoint; its reward model reads the reply text:
the audio view of a real Omni reply is not wired).

Toy run (after the toy SFT run, 2 CPU cores, a few minutes)::

    python launch/train.py --config configs/reward.py:toy \
        --config.init.path=/tmp/paras2s/sft_toy/checkpoints/600

samples replies of the SFT model to the toy training prompts and to held-out queries,
judges them with the toy rule judge (<workdir>/distill, resumable), trains LoRA adapters
to predict the judge's digit, and prints the held-out Pearson correlation between the
reward model's expected score and the judge. The model (base + adapters) is saved to
<workdir>/reward_model for GRPO.

Paper run (one H100; distillation shards written and judged elsewhere with
paras2s_jax.train.distill from the SFT model, 32 replies for each of 10k queries; every
pair is judged already, hence random selection)::

    python launch/train.py --config configs/reward.py:kimi_audio_7b \
        --config.init.path=/checkpoints/paras2s/sft_7b/checkpoints/1600 \
        --config.distill.selection=random \
        --config.data.train_files='["/data/distill/train/*.jsonl"]'

Distillation scored by the benchmark pipeline (replies spoken by the detokenizer, then
ASR, style captions and the LLM judge of bench.score, cached and resumable)::

    python launch/train.py --config configs/reward.py:kimi_audio_7b \
        --config.init.path=/checkpoints/paras2s/sft_7b/checkpoints/1600 \
        --config.distill.scorer=bench --config.distill.bench.speech_dir=/ckpt/speech \
        --config.distill.bench.args="--queries /data/bench/queries.jsonl --judge openai \
            --judge-model gpt-4.1 --cache /checkpoints/paras2s/bench_cache.sqlite"

adding ``--config.distill.batch=True`` sends each chunk's judge calls as one OpenAI Batch
API job (half price; the run waits for it and a restart resumes polling it). The preset
judges 3/8 of the sampled pool, chosen by uncertainty rounds (`distill.selection`, see
the preset's comments and docs/training.md); ``--config.distill.selection=random``
judges every sampled reply.
"""

from __future__ import annotations

import ml_collections

from configs.base import base_config, toy_omni

PRESETS = ("toy", "toy_omni", "kimi_audio_7b", "qwen25_omni_7b", "qwen25_omni_3b")


def get_config(preset: str = "toy") -> ml_collections.ConfigDict:
    """The reward-model config for `preset` (one of `PRESETS`)."""
    c = base_config()
    c.stage = "reward"  # runs paras2s_jax/train/reward_stage.py
    c.init.source = "orbax"  # the SFT checkpoint (a training step directory)
    # The command that writes init.path (named when the path is missing).
    c.init.made_by = "python launch/train.py --config configs/sft.py:kimi_audio_7b"

    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 16  # adapter rank
    c.lora.alpha = 32.0  # update scale alpha / rank
    c.lora.targets = ["q_proj", "k_proj", "v_proj", "o_proj"]  # adapted projections
    c.lora.within = []  # top-level submodules that get adapters (empty: every one)

    c.reward = ml_collections.ConfigDict()
    # Either a tokenizer directory (tiktoken.model + tokenizer_config.json), from which
    # the suffix text and the digits "1".."5" are encoded, or the ids themselves.
    c.reward.tokenizer_dir = ""
    c.reward.suffix_text = " Score:"  # appended to the text stream after the reply
    c.reward.suffix_ids = [600]  # toy: a reserved id of the tiny vocabulary
    c.reward.digit_ids = [595, 596, 597, 598, 599]  # toy ids standing for "1".."5"
    # What of the reply the RM reads: "audio" (the speech codes: what the benchmark judge
    # hears, through ASR and a style captioner), "text" (the text stream) or "both".
    # Written to <workdir>/reward_model/reward_input.json; GRPO must use the same.
    c.reward.view = "audio"

    c.distill = ml_collections.ConfigDict()  # toy: how the training pairs are made
    c.distill.samples_per_query = 8  # replies per query (paper: 32)
    c.distill.chunk_queries = 32  # queries per resumable shard
    c.distill.sampling = ml_collections.ConfigDict()  # how replies are sampled
    c.distill.sampling.max_new_tokens = 24  # toy replies need ~13 columns
    c.distill.sampling.text_temperature = 1.0  # sample both streams: varied replies
    c.distill.sampling.text_top_k = 0  # full vocabulary
    c.distill.sampling.audio_temperature = 1.0  # varied voices
    c.distill.sampling.audio_top_k = 0  # full vocabulary
    c.distill.sampling.prompt_bucket = 16  # prompts padded to 16 * 2**k columns
    # Who scores the replies: "toy" (the toy world's rule judge; needs toy.enabled) or
    # "bench" (bench.score's pipeline on the detokenised replies; resumable, cached).
    c.distill.scorer = "toy"
    # scorer "bench" with --judge openai: each chunk's judge calls not yet cached go to the
    # OpenAI Batch API as one batch (half price; the run waits for it, a restart resumes it).
    c.distill.batch = False
    # Which sampled training replies are judged: "random" (all of them) or "uncertainty"
    # (the pool is sampled, then `rounds` rounds judge `per_round` replies each: the first
    # at random, each later one the replies whose digit distribution under a reward model
    # fitted for `round_steps` steps on the pairs judged so far has the highest entropy;
    # paras2s_jax/train/select.py). Held-out replies are all judged either way.
    c.distill.selection = "random"
    c.distill.rounds = 4  # judging rounds ("uncertainty")
    # what "least sure" means ("uncertainty"): "entropy" of the digit distribution, or
    # "boundary": expected score nearest a half-integer between two digits
    c.distill.criterion = "entropy"
    c.distill.per_round = 432  # replies judged per round ("uncertainty")
    c.distill.round_steps = 100  # RM steps fitted before each chosen round ("uncertainty")
    c.distill.bench = ml_collections.ConfigDict()
    c.distill.bench.args = ""  # bench.score flags: --queries, --cache, --asr/--style/--judge ...
    c.distill.bench.speech_dir = ""  # glm-4-voice-tokenizer/, audio_detokenizer/, vocoder/ ...
    c.distill.bench.heldout_every = 5  # every 5th benchmark item is held out (Pearson)

    c.toy = ml_collections.ConfigDict()
    c.toy.enabled = False  # distil from the SFT model on the toy world first
    c.toy.data_dir = "/tmp/paras2s/demo/sft/toy_data"  # the SFT run's toy data
    # Training prompts to sample replies for. The toy data's first 432 cover each of the
    # 216 training scenarios twice; 192 covered only 96, and some seeds' reward models
    # fitted those with a rule that missed the unseen held-out scenarios (held-out
    # Pearson 0.46-0.74 over seeds). Distilling is ~1 s per 32 prompts.
    c.toy.num_train_queries = 432

    if preset in ("toy", "toy_omni"):
        c.workdir = "/tmp/paras2s/reward_toy"  # distill/, checkpoints/, reward_model/, tb/
        c.toy.enabled = True  # prompts from the toy world
        c.distill.sampling.prompt_bucket = 20  # toy prompts are 12-18 columns: one shape
        # 16 prompts x 8 replies: the rows of a GRPO rollout, so both run one program
        c.distill.chunk_queries = 16
        c.init.path = "/tmp/paras2s/demo/sft/checkpoints/600"  # the demo's SFT model
        c.init.made_by = "python launch/demo.py"  # writes init.path and toy.data_dir
        c.model.preset = "tiny"  # the CPU-sized model
        c.optimizer.lr = 3e-3  # adapters of a tiny model learn fast
        c.optimizer.warmup_steps = 20  # short warm-up
        c.optimizer.decay_steps = 280  # cosine to the end of the run
        c.data.global_batch = 32  # scored replies per update
        c.data.buckets = [48, 64]  # prompt + reply + suffix of the toy world
        c.train.total_steps = 300  # ~30 s on 2 CPU cores
        c.train.eval_every = 100  # held-out Pearson cadence
        c.train.save_every = 100  # checkpoint cadence
        # The eval pairs are the reported held-out set: ranking checkpoints by them would
        # select on it. The reward model is the last step; keep only the latest steps.
        c.checkpoint.keep_best = 0
        if preset == "toy_omni":
            toy_omni(c)
            c.workdir = "/tmp/paras2s/reward_toy_omni"  # distill/, reward_model/, tb/
            c.init.path = "/tmp/paras2s/demo_omni/sft/checkpoints/900"  # the Omni demo's SFT
            c.toy.data_dir = "/tmp/paras2s/demo_omni/sft/toy_data"  # the Omni demo's toy data
            c.init.made_by = "python launch/demo.py --model qwen25_omni"  # writes both paths
            # Omni prompts are 18-22 columns (chat template + one audio placeholder per code)
            c.distill.sampling.prompt_bucket = 24
            # prompt (18-22) + the reply speech as an audio segment (2 + one placeholder per
            # code: 8-10 for a toy reply) + the suffix: 32 or 48 columns; 128 fits a reply
            # cut at the sampler's 96 codes
            c.data.buckets = [32, 48, 128]
    elif preset == "kimi_audio_7b":
        c.workdir = "/checkpoints/paras2s/reward_7b"  # shared storage on a cluster
        c.model.preset = "kimi_audio_7b"  # the published sizes
        c.model.dtype = "bfloat16"  # H100 compute
        # 9.77B parameters: the frozen base in bf16 is 19.5 GB (2.4 GB per GPU on 8); the
        # rank-16 q/k/v/o adapters (fp32, with Adam) are ~0.1 GB. The base is an argument
        # of the jitted step, never a constant baked into the program.
        c.model.param_dtype = "bfloat16"  # the base is frozen; adapters train in fp32
        c.model.remat = True  # keep only layer-boundary activations for the backward pass
        c.mesh.data = 1  # all devices on the fsdp axis
        c.mesh.fsdp = -1  # paper: one H100; more devices shard the frozen base
        # 32 rows x 4096 in 4 micro-batches: one row per GPU at a time on 8 GPUs
        # (attention scores of a 4096-token row are 1.9 GB in fp32 on the XLA path).
        c.optimizer.accum_steps = 4
        c.optimizer.lr = 1e-6  # paper value
        c.optimizer.warmup_steps = 100  # warm-up
        c.optimizer.decay_steps = 10_000  # cosine over one epoch
        c.data.global_batch = 32  # scored replies per update
        c.data.buckets = [512, 1024, 2048, 4096]  # prompt + reply lengths
        # one epoch of 320k pairs at batch 32 (random selection); 2.7 of the 120k judged
        c.train.total_steps = 10_000
        c.train.eval_every = 500  # held-out Pearson cadence
        c.train.eval_micro_batches = 4  # the held-out forward one row per GPU at a time too
        c.train.save_every = 500  # checkpoint cadence
        # The eval pairs are the reported held-out set: ranking checkpoints by them would
        # select on it. The reward model is the last step; keep only the latest steps.
        c.checkpoint.keep_best = 0
        # Digits and suffix from the tokenizer that `launch/convert.py import` copies.
        c.reward.tokenizer_dir = "/checkpoints/kimi-audio-7b-orbax/tokenizer"  # from convert.py
        c.data.whisper_features = True  # as SFT: the RM hears prompts as the policy does
        # Distillation at the paper's scale: 32 replies for each of 10k queries, a pool of
        # 320k; judging every one is 320k runs of the judge pipeline (ASR + style caption +
        # GPT-4.1). Toy curve (`python launch/ablate.py distill`, docs/demo.md): entropy
        # rounds of 1/16 of the pool came within random selection's full-pool Pearson
        # (0.837 ± 0.013) at 3/8 of the pool (0.832 ± 0.023, no seed collapsed), not at 1/4
        # (0.804 ± 0.068). Hence 6 rounds of 20k: 120k judged, 200k calls saved (62.5%; an
        # extrapolation from a toy whose RM stops gaining from data at ~1/8 of its pool).
        # rounds=1, per_round=40_000 judges a random eighth (no refits; in the toy 0.832 ±
        # 0.007, but random subsets of 1/4 and 1/2 had a seed collapse to 0.66-0.69).
        c.distill.samples_per_query = 32  # paper value
        c.distill.selection = "uncertainty"  # judged rounds: the replies the RM is least sure of
        c.distill.per_round = 20_000  # 1/16 of the 320k pool, the toy's round size
        c.distill.rounds = 6  # 120k judged: 3/8 of the pool
        # Each refit (before rounds 1-5): 1,250 steps of 32 = 2 epochs of round 0's 20k
        # pairs (0.4 of round 5's 100k), from the initial adapters; the toy refits for its
        # full 300 steps. Then the unjudged replies (300k down to 220k) are scored, forward
        # only: 1.3M forward rows in all, the compute paid for the saved judge calls.
        c.distill.round_steps = 1_250
    elif preset in ("qwen25_omni_7b", "qwen25_omni_3b"):
        c.workdir = f"/checkpoints/paras2s/reward_{preset}"  # shared storage on a cluster
        c.model.family = "qwen25_omni"  # thinker + audio encoder + talker
        c.model.preset = preset  # the published sizes
        c.model.dtype = "bfloat16"  # H100 compute
        c.model.param_dtype = "bfloat16"  # the base is frozen; adapters train in fp32
        c.model.remat = True  # keep only layer-boundary activations for the backward pass
        c.init.path = f"/checkpoints/paras2s/sft_{preset}/checkpoints/1600"  # the SFT model
        c.init.made_by = f"python launch/train.py --config configs/sft.py:{preset}"  # writes it
        c.data.whisper_features = False  # prompts as log-mel, as the policy hears them
        c.mesh.data = 1  # all devices on the fsdp axis
        c.mesh.fsdp = -1  # more devices shard the frozen base
        c.optimizer.lr = 1e-6  # paper value
        c.optimizer.warmup_steps = 100  # warm-up
        c.optimizer.decay_steps = 10_000  # cosine over one epoch
        c.data.global_batch = 32  # scored replies per update
        c.data.buckets = [512, 1024, 2048, 4096]  # prompt + reply + suffix lengths
        # 32 rows x 4096 in 4 micro-batches, one row a GPU at a time on 8 GPUs: `launch/
        # plan.py` peaks at 19.1 GB (7B) / 10.9 GB (3B) on 8 fake CPU devices (54.8 /
        # 46.3 GB with adapters in the audio encoder too: see `lora.within` below).
        c.optimizer.accum_steps = 4
        c.train.total_steps = 10_000  # one epoch of 320k pairs at batch 32
        c.train.eval_every = 500  # held-out Pearson cadence
        c.train.eval_micro_batches = 4  # one row a GPU at a time: 18.5 / 10.1 GB
        c.train.save_every = 500  # checkpoint cadence
        c.checkpoint.keep_best = 0  # the last step is the reward model (see kimi_audio_7b)
        # Suffix and digits from the checkpoint's Qwen2 tokenizer.
        c.reward.tokenizer_dir = f"/checkpoints/{preset}-hf"  # the HF checkpoint directory
        c.reward.view = "text"  # the reply text (the only view wired for a real checkpoint)
        # Adapters on the thinker only: the RM reads the thinker's digit logits, and a
        # frozen audio encoder needs no backward pass.
        c.lora.within = ["thinker"]
        c.distill.samples_per_query = 32  # paper value
        c.distill.selection = "random"  # the pairs are judged elsewhere (see the header)
    else:
        raise ValueError(f"configs/reward.py: unknown preset {preset!r}; use {PRESETS}")
    return c
