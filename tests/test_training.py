"""The training loop over a long run: exact resume, signals, crashes during a save,
accumulation, mixed precision, divergence, early stopping, checkpoint averaging."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.config import load_config
from transformer_tf.checkpoints import checkpoint_paths, restore_model
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir
from transformer_tf.training.step import TrainStep

from conftest import QUICKSTART, ROOT, tiny_args
from test_end_to_end import _events, _scalars

# Deterministic ops and dropout on: resuming must also restore dropout's random state.
EXACT = ["train.deterministic=true", "model.rate=0.1", "train.checkpoint_every=30",
         "train.log_every=10"]


def _cli(run_dir, *extra, options=("--no-eval", "--no-export")):
    return [sys.executable, "-m", "transformer_tf.cli", "train", *tiny_args(run_dir, *extra),
            *options]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def _latest_step(run_dir):
    paths = checkpoint_paths(run_dir)
    return int(paths[-1].rsplit("-", 1)[-1]) if paths else None


def _weights(run_dir, step):
    reader = tf.train.load_checkpoint(str(Path(run_dir) / "checkpoints" / f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/") or name.startswith("optimizer/")}


def test_exact_resume_after_sigkill(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(_cli(straight, "train.steps=60", *EXACT), env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(_cli(killed, "train.steps=60", *EXACT), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _latest_step(killed) != 30:
        assert victim.poll() is None and time.time() < deadline, "no checkpoint at step 30"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert _latest_step(killed) == 30  # killed before it finished

    resumed = subprocess.run(_cli(killed, "train.steps=60", *EXACT), env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 30" in resumed.stderr
    assert reference.wait(timeout=300) == 0
    expected, actual = _weights(straight, 60), _weights(killed, 60)
    assert expected.keys() == actual.keys() and len(expected) > 10
    worst = max(np.abs(expected[k].astype(np.float64) - actual[k]).max() for k in expected)
    assert worst <= 1e-6


def test_sigterm_saves_and_the_next_run_continues(tmp_path):
    process = subprocess.Popen(_cli(tmp_path / "run", "train.steps=100000",
                                    "train.log_every=10"),
                               env=_env(), stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "step 20/100000" in line:
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert "stopped by signal SIGTERM at step" in rest
    stopped_at = _latest_step(tmp_path / "run")
    assert 20 <= stopped_at < 1000

    again = subprocess.run(_cli(tmp_path / "run", f"train.steps={stopped_at + 10}",
                                "train.log_every=10"),
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"at step {stopped_at}" in again.stderr
    assert _latest_step(tmp_path / "run") == stopped_at + 10


SAVE_EVERY_30 = ("train.steps=90", "train.checkpoint_every=30")


def test_a_kill_while_saving_leaves_the_previous_checkpoint_usable(tmp_path):
    run_dir = tmp_path / "run"
    # Die at the commit point of the second save: its files are written, the record of
    # which checkpoint is latest is not.
    script = textwrap.dedent(f"""
        import os, signal, sys
        from tensorflow.python.checkpoint import checkpoint_management as cm
        commit = cm.update_checkpoint_state_internal
        def dying_commit(*args, **kwargs):
            if str(kwargs.get("model_checkpoint_path", "")).endswith("ckpt-60"):
                os.kill(os.getpid(), signal.SIGKILL)
            return commit(*args, **kwargs)
        cm.update_checkpoint_state_internal = dying_commit
        from transformer_tf.cli import main
        sys.exit(main({_cli(run_dir, *SAVE_EVERY_30)[3:]!r}))
    """)
    crashed = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL
    assert list((run_dir / "checkpoints").glob("ckpt-60*"))  # half a save is on disk
    assert _latest_step(run_dir) == 30

    resumed = subprocess.run(_cli(run_dir, *SAVE_EVERY_30), env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 30" in resumed.stderr and _latest_step(run_dir) == 90


def test_accumulating_two_batches_is_one_batch_twice_as_large():
    config = load_config(QUICKSTART, ["model.num_layers=1", "model.d_model=32", "model.dff=64",
                                      "model.rate=0.0", "model.input_vocab_size=40",
                                      "model.target_vocab_size=40", "train.label_smoothing=0.1",
                                      "train.clip_norm=1000.0"])
    rng = np.random.default_rng(0)

    def batch(rows, length):
        ids = rng.integers(4, 40, size=(rows, length)).astype(np.int32)
        ids[:, length - 2:] = np.where(rng.random((rows, 2)) < 0.5, 0, ids[:, length - 2:])
        return ids

    (s1, t1), (s2, t2) = (batch(3, 7), batch(3, 6)), (batch(3, 5), batch(3, 9))

    def pad(a, b):
        width = max(a.shape[1], b.shape[1])
        return np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in (a, b)])

    def trained(accumulation):
        tf.keras.utils.set_random_seed(3)
        model = build_model(config.model)
        # Plain gradient descent: the update is the normalised gradient itself.
        optimizer = tf.keras.optimizers.SGD(learning_rate=1.0)
        step = TrainStep(model, optimizer, config.train.__class__(
            **{**config.train.__dict__, "accumulation_steps": accumulation}))
        if accumulation == 2:
            step.accumulate(s1, t1)
            step.accumulate(s2, t2)
            step.apply_accumulated()
        else:
            step.update(pad(s1, s2), pad(t1, t2))
        return [v.numpy() for v in model.trainable_variables]

    for two, one in zip(trained(2), trained(1)):
        np.testing.assert_allclose(two, one, atol=1e-5)


def test_an_update_clips_the_token_mean_gradient_to_clip_norm():
    config = load_config(QUICKSTART, ["model.num_layers=1", "model.d_model=32", "model.dff=64",
                                      "model.rate=0.0", "model.input_vocab_size=40",
                                      "model.target_vocab_size=40", "train.clip_norm=0.05"])
    rng = np.random.default_rng(1)
    source = rng.integers(4, 40, size=(4, 6)).astype(np.int32)
    target = rng.integers(4, 40, size=(4, 7)).astype(np.int32)
    target[0, 5:] = 0  # padding is not a token

    tf.keras.utils.set_random_seed(5)
    model = build_model(config.model)
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:  # the mean over real target tokens, by hand
        logits, _ = model(source, target[:, :-1], training=False)
        labels = target[:, 1:]
        mask = tf.cast(labels != 0, tf.float32)
        losses = tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True) * (1.0 - config.train.label_smoothing)
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)
        losses += config.train.label_smoothing * uniform
        loss = tf.reduce_sum(losses * mask) / tf.reduce_sum(mask)
    expected = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
    norm = tf.linalg.global_norm(expected)
    assert norm > 0.05  # so the update must clip
    expected, _ = tf.clip_by_global_norm(expected, 0.05)

    step = TrainStep(model, tf.keras.optimizers.SGD(learning_rate=1.0), config.train)
    reported = step.update(source, target)["grad_norm"]
    np.testing.assert_allclose(reported, norm, rtol=1e-5)
    for b, g, v in zip(before, expected, model.trainable_variables):
        np.testing.assert_allclose(b - v.numpy(), g.numpy(), atol=1e-6)


def test_bfloat16_run_trains(tmp_path):
    run_dir = tmp_path / "bf16"
    assert main(["train", *tiny_args(run_dir, "train.precision=bfloat16", "train.steps=100"),
                 "--no-eval", "--no-export"]) == 0
    loss = _scalars(run_dir / "logs" / "train")["loss"]
    assert loss[100] < 0.8 * loss[50]


def test_a_diverging_loss_stops_naming_the_step_without_saving(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    code = main(["train", *tiny_args(run_dir, "train.schedule=constant",
                                     "train.learning_rate=1e30", "train.steps=100")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: the training loss became nan at step" in err
    assert "stopped without saving" in err
    assert _latest_step(run_dir) is None


def test_early_stopping_fires_and_validation_is_recorded(tmp_path, capsys):
    run_dir = tmp_path / "early"
    # A learning rate too small to change anything: the validation BLEU cannot improve.
    assert main(["train", *tiny_args(run_dir, "train.schedule=constant",
                                     "train.learning_rate=1e-12", "train.eval_every=10",
                                     "train.early_stopping_patience=2", "train.best_metric=bleu",
                                     "train.steps=100", "eval.max_sentences=20"),
                 "--no-eval", "--no-export"]) == 0
    assert "early stopping: validation bleu has not improved" in capsys.readouterr().err
    assert _latest_step(run_dir) == 30
    assert [p.name for p in (run_dir / "checkpoints" / "best").glob("*.index")] == [
        "best-10.index"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    tags = _events(run_dir / "logs" / "eval")
    for tag in ("loss", "accuracy", "bleu", "chrf", "samples", "attention"):
        assert f"validation/{tag}" in tags, tag
    assert sorted(tags["validation/bleu"]) == [10, 20, 30]


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights(trained_run):
    config = RunDir(trained_run).read_config()
    first = build_model(config.model)
    tf.train.Checkpoint(model=first).restore(
        str(trained_run / "checkpoints" / "ckpt-100")).expect_partial()
    last, step = restore_model(trained_run, config.model)
    averaged, averaged_step = restore_model(trained_run, config.model, average_last=2)
    assert step == averaged_step == 150
    for a, b, mean in zip(first.trainable_variables, last.trainable_variables,
                          averaged.trainable_variables):
        np.testing.assert_allclose(mean.numpy(), (a.numpy() + b.numpy()) / 2, atol=1e-6)
    assert not np.allclose(first.trainable_variables[0].numpy(),
                           last.trainable_variables[0].numpy())


def test_evaluating_an_average_records_it_beside_the_single_checkpoint(copy_run, capsys):
    single = (copy_run / "eval" / "test-step150.hyp.txt").read_text(encoding="utf-8")
    assert main(["evaluate", "--run-dir", str(copy_run), "--split", "test",
                 "--average-last", "2"]) == 0
    assert "step 150, mean of the last 2 checkpoints)" in capsys.readouterr().out
    assert (copy_run / "eval" / "test-step150-mean2.hyp.txt").exists()
    assert (copy_run / "eval" / "test-step150.hyp.txt").read_text(encoding="utf-8") == single
    record = json.loads((copy_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["averaged_checkpoints"] == 2 and record["step"] == 150


def test_averaging_more_checkpoints_than_kept_is_refused(trained_run, capsys):
    assert main(["export", "--run-dir", str(trained_run), "--average-last", "5"]) == 2
    assert "cannot average the last 5 checkpoints" in capsys.readouterr().err
