"""Evaluation: the package's BLEU and chrF are sacrebleu's on the same files, and outputs
that ignore their source are warned about."""

import json
import sys

from transformer_tf.cli import main
from transformer_tf.run_dir import RunDir

from conftest import run_quietly


def test_evaluate_files_matches_the_sacrebleu_command(trained_run, tmp_path, capsys):
    from transformer_tf.data.sources import load_splits

    sources, references, _ = load_splits(RunDir(trained_run).read_config().data)["validation"]
    src, ref = tmp_path / "val.en", tmp_path / "val.de"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    ref.write_text("\n".join(references) + "\n", encoding="utf-8")
    out_dir = tmp_path / "scores"
    assert (
        main(
            [
                "evaluate",
                "--run-dir",
                str(trained_run),
                "--src",
                str(src),
                "--ref",
                str(ref),
                "--output-dir",
                str(out_dir),
                "--tokenize",
                "none",
                "--lowercase",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "case:lc" in printed and "tok:none" in printed
    hypotheses = out_dir / "eval" / "val.en-step150.hyp.txt"
    record = json.loads((out_dir / "eval" / "val.en-step150.json").read_text())
    command = run_quietly(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(ref),
            "-i",
            str(hypotheses),
            "--tokenize",
            "none",
            "--lowercase",
            "-b",
        ]
    )
    assert command.returncode == 0, command.stderr
    assert f"{record['bleu']:.1f}" == f"{float(command.stdout.strip()):.1f}"
    assert abs(record["bleu"] - float(command.stdout.strip())) < 0.05

    # The exported model decodes as the checkpoint does: same hypotheses, same BLEU.
    served_dir = tmp_path / "served"
    assert (
        main(
            [
                "evaluate",
                "--saved-model",
                str(trained_run / "export"),
                "--src",
                str(src),
                "--ref",
                str(ref),
                "--output-dir",
                str(served_dir),
                "--tokenize",
                "none",
                "--lowercase",
            ]
        )
        == 0
    )
    assert (served_dir / "eval" / "val.en.hyp.txt").read_text() == hypotheses.read_text()


def test_outputs_that_do_not_depend_on_the_source_are_warned_about(caplog):
    from transformer_tf.evaluation.evaluate import warn_if_source_ignored

    sources = [f"dialogue {i}" for i in range(40)]
    with caplog.at_level("WARNING", logger="transformer_tf"):
        assert not warn_if_source_ignored(sources, [f"summary {i % 8}" for i in range(40)])
        assert not warn_if_source_ignored(sources[:10], ["the same"] * 10)  # too few to tell
        assert caplog.text == ""
        assert warn_if_source_ignored(sources, ["the same"] * 39 + ["another"])
    assert "40 different inputs got 2 different outputs" in caplog.text
