"""Evaluate a trained run: decode a split, score it, record the result."""

import json
import logging

import tensorflow as tf

from transformer_tf.data.sources import load_splits
from transformer_tf.evaluation.bleu import corpus_scores
from transformer_tf.inference.translator import Translator
from transformer_tf.run import RunDir

log = logging.getLogger(__name__)


def evaluate_run(config, split=None, translator=None):
    """Decode `split` (default `eval.split`) with the run's latest checkpoint and score it.

    Writes `<run_dir>/eval/<split>-step<N>.hyp.txt` and `.json`, appends to
    `metrics.jsonl` and to the eval TensorBoard log. Returns the result dict, with
    `samples`: the first `eval.samples` (source, reference, hypothesis) triples.
    """
    split = split or config.eval.split
    run = RunDir(config.run_dir)
    if translator is None:
        translator = Translator.from_run(config)
    sources, references = load_splits(config.data)[split]
    log.info("translating %d %s sentences", len(sources), split)
    hypotheses = translator.translate(sources, config.eval.batch_size)
    result = {"step": translator.step, "split": split, "sentences": len(sources),
              **corpus_scores(hypotheses, references, config.eval.tokenize,
                              config.eval.lowercase)}

    run.eval.mkdir(parents=True, exist_ok=True)
    stem = run.eval / f"{split}-step{translator.step}"
    stem.with_suffix(".hyp.txt").write_text("".join(h + "\n" for h in hypotheses),
                                            encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with run.metrics.open("a", encoding="utf-8") as metrics:
        metrics.write(json.dumps(result) + "\n")
    writer = tf.summary.create_file_writer(str(run.eval_logs))
    with writer.as_default(step=translator.step):
        tf.summary.scalar(f"{split}/bleu", result["bleu"])
        tf.summary.scalar(f"{split}/chrf", result["chrf"])
    writer.flush()
    result["hypotheses_file"] = str(stem.with_suffix(".hyp.txt"))
    result["samples"] = list(zip(sources, references, hypotheses))[: config.eval.samples]
    return result
