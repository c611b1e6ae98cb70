"""Checkpoints: what a restore brings back (weights, optimizer slots, step), averaging,
checkpoints written by earlier versions, damaged checkpoints and a full disk."""

import errno

import numpy as np
import tensorflow as tf

from transformer_tf.checkpoints import NAMES_BEFORE_0_2, restore_model
from transformer_tf.cli import main
from transformer_tf.config import ModelConfig
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner

from conftest import captured_log, tiny_args


def test_checkpoint_restores_weights_optimizer_slots_and_step(each_trained_run):
    run = each_trained_run
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-100.index",
        "ckpt-150.index",
    ]
    trainer = Runner.from_run_dir(run).trainer()  # restores the latest checkpoint
    optimizer = trainer.optimizer
    # assert_consumed: every value in the file found its variable, and every variable a value.
    trainer.checkpoint.restore(str(run / "checkpoints" / "ckpt-150")).assert_consumed()
    assert int(trainer.step) == 150
    assert int(optimizer.iterations) == 150
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-150"))
    stored = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if "/.ATTRIBUTES/VARIABLE_VALUE" in name and name.startswith("optimizer/_v")
    }
    assert stored  # Adam's second moments are in the checkpoint...
    restored = [v.numpy() for v in optimizer.variables if "velocity" in v.path]
    assert restored and all(np.any(v != 0) for v in restored)  # ...and came back.


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights(trained_run):
    config = RunDir(trained_run).read_config()
    first = build_model(config.model)
    tf.train.Checkpoint(model=first).restore(
        str(trained_run / "checkpoints" / "ckpt-100")
    ).expect_partial()
    last, step = restore_model(trained_run, config.model)
    averaged, averaged_step = restore_model(trained_run, config.model, average_last=2)
    assert step == averaged_step == 150
    for a, b, mean in zip(
        first.trainable_variables, last.trainable_variables, averaged.trainable_variables
    ):
        np.testing.assert_allclose(mean.numpy(), (a.numpy() + b.numpy()) / 2, atol=1e-6)
    assert not np.allclose(
        first.trainable_variables[0].numpy(), last.trainable_variables[0].numpy()
    )


def test_averaging_more_checkpoints_than_kept_is_refused(trained_run, capsys):
    assert main(["export", "--run-dir", str(trained_run), "--average-last", "5"]) == 2
    assert "cannot average the last 5 checkpoints" in capsys.readouterr().err


def test_a_checkpoint_of_version_0_1_layer_names_still_loads(tmp_path):
    config = ModelConfig(
        num_layers=2,
        d_model=32,
        num_heads=4,
        dff=64,
        input_vocab_size=40,
        target_vocab_size=48,
        pe_input=20,
        pe_target=20,
    )
    old = build_model(config)
    for stack, names in NAMES_BEFORE_0_2.items():  # the attribute names 0.1 gave them
        for layer in getattr(old, stack).stack():
            for old_name, name in names.items():
                sublayer = getattr(layer, name)
                delattr(layer, name)
                setattr(layer, old_name, sublayer)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=old), str(RunDir(tmp_path).checkpoints), max_to_keep=1
    )
    saved = manager.save(checkpoint_number=7)
    graph = tf.train.load_checkpoint(saved).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert b"mha1" in graph and b"cross_attention" not in graph  # written as 0.1 did

    restored, step = restore_model(tmp_path, config)
    assert step == 7
    for mine, saved_value in zip(restored.get_weights(), old.get_weights()):
        np.testing.assert_array_equal(mine, saved_value)
    # The old names were only borrowed for the restore.
    assert not hasattr(restored.decoder.dec_layers[0], "mha1")


def test_a_damaged_latest_checkpoint_is_skipped_with_a_warning(copy_run, capsys):
    """A checkpoint cut short (a full disk, a copy stopped) or missing a file: evaluation
    and resumed training fall back to the newest one that reads back whole, and say so."""
    checkpoints = copy_run / "checkpoints"
    data = checkpoints / "ckpt-150.data-00000-of-00001"
    with open(data, "r+b") as handle:
        handle.truncate(data.stat().st_size // 2)
    config = RunDir(copy_run).read_config()
    with captured_log() as messages:
        _, step = restore_model(copy_run, config.model)
    assert step == 100
    assert any("skipping checkpoint" in m and "ckpt-150: it does not" in m for m in messages)
    assert main(["export", "--run-dir", str(copy_run), "--average-last", "2"]) == 2
    assert "only 1 of the 2 checkpoints" in capsys.readouterr().err
    # Training resumes from ckpt-100 and writes a whole ckpt-150 again.
    assert main(["train", *tiny_args(copy_run), "--no-eval", "--no-export"]) == 0
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "resumed from" in err and "ckpt-100 at step 100" in err
    _, step = restore_model(copy_run, config.model)
    assert step == 150
    # Neither checkpoint whole: resuming refuses in one sentence instead of starting over.
    (checkpoints / "ckpt-100.index").unlink()
    (checkpoints / "ckpt-150.index").write_bytes(b"not an index")
    assert main(["train", *tiny_args(copy_run, "train.steps=200")]) == 2
    assert "none of the 2 checkpoints" in capsys.readouterr().err


def test_a_full_disk_during_a_save_stops_the_run_and_keeps_the_last_checkpoint(
    copy_run, monkeypatch, capsys
):
    checkpoints = copy_run / "checkpoints"
    real_save = tf.train.CheckpointManager.save

    def save_on_a_full_disk(manager, checkpoint_number=None, **kwargs):
        # Half a data file is written, then the device is full.
        (checkpoints / f"ckpt-{checkpoint_number}.data-00000-of-00001").write_bytes(b"\0" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_on_a_full_disk)
    assert main(["train", *tiny_args(copy_run, "train.steps=200")]) == 2
    err = capsys.readouterr().err
    assert "error: no space left on the device of" in err and "step 200" in err
    assert "resumes from" in err and "ckpt-150, which is intact" in err
    assert not list(checkpoints.glob("ckpt-200*"))  # nothing half-written is left
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-150")
    # Space freed: the same command resumes from ckpt-150.
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    args = [*tiny_args(copy_run, "train.steps=200"), "--no-eval", "--no-export"]
    assert main(["train", *args]) == 0
    assert "resumed from" in capsys.readouterr().err
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-200")
