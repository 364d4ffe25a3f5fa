"""sd-qa's PEDANT score (VoiceBench reports it beside the judge's), from the qa-metrics package.

qa-metrics fetches its classifier (two joblib files) from the network the first time PEDANT
is built; nothing is fetched here, so the files must be given: `--pedant-model DIR` with
`lr_classifier.pkl` and `tf-idf_vectorizer.pkl` from qa-metrics (VoiceBench pins
qa-metrics==0.2.17).
"""

from __future__ import annotations

from pathlib import Path

FILES = ("lr_classifier.pkl", "tf-idf_vectorizer.pkl")


class PedantScorer:
    """PEDANT's verdict on one sd-qa reply, asked as VoiceBench asks it (all lower case)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"--pedant-model {folder}: no {', '.join(missing)}; copy qa-metrics's "
                             f"classifier files ({', '.join(FILES)}) there (qa-metrics downloads "
                             "them on first use, which this runner does not)")
        try:
            import joblib
            from qa_metrics.pedant import PEDANT
        except ImportError as err:
            raise ValueError(f"--pedant-model needs the qa-metrics package ({err}); VoiceBench "
                             "used `pip install qa-metrics==0.2.17`") from None
        # PEDANT's constructor downloads the classifier; build it around the given files.
        self._pedant = PEDANT.__new__(PEDANT)
        self._pedant.model = joblib.load(folder / FILES[0])
        self._pedant.tokenizer = joblib.load(folder / FILES[1])

    def score(self, reference: str, response: str, prompt: str) -> float:
        """1.0 when PEDANT accepts the reply as matching the reference, else 0.0."""
        return float(self._pedant.evaluate([reference.lower()], response.lower(),
                                           prompt.lower()))
