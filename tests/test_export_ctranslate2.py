"""The CTranslate2 export decodes as the package does."""

import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.run_dir import RunDir
from transformer_tf.runner import Runner


def test_ctranslate2_export_decodes_greedily_as_the_package_does(
    each_trained_run, tmp_path, capsys
):
    pytest.importorskip("ctranslate2")
    import sentencepiece

    from transformer_tf.data.sources import load_splits
    from transformer_tf.inference.export_ctranslate2 import load_ctranslate2, translate_ctranslate2

    export = tmp_path / "ct2"
    command = ["export", "--run-dir", str(each_trained_run), "--format", "ctranslate2"]
    assert main([*command, "--output", str(export)]) == 0
    assert "check:" in capsys.readouterr().out
    config = RunDir(each_trained_run).read_config()
    config.eval.beam_size = 1
    translator = Runner(config).translator()
    sources = load_splits(config.data, ["test"])["test"].sources
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
        result = engine.translate_batch(
            [source_sp.encode(sentence, out_type=str)], beam_size=1, max_decoding_length=int(budget)
        )
        # The package ends an output at its budget with EOS: one token fewer.
        assert target_sp.decode(result[0].hypotheses[0][: budget - 1]) == translation
    assert main([*command, "--tokenizer", "none"]) == 2
    assert "drop --tokenizer" in capsys.readouterr().err


def test_a_copying_model_is_refused_in_one_sentence(trained_fields_run, tmp_path, capsys):
    command = ["export", "--run-dir", str(trained_fields_run), "--format", "ctranslate2"]
    assert main([*command, "--output", str(tmp_path / "ct2")]) == 2
    assert "CTranslate2 has no copy attention" in capsys.readouterr().err
