"""The training loop: losses and TensorBoard, exact resume after a kill, SIGTERM,
saving, divergence, early stopping, the time budget, bfloat16 and float16."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from transformer_tf.checkpoints import checkpoint_paths, training_seconds
from transformer_tf.cli import main
from transformer_tf.runner import Runner
from transformer_tf.training.progress import Progress

from conftest import ROOT, read_events, read_scalars, tiny_args

EXACT = [
    "train.deterministic=true",
    "model.rate=0.1",
    "train.checkpoint_every=30",
    "train.log_every=10",
]


def _cli(run_dir, *extra, options=("--no-eval", "--no-export")):
    return [
        sys.executable,
        "-m",
        "transformer_tf.cli",
        "train",
        *tiny_args(run_dir, *extra),
        *options,
    ]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def _latest_step(run_dir):
    paths = checkpoint_paths(run_dir)
    return int(paths[-1].rsplit("-", 1)[-1]) if paths else None


def _weights(run_dir, step):
    reader = tf.train.load_checkpoint(str(Path(run_dir) / "checkpoints" / f"ckpt-{step}"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/") or name.startswith("optimizer/")
    }


SAVE_EVERY_30 = ("train.steps=90", "train.checkpoint_every=30")


def test_loss_falls_and_tensorboard_has_the_scalars(trained_run):
    train = read_scalars(trained_run / "logs" / "train")
    assert set(train) == {"loss", "accuracy", "learning_rate", "grad_norm", "tokens_per_second"}
    assert sorted(train["loss"]) == [50, 100, 150]
    assert train["loss"][150] < 0.8 * train["loss"][50]
    assert train["accuracy"][150] > train["accuracy"][50]
    evaluation = read_events(trained_run / "logs" / "eval")
    assert set(evaluation) == {"test/bleu", "test/chrf", "test/samples"}
    assert 150 in evaluation["test/bleu"]
    assert b"The cat sat on the mat." in evaluation["test/samples"][150].item()


def test_exact_resume_after_sigkill(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(
        _cli(straight, "train.steps=60", *EXACT),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    victim = subprocess.Popen(
        _cli(killed, "train.steps=60", *EXACT),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while _latest_step(killed) != 30:
        assert victim.poll() is None and time.time() < deadline, "no checkpoint at step 30"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert _latest_step(killed) == 30  # killed before it finished

    resumed = subprocess.run(
        _cli(killed, "train.steps=60", *EXACT),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 30" in resumed.stderr
    assert reference.wait(timeout=300) == 0
    expected, actual = _weights(straight, 60), _weights(killed, 60)
    assert expected.keys() == actual.keys() and len(expected) > 10
    worst = max(np.abs(expected[k].astype(np.float64) - actual[k]).max() for k in expected)
    assert worst <= 1e-6


def test_sigterm_saves_and_the_next_run_continues(tmp_path):
    process = subprocess.Popen(
        _cli(tmp_path / "run", "train.steps=100000", "train.log_every=10"),
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:
        if "step 20/100000" in line:
            process.send_signal(signal.SIGTERM)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert "stopped by signal SIGTERM at step" in rest
    stopped_at = _latest_step(tmp_path / "run")
    assert 20 <= stopped_at < 1000

    again = subprocess.run(
        _cli(tmp_path / "run", f"train.steps={stopped_at + 10}", "train.log_every=10"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"at step {stopped_at}" in again.stderr
    assert _latest_step(tmp_path / "run") == stopped_at + 10


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
    crashed = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert crashed.returncode == -signal.SIGKILL
    assert list((run_dir / "checkpoints").glob("ckpt-60*"))  # half a save is on disk
    assert _latest_step(run_dir) == 30

    resumed = subprocess.run(
        _cli(run_dir, *SAVE_EVERY_30), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 30" in resumed.stderr and _latest_step(run_dir) == 90


def test_bfloat16_run_trains(tmp_path):
    run_dir = tmp_path / "bf16"
    assert (
        main(
            [
                "train",
                *tiny_args(run_dir, "train.precision=bfloat16", "train.steps=100"),
                "--no-eval",
                "--no-export",
            ]
        )
        == 0
    )
    loss = read_scalars(run_dir / "logs" / "train")["loss"]
    assert loss[100] < 0.8 * loss[50]


def test_a_diverging_loss_stops_naming_the_step_without_saving(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    code = main(
        [
            "train",
            *tiny_args(
                run_dir, "train.schedule=constant", "train.learning_rate=1e30", "train.steps=100"
            ),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "error: the training loss became nan at step" in err
    assert "stopped without saving" in err
    assert _latest_step(run_dir) is None


def test_early_stopping_fires_and_validation_is_recorded(tmp_path, capsys):
    run_dir = tmp_path / "early"
    # A learning rate too small to change anything: the validation BLEU cannot improve.
    assert (
        main(
            [
                "train",
                *tiny_args(
                    run_dir,
                    "train.schedule=constant",
                    "train.learning_rate=1e-12",
                    "train.eval_every=10",
                    "train.early_stopping_patience=2",
                    "train.best_metric=bleu",
                    "train.steps=100",
                    "eval.max_sentences=20",
                ),
                "--no-eval",
                "--no-export",
            ]
        )
        == 0
    )
    assert "early stopping: validation bleu has not improved" in capsys.readouterr().err
    assert _latest_step(run_dir) == 30
    assert [p.name for p in (run_dir / "checkpoints" / "best").glob("*.index")] == ["best-10.index"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    tags = read_events(run_dir / "logs" / "eval")
    for tag in ("loss", "accuracy", "bleu", "chrf", "samples", "attention"):
        assert f"validation/{tag}" in tags, tag
    assert sorted(tags["validation/bleu"]) == [10, 20, 30]


def test_a_time_budget_stops_keeps_the_checkpoint_and_counts_over_resumes(tmp_path, capsys):
    run_dir = tmp_path / "budget"

    def train(*settings):
        args = tiny_args(run_dir, "train.log_every=10", "train.checkpoint_every=1000", *settings)
        assert main(["train", *args, "--no-eval", "--no-export"]) == 0
        return capsys.readouterr().err

    # 0.06 seconds: spent by the first check, at step 10 (tracing the step takes longer).
    err = train("train.steps=100000", "train.max_minutes=0.001")
    assert "stopped by the time budget (train.max_minutes=0.001) at step 10" in err
    assert "run the same command to continue" not in err
    assert _latest_step(run_dir) == 10
    spent = training_seconds(run_dir / "checkpoints", 10)
    assert spent >= 0.06

    err = train("train.steps=100000", "train.max_minutes=0.001")
    assert "already trained: step 10 after" in err and "time budget" in err
    assert _latest_step(run_dir) == 10

    # A larger budget resumes, and the time recorded goes on from the first run's.
    err = train("train.steps=20", "train.max_minutes=60")
    assert "at step 10" in err and "or 59m" in err
    assert _latest_step(run_dir) == 20
    assert training_seconds(run_dir / "checkpoints", 20) > spent


def test_the_eta_is_the_sooner_of_the_last_step_and_the_time_budget(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    by_steps = Progress(0, 1000, stream=io.StringIO())
    by_budget = Progress(0, 1000, stream=io.StringIO(), seconds_left=100.0)
    clock[0] += 10.0  # 10 steps in 10 seconds: 990 seconds to the last step
    assert by_steps.eta(10) == "16m30s"
    assert by_budget.eta(10) == "1m30s"


def test_float16_learns_like_float32_and_a_resumed_run_keeps_its_loss_scale(trained_run, tmp_path):
    """float16 (what GPUs train with) runs on the CPU too: Keras 3's dynamic loss scaling
    keeps the updates of float32, and the scale is part of the checkpoint."""
    run_dir = tmp_path / "fp16"
    assert main(["train", *tiny_args(run_dir, "train.precision=float16"), "--no-eval"]) == 0
    loss16 = read_scalars(run_dir / "logs" / "train")["loss"]
    loss32 = read_scalars(trained_run / "logs" / "train")["loss"]  # the same run in float32
    assert loss16[150] < 0.8 * loss16[50]
    assert abs(loss16[150] - loss32[150]) < 0.05 * loss32[150]
    saved = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "ckpt-150"))
    [key] = [k for k in saved.get_variable_to_shape_map() if "dynamic_scale" in k]
    trainer = Runner.from_run_dir(run_dir).trainer()
    assert float(trainer.optimizer.dynamic_scale) == float(saved.get_tensor(key))
