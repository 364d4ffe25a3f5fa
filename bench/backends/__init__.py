"""What the scorer calls: one small protocol per role, a remote and an offline back end each.

    asr       speech -> text (OpenAI-compatible API, local openai-whisper, pocketsphinx)
    style     speech -> style caption (audio LLM, or prosody analysis in prosody.py)
    judge     transcripts + captions -> a 1-5 score (LLM judge, transparent rule judge)
    tts       text + style -> speech (OpenAI-compatible API, espeak-ng)
    systems   the speech-to-speech systems under test (wav folder, endpoint, cascade)
    remote, cache, runtime   endpoints, retries, rate limits, the on-disk answer cache
"""
