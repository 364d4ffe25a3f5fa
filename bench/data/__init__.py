"""The benchmark's data: writing queries, rendering speech, importing corpora, loading, export.

    generate      LLM-written queries with filters and a review sheet (`python -m bench.generate`)
    synth         TTS candidates per style and their selection (`python -m bench.synth`)
    importers     IEMOCAP / MELD as real-speech queries (`python -m bench.importers`)
    loaders       a queries.jsonl as records for other frameworks; tfds_paras2s the TFDS builder
    sft_export    Stage-1 SFT pairs from a rendered set
    audio         reading, validating and writing audio
    make_offline_set  the bundled espeak-ng set (offline/)

The JSON files here are the dimension tables (dimensions.json, dimensions_extension.json).
"""
