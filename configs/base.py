"""Fields every training stage shares. Stage files (sft.py, ...) start from `base_config()`.

Not a runnable config by itself; see configs/sft.py for the run command.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all stages (tiny CPU sizes; presets override them)."""
    c = ml_collections.ConfigDict()
    c.stage = ""  # which stage runs: "sft" (later "reward", "grpo"); see train/stages.py
    c.seed = 0  # parameter init and the per-step RNG (fold_in(rng, step))
    c.workdir = "/tmp/paras2s/run"  # checkpoints/, tb/ (TensorBoard + profiles), results.json

    c.model = ml_collections.ConfigDict()
    # Which model: "kimi_audio" or "qwen25_omni" (paras2s_jax/model/families.py).
    c.model.family = "kimi_audio"
    c.model.preset = "tiny"  # a preset of the family: "tiny" (CPU) or the published sizes
    c.model.dtype = "float32"  # compute dtype: "float32" or "bfloat16"
    c.model.param_dtype = "float32"  # parameter storage dtype
    c.model.remat = False  # rematerialise decoder layers in the backward pass (memory)
    # Any other config field: Kimi-Audio's, e.g. --config.model.overrides.audio_delay=6;
    # Qwen2.5-Omni's per part, e.g. --config.model.overrides.talker.num_layers=2.
    c.model.overrides = ml_collections.ConfigDict()

    c.init = ml_collections.ConfigDict()
    c.init.source = "fresh"  # "fresh" (random init), "hf" (safetensors dir), "orbax" (our ckpt)
    c.init.path = ""  # HF checkpoint directory, or one step directory of our checkpoints

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # data-parallel ways (-1: all devices the other axes leave)
    c.mesh.fsdp = 1  # parameter/optimizer sharding ways (paper: 8-way FSDP on 8 H100s)
    c.mesh.tensor = 1  # tensor-parallel ways

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.lr = 1e-5  # peak learning rate (paper SFT: 1e-5)
    c.optimizer.warmup_steps = 0  # linear warm-up steps from 0
    c.optimizer.decay_steps = 1000  # cosine decay steps after warm-up
    c.optimizer.end_lr_ratio = 0.1  # final lr as a fraction of the peak
    c.optimizer.b1 = 0.9  # AdamW beta1
    c.optimizer.b2 = 0.95  # AdamW beta2
    c.optimizer.eps = 1e-8  # AdamW epsilon
    c.optimizer.weight_decay = 0.0  # decoupled weight decay
    c.optimizer.grad_clip = 1.0  # global-norm gradient clip (0: off)
    c.optimizer.accum_steps = 1  # micro-batches per update (gradient accumulation)

    c.data = ml_collections.ConfigDict()
    c.data.train_files = []  # JSONL or .array_record shards (list of paths)
    c.data.eval_files = []  # held-out shards for the eval loss (empty: no eval)
    c.data.global_batch = 64  # sequences per update, summed over all hosts (paper: 64)
    c.data.buckets = [256, 512, 1024, 2048]  # padded lengths; a batch takes the smallest fit
    c.data.shuffle_seed = 0  # grain shuffle seed (a new permutation each epoch)
    c.data.whisper_features = False  # feed prompt Whisper features (record "prompt_features")

    c.train = ml_collections.ConfigDict()
    c.train.total_steps = 1000  # optimizer updates
    c.train.eval_every = 100  # steps between eval-loss passes (0: never)
    # The eval forward takes each global batch's rows in this many parts, one after
    # another (memory, like optimizer.accum_steps for the train step; must divide
    # data.global_batch). `launch/plan.py` plans it.
    c.train.eval_micro_batches = 1
    c.train.save_every = 100  # steps between checkpoints (and always at the end)
    c.train.profile_start = -1  # first step of the jax.profiler trace (-1: no trace)
    c.train.profile_steps = 3  # steps traced
    c.train.progress = True  # tqdm bar with ETA on process 0

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.keep_last = 2  # most recent checkpoints kept
    c.checkpoint.keep_best = 1  # best checkpoints kept by best_metric (0: none)
    c.checkpoint.best_metric = "eval/loss"  # metric that ranks checkpoints
    c.checkpoint.best_mode = "min"  # "min" or "max"
    c.checkpoint.async_save = True  # write in the background while training goes on

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""  # "host:port" of process 0 (empty: from SLURM env or single)
    c.distributed.num_processes = 1  # processes in the job (ignored when detected from SLURM)
    c.distributed.process_id = 0  # this process's index
    c.distributed.cpu_collectives = "gloo"  # CPU-only multi-process collectives backend
    return c


def toy_omni(c: ml_collections.ConfigDict) -> None:
    """Turn a stage's `toy` preset into its `toy_omni` one: the same run on the toy-sized
    Qwen2.5-Omni (paras2s_jax/model/families.py: "qwen25_omni" preset "toy")."""
    c.model.family = "qwen25_omni"  # thinker (text) + talker (speech codes)
    c.model.preset = "toy"  # sized like Kimi-Audio's tiny; vocabularies cover the toy world
