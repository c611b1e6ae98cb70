"""Serving and the command line around it: TensorFlow's saved_model_cli, the ids-only
export, translate from files, evaluate on files or a SavedModel, attention images."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.inference.translator import Translator
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner

SAVED_MODEL_CLI = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}, **kwargs)


def test_saved_model_cli_lists_the_signature(trained_run):
    shown = _run([*SAVED_MODEL_CLI, "show", "--all", "--dir", str(trained_run / "export")])
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout
    for name in ("sentences", "translations", "scores", "truncated"):
        assert f"['{name}']" in shown.stdout, name


def test_ids_export_runs_in_stock_saved_model_cli(each_trained_run, tmp_path):
    export = tmp_path / "ids"
    assert main(["export", "--run-dir", str(each_trained_run), "--tokenizer", "none",
                 "--output", str(export)]) == 0
    assert sorted(p.name for p in (export / "assets").iterdir()) == ["source.vocab",
                                                                    "target.vocab"]
    translator = Runner.from_run_dir(each_trained_run).translator()
    ids = translator.source_tokenizer.tokenize(tf.constant(["The cat sat on the mat."]))
    ids = ids.to_tensor().numpy().tolist()
    ran = _run([*SAVED_MODEL_CLI, "run", "--dir", str(export), "--tag_set", "serve",
                "--signature_def", "serving_default", "--input_exprs", f"source_ids={ids}"])
    assert ran.returncode == 0, ran.stderr[-2000:]
    printed = re.search(r"target_ids.*?\[\[(.*?)\]\]", ran.stdout, re.S).group(1)
    served = [int(x) for x in re.findall(r"-?\d+", printed)]
    expected, _ = translator.search(*translator.encode(tf.constant(["The cat sat on the mat."])))
    expected = expected[0].numpy().tolist()
    assert served[: len(expected)] == expected


def test_translate_a_file_keeps_order_blank_lines_and_warns_on_long_lines(trained_run,
                                                                           tmp_path, capsys):
    long_line = " ".join(["The cat sat on the mat."] * 30)
    lines = ["The cat sat on the mat.", "", long_line, "A dog sleeps."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    assert main(["translate", "--saved-model", str(trained_run / "export"), "--input",
                 str(source), "--output", str(output)]) == 0
    translated = output.read_text(encoding="utf-8").splitlines()
    assert len(translated) == 4 and translated[1] == ""
    assert all(translated[i] for i in (0, 2, 3))
    # Alone or in a file, a sentence translates the same.
    assert main(["translate", "--saved-model", str(trained_run / "export"),
                 "A dog sleeps."]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [translated[3]]
    assert "warning: line 3 is longer than the model reads" in err
    assert "line 1 " not in err and "line 4 " not in err


def test_evaluate_files_matches_the_sacrebleu_command(trained_run, tmp_path, capsys):
    from transformer_tf.data.sources import load_splits

    sources, references = load_splits(RunDir(trained_run).read_config().data)["validation"]
    src, ref = tmp_path / "val.en", tmp_path / "val.de"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    ref.write_text("\n".join(references) + "\n", encoding="utf-8")
    out_dir = tmp_path / "scores"
    assert main(["evaluate", "--run-dir", str(trained_run), "--src", str(src), "--ref",
                 str(ref), "--output-dir", str(out_dir), "--tokenize", "none",
                 "--lowercase"]) == 0
    printed = capsys.readouterr().out
    assert "case:lc" in printed and "tok:none" in printed
    hypotheses = out_dir / "eval" / "val.en-step150.hyp.txt"
    record = json.loads((out_dir / "eval" / "val.en-step150.json").read_text())
    command = _run([sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hypotheses),
                    "--tokenize", "none", "--lowercase", "-b"])
    assert command.returncode == 0, command.stderr
    assert f"{record['bleu']:.1f}" == f"{float(command.stdout.strip()):.1f}"
    assert abs(record["bleu"] - float(command.stdout.strip())) < 0.05

    # The exported model decodes as the checkpoint does: same hypotheses, same BLEU.
    served_dir = tmp_path / "served"
    assert main(["evaluate", "--saved-model", str(trained_run / "export"), "--src", str(src),
                 "--ref", str(ref), "--output-dir", str(served_dir), "--tokenize", "none",
                 "--lowercase"]) == 0
    assert (served_dir / "eval" / "val.en.hyp.txt").read_text() == hypotheses.read_text()


def test_evaluate_refuses_mismatched_files(trained_run, tmp_path, capsys):
    src, ref = tmp_path / "a.txt", tmp_path / "b.txt"
    src.write_text("one\ntwo\n", encoding="utf-8")
    ref.write_text("eins\n", encoding="utf-8")
    assert main(["evaluate", "--run-dir", str(trained_run), "--src", str(src), "--ref",
                 str(ref)]) == 2
    assert f"'{src}' has 2 lines but '{ref}' has 1" in capsys.readouterr().err


def test_attention_image(trained_run, tmp_path, capsys):
    image = tmp_path / "attention.png"
    assert main(["translate", "--run-dir", str(trained_run), "--attention", str(image),
                 "The cat sat on the mat."]) == 0
    pixels = tf.io.decode_png(image.read_bytes()).numpy()
    assert pixels.shape[0] > 16 and pixels.shape[1] > 2 * pixels.shape[0] // 4
    assert pixels.min() < 128  # some attention is drawn
    translator = Runner.from_run_dir(trained_run).translator()
    attention = translator.attention("The cat sat on the mat.")
    weights = attention["attention"]["decoder_layer1"]
    assert weights.shape == (2, len(attention["target_tokens"]),
                             len(attention["source_tokens"]))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    source_length = len(attention["source_tokens"])
    encoder = attention["encoder_attention"]["encoder_layer1"]
    assert encoder.shape == (2, source_length, source_length)
    np.testing.assert_allclose(encoder.sum(-1), 1.0, rtol=1e-5)
    assert capsys.readouterr().out.strip() == attention["translation"]


def test_export_best_needs_validation(trained_run, capsys):
    assert main(["export", "--run-dir", str(trained_run), "--best"]) == 2
    assert "has no best checkpoint" in capsys.readouterr().err


def test_readme_serving_snippet_runs_as_written(trained_run, tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Serving the SavedModel", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart" / "export").symlink_to(trained_run / "export")
    result = _run([sys.executable, "-c", snippet], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = Runner.from_run_dir(trained_run).translator().translate(
        ["The cat sat on the mat."])[0]
    translation, score = result.stdout.strip().rsplit(" ", 1)
    assert translation == expected and float(score) < 0


def test_ctranslate2_export_decodes_greedily_as_the_package_does(each_trained_run, tmp_path,
                                                                  capsys):
    pytest.importorskip("ctranslate2")
    import sentencepiece

    from transformer_tf.data.sources import load_splits
    from transformer_tf.inference.export_ctranslate2 import (
        load_ctranslate2, translate_ctranslate2)

    export = tmp_path / "ct2"
    assert main(["export", "--run-dir", str(each_trained_run), "--format", "ctranslate2",
                 "--output", str(export)]) == 0
    assert "check:" in capsys.readouterr().out
    config = RunDir(each_trained_run).read_config()
    config.eval.beam_size = 1
    translator = Runner(config).translator()
    sources, _ = load_splits(config.data, ["test"])["test"]
    # The last one is longer than its output budget: both must stop at the same token.
    sources = [*sources, " ".join(sources[:8])]
    expected = translator.translate(sources)
    engine = load_ctranslate2(export)
    assert translate_ctranslate2(engine, translator, sources) == expected
    # The directory alone is enough: SentencePiece in, CTranslate2, SentencePiece out.
    source_sp = sentencepiece.SentencePieceProcessor(model_file=str(export / "source.model"))
    target_sp = sentencepiece.SentencePieceProcessor(model_file=str(export / "target.model"))
    _, budgets = translator.encode(tf.constant(sources[:3]))
    for sentence, budget, translation in zip(sources, budgets.numpy(), expected):
        result = engine.translate_batch([source_sp.encode(sentence, out_type=str)],
                                        beam_size=1, max_decoding_length=int(budget))
        # The package ends an output at its budget with EOS: one token fewer.
        assert target_sp.decode(result[0].hypotheses[0][:budget - 1]) == translation
    assert main(["export", "--run-dir", str(each_trained_run), "--format", "ctranslate2",
                 "--tokenizer", "none"]) == 2
    assert "drop --tokenizer" in capsys.readouterr().err
