#!/bin/bash
# SFT of Kimi-Audio-7B on one node with 8 GPUs: one process per GPU, 8-way FSDP.
#
#   sbatch launch/slurm_example.sh
#
# launch/train.py sees SLURM_NTASKS > 1 and calls jax.distributed.initialize(), which
# reads the coordinator address, process count and rank from the SLURM environment.
# Every process reads only its share of each global batch (config.data.global_batch).
# Multi-node: raise --nodes; keep one task per GPU and mesh.fsdp * mesh.data = total GPUs.
#SBATCH --job-name=paras2s-sft
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=12
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"

CKPT=${CKPT:-/checkpoints/kimi-audio-7b}          # HF safetensors dir (launch/convert.py)
DATA=${DATA:-/data/paras2s/sft}                   # JSONL shards of SFT demonstrations
WORKDIR=${WORKDIR:-/checkpoints/paras2s/sft_7b}   # shared filesystem: checkpoints, TensorBoard

srun --kill-on-bad-exit=1 .venv/bin/python launch/train.py \
  --config configs/sft.py:kimi_audio_7b \
  --config.init.path="$CKPT" \
  --config.data.train_files="$(python3 -c "import glob, json; print(json.dumps(sorted(glob.glob('$DATA/train-*.jsonl'))))")" \
  --config.data.eval_files="[\"$DATA/eval.jsonl\"]" \
  --config.workdir="$WORKDIR"
# Re-submitting the same job resumes from the latest checkpoint in $WORKDIR/checkpoints.
