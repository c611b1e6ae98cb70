"""The run directory: its config.yaml read back, and a run of another model shape refused."""

from transformer_tf.cli import main

from conftest import tiny_args


def test_resuming_with_another_model_shape_is_refused(copy_run, capsys):
    assert main(["train", *tiny_args(copy_run, "model.dff=256")]) == 2
    err = capsys.readouterr().err
    assert "model.dff=128" in err and "asks for 256" in err


def test_a_run_directory_without_a_config_is_one_sentence(tmp_path, capsys):
    assert main(["evaluate", "--run-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: '{tmp_path}' has no config.yaml; train first (transformer-tf train --config "
        "...), or pass --config, or point --run-dir at a trained run."
    )
