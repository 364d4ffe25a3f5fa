"""The benchmark's data: writing queries, rendering speech, importing corpora, loading, export.

    (the commands bench.generate, bench.synth and bench.importers make sets from these)
    corpora       IEMOCAP / MELD readers (`python -m bench.importers`)
    schema        the records: Query, StyleVariant, Judgement; JSONL helpers
    drafts, dimensions, gen_prompts, dedup, review   pieces of query generation
    voicebench_set   a local copy of VoiceBench read in its own layout
    paper_results    the numbers the paper publishes
    loaders       a queries.jsonl as records for other frameworks; tfds_paras2s the TFDS builder
    sft_export    Stage-1 SFT pairs from a rendered set
    audio         reading, validating and writing audio
    make_offline_set  the bundled espeak-ng set (offline/)

The JSON files here are the dimension tables (dimensions.json, dimensions_extension.json).
"""
