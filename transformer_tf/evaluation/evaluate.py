"""Evaluate a model: decode a split, score it, record the result in the run directory."""

import json
import logging

import tensorflow as tf

from transformer_tf.data.sources import load_splits
from transformer_tf.evaluation.bleu import corpus_scores
from transformer_tf.inference.translator import Translator
from transformer_tf.run import RunDir

log = logging.getLogger(__name__)


def decode_and_score(translator, sources, references, eval_config):
    """Translate `sources` and score them against `references`: (hypotheses, scores)."""
    hypotheses = translator.translate(sources, eval_config.batch_size)
    scores = corpus_scores(hypotheses, references, eval_config.tokenize, eval_config.lowercase)
    return hypotheses, scores


def record_evaluation(run_dir, result, hypotheses, samples, images=None):
    """Write one evaluation to the run: hypotheses and JSON in `eval/`, a line in
    `metrics.jsonl`, scalars (every number in `result`), sample translations as text and
    optional images in the eval TensorBoard log. Returns the hypotheses file."""
    run = RunDir(run_dir)
    split, step = result["split"], result["step"]
    run.eval.mkdir(parents=True, exist_ok=True)
    stem = run.eval / f"{split}-step{step}"
    hypotheses_file = stem.with_suffix(".hyp.txt")
    hypotheses_file.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with run.metrics.open("a", encoding="utf-8") as metrics:
        metrics.write(json.dumps(result) + "\n")
    writer = tf.summary.create_file_writer(str(run.eval_logs))
    with writer.as_default(step=step):
        for key, value in result.items():
            if isinstance(value, float):
                tf.summary.scalar(f"{split}/{key}", value)
        table = ["| source | reference | hypothesis |", "|---|---|---|"]
        table += [f"| {s} | {r} | {h} |" for s, r, h in samples]
        tf.summary.text(f"{split}/samples", "\n".join(table))
        for name, image in (images or {}).items():
            tf.summary.image(f"{split}/{name}", image)
    writer.flush()
    return hypotheses_file


def evaluate_run(config, split=None, translator=None):
    """Decode `split` (default `eval.split`) and record the scores. `translator` defaults
    to the run's latest checkpoint. Returns the result dict, with `samples`: the first
    `eval.samples` (source, reference, hypothesis) triples."""
    split = split or config.eval.split
    translator = translator or Translator.from_run(config)
    sources, references = load_splits(config.data)[split]
    log.info("translating %d %s sentences", len(sources), split)
    hypotheses, scores = decode_and_score(translator, sources, references, config.eval)
    result = {"step": translator.step, "split": split, "sentences": len(sources), **scores}
    samples = list(zip(sources, references, hypotheses))[: config.eval.samples]
    hypotheses_file = record_evaluation(config.run_dir, result, hypotheses, samples)
    return {**result, "hypotheses_file": str(hypotheses_file), "samples": samples}
