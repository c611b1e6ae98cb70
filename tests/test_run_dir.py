"""The run directory: its config.yaml read back, a run of another model shape or tokenizer
refused, and one trainer at a time."""

import os
import socket
import subprocess
import sys

import pytest

from transformer_tf.cli import main
from transformer_tf.errors import UserError
from transformer_tf.run_dir import RunDir

from conftest import captured_log, tiny_args


def test_resuming_with_another_model_shape_or_tokenizer_is_refused(copy_run, capsys):
    assert main(["train", *tiny_args(copy_run, "model.dff=256")]) == 2
    err = capsys.readouterr().err
    assert "model.dff=128" in err and "asks for 256" in err
    # vocab/ holds what the first run built: other tokenizer settings would not apply.
    assert main(["train", *tiny_args(copy_run, "tokenizer.lowercase=true")]) == 2
    err = capsys.readouterr().err
    assert "holds vocabularies built with tokenizer.lowercase=False" in err


def test_a_run_directory_without_a_config_is_one_sentence(tmp_path, capsys):
    assert main(["evaluate", "--run-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: '{tmp_path}' has no config.yaml; train first (transformer-tf train --config "
        "...), or pass --config, or point --run-dir at a trained run."
    )


def _ended_pid():
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_one_trainer_per_run_directory(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.take_lock()
    here = socket.gethostname()
    assert run_dir.lock.read_text().split() == [here, str(os.getpid())]
    run_dir.take_lock()  # the holder may take it again
    # A live holder (pid 1 never ends), or one on another host, is refused by name.
    for holder in (f"{here} 1", "elsewhere 4242"):
        run_dir.lock.write_text(holder + "\n")
        with pytest.raises(UserError, match=f"is being trained by process '{holder}'"):
            run_dir.take_lock()
    # A lock whose process ended (SIGKILL, crash) is taken over, with a warning.
    run_dir.lock.write_text(f"{here} {_ended_pid()}\n")
    with captured_log() as messages:
        run_dir.take_lock()
    assert any("its process" in m and "is gone" in m for m in messages)
    run_dir.release_lock()
    assert not run_dir.lock.exists()


def test_train_refuses_a_run_directory_another_process_trains(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.lock").write_text(f"{socket.gethostname()} 1\n")
    assert main(["train", *tiny_args(run)]) == 2
    assert "is being trained by process" in capsys.readouterr().err
    assert not (run / "config.yaml").exists()  # refused before writing anything
