"""Qwen2.5-Omni (audio and text) in Flax NNX."""
