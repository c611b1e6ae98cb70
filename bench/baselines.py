"""Floors for the text-to-text tasks, scored by the package's own evaluation on the
config's own split and references, so every model number has a baseline beside it:

- `lead`: the first three turns of a DialogSum dialogue (the lead baseline of
  summarisation, turns being a dialogue's sentences);
- `overlap`: the sentence of a FairytaleQA context that shares the most words with the
  question (ties: the earlier sentence).

    python bench/baselines.py --config configs/dialogsum.yaml --baseline lead --split validation
    python bench/baselines.py --config configs/fairytaleqa.yaml --baseline overlap

Prints one table row per metric; reads the split's JSON records as training does
(`sources.jsonl_example`), so the references are exactly those the model is scored on.
"""

import argparse
import re
import sys

from transformer_tf.config import load_config
from transformer_tf.data.download import fetch
from transformer_tf.data.sources import iter_lines, jsonl_example, parse_records
from transformer_tf.evaluation.metrics import corpus_scores

WORD = re.compile(r"\w+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def lead(record, turns=3):
    """The first `turns` lines of the record's dialogue, joined by spaces."""
    lines = [line.strip() for line in record["dialogue"].splitlines() if line.strip()]
    return " ".join(lines[:turns])


def overlap(record):
    """The context sentence with the most distinct words (lower-cased) in the question."""
    question = set(WORD.findall(record["question"].lower()))
    sentences = [s for s in SENTENCE_END.split(record["context"].strip()) if s.strip()]
    return max(sentences, key=lambda s: len(question & set(WORD.findall(s.lower()))))


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
    hypotheses, references = [], []
    for where, record in parse_records(iter_lines(path), path):
        source, _, refs = jsonl_example(record, data, where)
        if source.strip():  # as `load_splits` keeps them
            hypotheses.append(BASELINES[args.baseline](record))
            references.append(refs)
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
