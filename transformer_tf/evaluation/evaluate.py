"""Evaluate a model: decode a split, score it, record the result in the run directory."""

import json
import logging

import tensorflow as tf

from transformer_tf.evaluation.metrics import corpus_scores, format_scores
from transformer_tf.run_dir import RunDir

log = logging.getLogger(__name__)


def decode_and_score(translator, sources, references, eval_config):
    """Translate `sources` and score them against `references` (one list of references
    each) with `eval_config.metrics`: (hypotheses, scores)."""
    hypotheses = translator.translate(sources, eval_config.batch_size)
    warn_if_source_ignored(sources, hypotheses)
    scores = corpus_scores(
        hypotheses, references, eval_config.metrics, eval_config.tokenize, eval_config.lowercase
    )
    return hypotheses, scores


def warn_if_source_ignored(sources, hypotheses):
    """Warn (and return True) when at least 20 different sources got under a tenth as many
    different outputs: the model writes the same text whatever it reads. Normal in the first
    updates; later it is an encoder whose outputs collapsed to one vector (measured on
    DialogSum, docs/results.md)."""
    inputs, outputs = len(set(sources)), len(set(hypotheses))
    if inputs < 20 or outputs * 10 >= inputs:
        return False
    log.warning(
        "warning: %d different inputs got %d different outputs: the model is not using "
        "its source (see docs/results.md, 'When the encoder collapses')",
        inputs,
        outputs,
    )
    return True


def sample_rows(sources, references, hypotheses, count):
    """The first `count` (source, first reference, hypothesis) triples, to print or log."""
    return [(s, refs[0], h) for s, refs, h in zip(sources, references, hypotheses)][:count]


def record_evaluation(run_dir, result, hypotheses, samples, images=None):
    """Write one evaluation into `run_dir` (a run directory, or any output folder):
    hypotheses and JSON in `eval/`, a line in `metrics.jsonl`, scalars (every float in
    `result`), sample translations as text and optional images in `logs/eval`. Returns the
    hypotheses file."""
    run = RunDir(run_dir)
    name, step = result["split"], result["step"]
    run.eval.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-step{step}" if step is not None else name
    if result.get("averaged_checkpoints", 1) > 1:  # not the file of checkpoint `step` alone
        stem += f"-mean{result['averaged_checkpoints']}"
    if result.get("ensemble_size", 1) > 1:
        stem += f"-ensemble{result['ensemble_size']}"
    hypotheses_file = run.eval / f"{stem}.hyp.txt"
    hypotheses_file.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    (run.eval / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with run.metrics.open("a", encoding="utf-8") as metrics:
        metrics.write(json.dumps(result) + "\n")
    writer = tf.summary.create_file_writer(str(run.eval_logs))
    with writer.as_default(step=step or 0):
        for key, value in result.items():
            if isinstance(value, float):
                tf.summary.scalar(f"{name}/{key}", value)
        table = ["| source | reference | hypothesis |", "|---|---|---|"]
        # One line per row: a dialogue's line breaks would end the Markdown table row.
        table += [
            "| " + " | ".join(" ".join(text.split()) for text in row) + " |" for row in samples
        ]
        tf.summary.text(f"{name}/samples", "\n".join(table))
        for image_name, image in (images or {}).items():
            tf.summary.image(f"{name}/{image_name}", image)
    writer.flush()
    return hypotheses_file


def evaluate(translator, sources, references, eval_config, output_dir, name):
    """Decode `sources`, score against `references` (a list of references for each),
    record into `output_dir`.

    Returns an `Evaluation`: the result dict, with `hypotheses_file` and `samples`, the
    first `eval_config.samples` (source, reference, hypothesis) triples.
    """
    log.info("translating %d sentences (%s)", len(sources), name)
    hypotheses, scores = decode_and_score(translator, sources, references, eval_config)
    result = {"step": translator.step, "split": name, "sentences": len(sources), **scores}
    if getattr(translator, "averaged", 1) > 1:  # a SavedModel does not say
        result["averaged_checkpoints"] = translator.averaged
    if getattr(translator, "ensemble_size", 1) > 1:
        result["ensemble_size"] = translator.ensemble_size
    samples = sample_rows(sources, references, hypotheses, eval_config.samples)
    hypotheses_file = record_evaluation(output_dir, result, hypotheses, samples)
    return Evaluation(result, hypotheses_file=str(hypotheses_file), samples=samples)


class Evaluation(dict):
    """An evaluation's result: scores, signatures, `step`, `split`, `sentences`,
    `hypotheses_file` and `samples` (source, reference, hypothesis). `str()` is the report
    a person reads."""

    def __str__(self):
        return report(self)


def report(result):
    """An evaluation result as the lines a person reads: scores, what was decoded,
    signatures, the hypotheses file and the samples."""
    averaged = result.get("averaged_checkpoints")
    where = f"step {result['step']}" + (
        f", mean of the last {averaged} checkpoints" if averaged else ""
    )
    if result.get("ensemble_size"):
        where += f", ensemble of {result['ensemble_size']} runs"
    lines = [
        f"{result['split']} {format_scores(result)}  ({result['sentences']} sentences, {where})"
    ]
    lines += [f"  {result[key]}" for key in sorted(result) if key.endswith("_signature")]
    lines.append(f"  hypotheses: {result['hypotheses_file']}")
    for source, reference, hypothesis in result["samples"]:
        lines.append(
            f"  source:     {source}\n  reference:  {reference}\n  hypothesis: {hypothesis}"
        )
    return "\n".join(lines)
