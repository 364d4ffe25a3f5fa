"""Duplicate removal among candidate queries.

Always: exact match after normalisation (case, punctuation, spacing). Optionally, when
a local sentence-embedding model is installed: cosine similarity of mean-pooled
embeddings above a threshold (near-paraphrases such as "I got my results back today"
vs "Today I got my results back"). No model is downloaded: pass a local directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bench.backends.remote import ConfigError
from bench.data.drafts import Draft, Verdict, normalise

Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> [N, D] vectors


def hf_embedder(model_dir: str) -> Embedder:
    """Mean-pooled embeddings of a local Hugging Face encoder (e.g. a MiniLM copy)."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise ConfigError(f"--embed-model needs torch and transformers installed ({err})") from None
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    except OSError as err:
        raise ConfigError(f"--embed-model {model_dir}: not a local model directory ({err})"
                          ) from None

    def embed(texts: Sequence[str]) -> np.ndarray:
        with torch.no_grad():
            batch = tok(list(texts), padding=True, truncation=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy()

    return embed


def deduplicate(drafts: Sequence[Draft], embed: Embedder | None = None,
                threshold: float = 0.92, seen: Sequence[Draft] = ()
                ) -> tuple[list[Draft], list[Draft]]:
    """(unique, duplicates): first occurrence wins; `seen` are earlier drafts to compare to.

    Duplicates get a failed `duplicate` verdict naming the draft they repeat.
    """
    keys = {normalise(d.text): d.id for d in seen}
    unique, dups = [], []
    for d in drafts:
        first = keys.get(normalise(d.text))
        if first is not None:
            dups.append(d.with_verdict(Verdict("duplicate", False,
                                               f"same text as {first} after normalisation")))
            continue
        keys[normalise(d.text)] = d.id
        unique.append(d)
    if embed is None or len(unique) + len(seen) < 2:
        return unique, dups
    pool = list(seen) + unique
    vecs = np.asarray(embed([d.text for d in pool]), dtype=np.float64)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    kept_idx: list[int] = list(range(len(seen)))
    out = []
    for i in range(len(seen), len(pool)):
        sims = vecs[kept_idx] @ vecs[i] if kept_idx else np.zeros(0)
        j = int(np.argmax(sims)) if len(sims) else -1
        if j >= 0 and sims[j] >= threshold:
            dups.append(pool[i].with_verdict(Verdict(
                "duplicate", False, f"embedding similarity {sims[j]:.3f} >= {threshold} with "
                                    f"{pool[kept_idx[j]].id}")))
        else:
            kept_idx.append(i)
            out.append(pool[i])
    return out, dups
