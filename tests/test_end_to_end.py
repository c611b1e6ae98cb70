"""A tiny run through the command line: train, checkpoints, resume, TensorBoard,
evaluate, export, and the SavedModel served without this package."""

import json

import numpy as np
import sacrebleu
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from transformer_tf.cli import main
from transformer_tf.config import load_config
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner

from conftest import serve_in_fresh_process, tiny_args


def _events(log_dir):
    """{tag: {step: numpy value}} from the TensorBoard event files in `log_dir`."""
    events = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {tag: {e.step: tf.make_ndarray(e.tensor_proto) for e in events.Tensors(tag)}
            for tag in events.Tags()["tensors"]}


def _scalars(log_dir):
    """{tag: {step: float}} of the scalar summaries in `log_dir`."""
    return {tag: {step: float(value) for step, value in steps.items()}
            for tag, steps in _events(log_dir).items()
            if all(value.dtype.kind == "f" for value in steps.values())}


def test_loss_falls_and_tensorboard_has_the_scalars(trained_run):
    train = _scalars(trained_run / "logs" / "train")
    assert set(train) == {"loss", "accuracy", "learning_rate", "grad_norm", "tokens_per_second"}
    assert sorted(train["loss"]) == [50, 100, 150]
    assert train["loss"][150] < 0.8 * train["loss"][50]
    assert train["accuracy"][150] > train["accuracy"][50]
    evaluation = _events(trained_run / "logs" / "eval")
    assert set(evaluation) == {"test/bleu", "test/chrf", "test/samples"}
    assert 150 in evaluation["test/bleu"]
    assert b"The cat sat on the mat." in evaluation["test/samples"][150].item()


def test_checkpoint_restores_weights_optimizer_slots_and_step(each_trained_run):
    run = each_trained_run
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-100.index", "ckpt-150.index"]
    trainer = Runner.from_run_dir(run).trainer()  # restores the latest checkpoint
    optimizer = trainer.optimizer
    # assert_consumed: every value in the file found its variable, and every variable a value.
    trainer.checkpoint.restore(str(run / "checkpoints" / "ckpt-150")).assert_consumed()
    assert int(trainer.step) == 150
    assert int(optimizer.iterations) == 150
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-150"))
    stored = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
              if "/.ATTRIBUTES/VARIABLE_VALUE" in name and name.startswith("optimizer/_v")}
    assert stored  # Adam's second moments are in the checkpoint...
    restored = [v.numpy() for v in optimizer.variables if "velocity" in v.path]
    assert restored and all(np.any(v != 0) for v in restored)  # ...and came back.


def test_rerunning_continues_from_the_last_step(copy_run, capsys):
    assert main(["train", *tiny_args(copy_run, "train.steps=200"), "--no-eval",
                 "--no-export"]) == 0
    text = capsys.readouterr().err
    assert "at step 150" in text and "step 200/200" in text and "step 50/200" not in text
    # 50 batches of many lengths, one trace: no retracing per batch shape.
    assert "the update was traced once" in text
    assert (copy_run / "checkpoints" / "ckpt-200.index").exists()
    assert sorted(_scalars(copy_run / "logs" / "train")["loss"]) == [50, 100, 150, 200]


def test_resuming_with_another_model_shape_is_refused(copy_run, capsys):
    assert main(["train", *tiny_args(copy_run, "model.dff=256")]) == 2
    err = capsys.readouterr().err
    assert "model.dff=128" in err and "asks for 256" in err


def test_evaluate_prints_bleu_with_signature_and_writes_hypotheses(copy_run, capsys):
    assert main(["evaluate", "--run-dir", str(copy_run), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert "validation BLEU" in out and "nrefs:1|case:mixed|eff:no|tok:13a" in out
    hypotheses = (copy_run / "eval" / "validation-step150.hyp.txt").read_text().splitlines()
    config = load_config(copy_run / "config.yaml")
    from transformer_tf.data.sources import load_splits

    _, references = load_splits(config.data)["validation"]
    assert len(hypotheses) == len(references) == 40
    record = json.loads((copy_run / "metrics.jsonl").read_text().splitlines()[-1])
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert record["split"] == "validation" and abs(record["bleu"] - expected) < 1e-9
    assert f"validation BLEU {expected:.2f}" in out


def test_saved_model_translates_in_a_process_without_this_package(each_trained_run):
    served = serve_in_fresh_process(each_trained_run / "export",
                                    ["The cat sat on the mat.", "A dog sleeps."])
    assert served["imported_package"] is False
    # The canonical sentence is the first test sentence: the served model must translate
    # it exactly as the in-process evaluation did.
    evaluated = (each_trained_run / "eval" / "test-step150.hyp.txt").read_text().splitlines()[0]
    assert served["translations"][0] == evaluated
    assert served["translations"][1] and all(s < 0 for s in served["scores"])


def test_translate_command(trained_run, capsys):
    export = str(trained_run / "export")
    assert main(["translate", "--saved-model", export, "The cat sat on the mat."]) == 0
    evaluated = (trained_run / "eval" / "test-step150.hyp.txt").read_text().splitlines()[0]
    assert capsys.readouterr().out.splitlines() == [evaluated]
