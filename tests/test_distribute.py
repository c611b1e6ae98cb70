"""tf.distribute on a CPU: mirrored over two logical CPU devices, and two worker processes
on 127.0.0.1, each against one device of the same global batch."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.checkpoints import restore_model
from transformer_tf.cli import main
from transformer_tf.config import DistributeConfig
from transformer_tf.errors import UserError
from transformer_tf.run_dir import RunDir
from transformer_tf.training.distribute import make_strategy

from conftest import ROOT, tiny_args

# Dropout off: replicas draw their own masks, so only then is the update bit-comparable.
SAME_UPDATE = [
    "model.rate=0.0",
    "train.log_every=1",
    "train.checkpoint_every=1000",
    "eval.samples=0",
]


def _model_weights(run_dir):
    """The trained weights in a run's latest checkpoint, except the
    attention key biases: softmax ignores them, so their gradient is rounding noise that
    Adam scales up to full-size steps, differently for every summation order."""
    model, _ = restore_model(run_dir, RunDir(run_dir).read_config().model)
    return [v.numpy() for v in model.trainable_variables if not v.path.endswith("key/bias")]


# How far two summation orders of one update's gradient leave the weights after 10 Adam
# steps: up to 6.3e-5 measured for mirrored against one device on an AVX2-only Zen 3, under
# 1e-5 on AVX-512 CPUs. A replica whose gradient is not all-reduced moves its weights by the
# learning rate's order (1e-3), and its losses part too.
SAME_WEIGHTS = 1e-4


def _assert_same_weights(a, b):
    assert len(a) == len(b) > 10
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    assert worst <= SAME_WEIGHTS, worst


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from transformer_tf.cli import main
    args = json.loads(sys.argv[1])
    for strategy in ("default", "mirrored"):
        run = args["run_dir"] + "/" + strategy
        assert main(["train", *args["args"], "--run-dir", run, "--set",
                     "distribute.strategy=" + strategy, "--no-eval", "--no-export"]) == 0
""")


def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    args = tiny_args(tmp_path, *SAME_UPDATE, "train.steps=10")
    del args[2:4]  # the script gives each strategy its own --run-dir
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MIRRORED_SCRIPT,
            json.dumps({"run_dir": str(tmp_path), "args": args}),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distribution: mirrored, 2 replica(s)" in result.stderr

    losses = {}
    for strategy in ("default", "mirrored"):
        events = event_accumulator.EventAccumulator(
            str(tmp_path / strategy / "logs" / "train"),
            size_guidance={event_accumulator.TENSORS: 0},
        )
        events.Reload()
        losses[strategy] = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("loss")]
    assert len(losses["default"]) == 10
    np.testing.assert_allclose(losses["mirrored"], losses["default"], atol=1e-5)
    _assert_same_weights(
        _model_weights(tmp_path / "mirrored"), _model_weights(tmp_path / "default")
    )


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(run_dir, scratch, extra, own=((), ())):
    """Two `transformer-tf train` processes forming a cluster on 127.0.0.1, with the
    settings `extra`, and each with its own of `own`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = {
            **os.environ,
            "TMPDIR": str(scratch / str(index)),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        (scratch / str(index)).mkdir(parents=True)
        command = [
            sys.executable,
            "-m",
            "transformer_tf.cli",
            "train",
            *tiny_args(
                run_dir, *SAME_UPDATE, "distribute.strategy=multi_worker", *extra, *own[index]
            ),
            "--no-eval",
            "--no-export",
        ]
        workers.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    return workers


@pytest.mark.slow
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path):
    run_dir, scratch = tmp_path / "cluster", tmp_path / "scratch"
    workers = _start_workers(run_dir, scratch, ["train.steps=20"])
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    assert "distribution: multi_worker, 2 replica(s)" in outputs[0][1]
    written = sorted(str(p.relative_to(run_dir)).split("/")[0] for p in run_dir.iterdir())
    assert written == ["checkpoints", "config.yaml", "logs", "vocab"]
    assert not list(scratch.rglob("*.*")), "a worker left files behind"

    single = tmp_path / "single"
    assert (
        main(
            [
                "train",
                *tiny_args(
                    single,
                    *SAME_UPDATE,
                    "train.steps=20",
                    "distribute.strategy=default",
                    "data.input_shards=2",  # the two workers' default: one stream each
                ),
                "--no-eval",
                "--no-export",
            ]
        )
        == 0
    )
    _assert_same_weights(_model_weights(run_dir), _model_weights(single))


@pytest.mark.slow
def test_the_workers_stop_together_when_one_has_spent_the_time_budget(tmp_path):
    run_dir, scratch = tmp_path / "cluster", tmp_path / "scratch"
    budgets = (["train.max_minutes=60"], ["train.max_minutes=0.001"])
    workers = _start_workers(
        run_dir, scratch, ["train.steps=100000", "train.log_every=10"], own=budgets
    )
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        assert "stopped by the time budget" in err and "at step 10" in err
    assert [p.name for p in (run_dir / "checkpoints").glob("*.index")] == ["ckpt-10.index"]


@pytest.mark.slow
def test_a_lost_worker_stops_the_other_with_a_clear_error(tmp_path):
    run_dir, scratch = tmp_path / "cluster", tmp_path / "scratch"
    chief, other = _start_workers(run_dir, scratch, ["train.steps=100000"])
    deadline = time.monotonic() + 300
    while not (run_dir / "logs" / "train").exists():  # training has started
        assert time.monotonic() < deadline and chief.poll() is None, chief.stderr.read()
        time.sleep(1)
    time.sleep(5)
    other.send_signal(signal.SIGKILL)
    started = time.monotonic()
    _, err = chief.communicate(timeout=300)
    assert chief.returncode == 2, err[-3000:]
    assert "another worker or device is gone" in err and "Traceback" not in err
    print(f"the chief stopped {time.monotonic() - started:.0f} s after the other worker died")


def test_tpu_strategy_without_a_tpu_says_so(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(UserError, match="no TPU is named"):
        make_strategy(DistributeConfig(strategy="tpu"))
