"""Numbers published in the ParaS2S paper (ICLR 2026, arXiv 2511.08723), ParaS2SBench,
5-point scale, judged by GPT-4.1. Used as reference rows in comparison reports."""

PAPER_RESULTS: dict[str, dict[str, float]] = {
    "Whisper-GPT-TTS pipeline baseline": {"synthetic": 3.022, "real": 3.487, "overall": 3.176},
    "GPT-4o Voice mode": {"synthetic": 3.284, "real": 3.639, "overall": 3.403},
    "Qwen2.5-Omni": {"synthetic": 3.248, "real": 3.612, "overall": 3.369},
    "GLM-4-Voice": {"synthetic": 3.033, "real": 3.037, "overall": 3.034},
    "Kimi-Audio (base)": {"synthetic": 2.892, "real": 1.265, "overall": 2.350},
    "Kimi-Audio + SFT": {"synthetic": 4.076, "real": 3.714, "overall": 3.955},
    "Kimi-Audio + GRPO": {"synthetic": 4.441, "real": 4.161, "overall": 4.382},
    "GPT-TTS topline": {"synthetic": 4.705, "real": 4.766, "overall": 4.725},
}
