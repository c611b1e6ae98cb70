"""Floors for the text-to-text tasks, scored by the package's own evaluation on the
config's own split and references, so every model number has a baseline beside it:

- `lead`: the first three turns of a DialogSum dialogue (the lead baseline of
  summarisation, turns being a dialogue's sentences);
- `overlap`: the sentence of a FairytaleQA context that shares the most words with the
  question (ties: the earlier sentence), chosen by the package's own sentence selection
  (`data.select_sentences` with `keep: 1`).

    python bench/baselines.py --config configs/dialogsum.yaml --baseline lead --split validation
    python bench/baselines.py --config configs/fairytaleqa.yaml --baseline overlap

Prints one table row per metric; reads the split's JSON records as training does
(`sources.jsonl_examples`), so the references are exactly those the model is scored on.
"""

import argparse
import sys

from transformer_tf.config import load_config
from transformer_tf.data.download import fetch
from transformer_tf.data.selection import select_sentences
from transformer_tf.data.sources import iter_lines, jsonl_examples, parse_records
from transformer_tf.evaluation.metrics import corpus_scores


def lead(records, turns=3):
    """The first `turns` lines of each record's dialogue, joined by spaces."""
    lines = ([ln.strip() for ln in r["dialogue"].splitlines() if ln.strip()] for r in records)
    return [" ".join(kept[:turns]) for kept in lines]


def overlap(records):
    """The context sentence of each record with the most distinct words (lower-cased) in
    its question."""
    contexts, questions = ([r[key] for r in records] for key in ("context", "question"))
    return [text.decode("utf-8") for text in select_sentences(contexts, questions, 1).numpy()]


BASELINES = {"lead": lead, "overlap": overlap}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--baseline", choices=sorted(BASELINES), required=True)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set)
    data = config.data
    if data.source != "jsonl":
        sys.exit(f"error: {args.config} reads '{data.source}' data; baselines read JSON records.")
    location = getattr(data, args.split).jsonl
    path = fetch(location, data.cache_dir, data.sha256.get(location))
    records = list(parse_records(iter_lines(path), path))
    examples = jsonl_examples(records, data)
    kept = [(r, refs) for (_, r), (source, _, refs) in zip(records, examples) if source.strip()]
    hypotheses = BASELINES[args.baseline]([record for record, _ in kept])  # as `load_splits`
    references = [refs for _, refs in kept]
    metrics = sorted(set(config.eval.metrics) | {"rouge"})
    scores = corpus_scores(hypotheses, references, metrics, config.eval.tokenize)
    print(f"{args.baseline} baseline, {args.config} {args.split}: {len(hypotheses)} examples")
    print("| metric | score |\n|---|---|")
    for key, value in scores.items():
        if isinstance(value, float):
            print(f"| {key} | {value:.2f} |")
    for key, value in scores.items():
        if key.endswith("_signature"):
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
