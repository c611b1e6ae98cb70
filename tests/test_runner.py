"""The Runner: one run from config to SavedModel, each split and the tokenizers loaded once,
the trained weights handed on in memory."""

import collections
import shutil
import sys

import numpy as np
import pytest

import transformer_tf.runner as runner_module
from transformer_tf.cli import main
from transformer_tf.config import load_config
from transformer_tf.data import sources
from transformer_tf.data.tokenizers import SentencePieceTokenizer
from transformer_tf.runner import Runner

from conftest import QUICKSTART, TINY, captured_log, tiny_args, write_lines

SHORT = ["train.steps=20", "train.checkpoint_every=10", "train.log_every=10"]


@pytest.fixture
def loads(monkeypatch):
    """Counts of split loads ({split name: loads}) and tokenizer files opened, wherever in
    the package they happen."""
    counts = collections.Counter()
    original = sources.load_splits

    def counting_load_splits(data_config, names=sources.SPLITS):
        counts.update(names)
        return original(data_config, names)

    for module in list(sys.modules.values()):
        if (
            getattr(module, "__name__", "").startswith("transformer_tf")
            and getattr(module, "load_splits", None) is original
        ):
            monkeypatch.setattr(module, "load_splits", counting_load_splits)
    from_file = SentencePieceTokenizer.from_file.__func__

    def counting_from_file(cls, *args, **kwargs):
        counts["tokenizer files"] += 1
        return from_file(cls, *args, **kwargs)

    monkeypatch.setattr(SentencePieceTokenizer, "from_file", classmethod(counting_from_file))
    return counts


def test_one_train_command_loads_each_split_once_and_the_tokenizers_once(tmp_path, loads, capsys):
    # Training with validation, then the evaluation of test and the export with its check.
    assert (
        main(
            [
                "train",
                *tiny_args(tmp_path / "run", *SHORT, "train.eval_every=20", "eval.max_sentences=8"),
            ]
        )
        == 0
    )
    assert "check:" in capsys.readouterr().out
    assert dict(loads) == {"train": 1, "validation": 1, "test": 1, "tokenizer files": 2}


def test_a_file_corpus_trains_from_its_files_without_loading_its_training_split(
    tmp_path, loads, corpus, capsys
):
    """The training split of a file corpus (two gzip shards here) is streamed for the
    vocabularies and every epoch: never loaded whole, unlike validation and test."""
    overrides = ["data.source=text"]
    for split, (english, german) in corpus.items():
        half = len(english) // 2 if split == "train" else len(english)
        shards = [(english[:half], german[:half]), (english[half:], german[half:])]
        for number, (en, de) in enumerate(shards if split == "train" else shards[:1]):
            write_lines(tmp_path / f"{split}{number}.en.gz", en, compress=True)
            write_lines(tmp_path / f"{split}{number}.de.gz", de, compress=True)
        overrides += [f"data.{split}.source={tmp_path}/{split}*.en.gz"]
        overrides += [f"data.{split}.target={tmp_path}/{split}*.de.gz"]
    run = tmp_path / "run"
    assert main(["train", *tiny_args(run, *SHORT, *overrides), "--no-export"]) == 0
    assert "test BLEU" in capsys.readouterr().out
    assert dict(loads) == {"validation": 1, "test": 1, "tokenizer files": 2}


def test_after_training_evaluation_and_export_use_the_weights_in_memory(tmp_path, monkeypatch):
    config = load_config(QUICKSTART, [*TINY, *SHORT, f"run_dir={tmp_path / 'run'}"])
    runner = Runner(config)
    result = runner.train()

    def no_restore(*args, **kwargs):
        raise AssertionError("restored from disk")

    monkeypatch.setattr(runner_module, "restore_model", no_restore)
    translator = runner.translator()
    assert translator.step == result.step == 20
    evaluation = runner.evaluate("validation")
    assert evaluation["step"] == 20 and 0.0 <= evaluation["bleu"] <= 100.0
    assert runner.export().directory.joinpath("saved_model.pb").is_file()


def test_a_bfloat16_run_is_decoded_by_a_float32_copy_of_its_weights(tmp_path):
    config = load_config(
        QUICKSTART, [*TINY, *SHORT, "train.precision=bfloat16", f"run_dir={tmp_path / 'run'}"]
    )
    runner = Runner(config)
    runner.train()
    model = runner.translator().model
    assert model.dtype_policy.name == "float32"
    assert model.final_layer.compute_dtype == "float32"
    # The same weights as the checkpoint the run just wrote.
    restored = Runner.from_run_dir(tmp_path / "run").translator().model
    for mine, saved in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(mine, saved)


def test_an_ensemble_of_runs_evaluates_and_exports_as_one_model(copy_run, trained_tied_run, capsys):
    """A run with itself as its ensemble partner decodes exactly as alone; a partner with
    other tokenizers is refused in one sentence."""
    alone = Runner.from_run_dir(copy_run).evaluate("test")
    partner = f"eval.ensemble=['{copy_run}']"
    pair = Runner.from_run_dir(copy_run, [partner])
    result = pair.evaluate("test")
    assert result["ensemble_size"] == 2 and result["hypotheses_file"].endswith("-ensemble2.hyp.txt")
    assert result["bleu"] == alone["bleu"]
    early = copy_run.parent / "stopped_early"  # a partner whose config wanted more steps
    shutil.copytree(copy_run, early)
    config = early / "config.yaml"
    config.write_text(config.read_text().replace("  steps: 150\n", "  steps: 300\n"))
    with captured_log() as messages:
        Runner.from_run_dir(copy_run, [f"eval.ensemble=['{early}']"]).translator()
    assert any(f"ensemble member '{early}' is at step 150 of its 300" in m for m in messages)
    exported = pair.export(str(copy_run / "ensemble_export"))
    assert exported.check == alone["samples"][0][::2]  # (source, its translation alone)
    assert main(["evaluate", "--run-dir", str(copy_run), "--ensemble", str(trained_tied_run)]) == 2
    assert "an ensemble needs one set of tokenizers" in capsys.readouterr().err


def test_runs_that_copy_from_the_source_ensemble_too(trained_fields_run, tmp_path):
    """Members with copy attention each point with their own attention: a copying run with
    itself as its partner answers exactly as alone, evaluated and exported."""
    alone = Runner.from_run_dir(trained_fields_run).evaluate("test", output_dir=tmp_path)
    partner = f"eval.ensemble=['{trained_fields_run}']"
    pair = Runner.from_run_dir(trained_fields_run, [partner])
    result = pair.evaluate("test", output_dir=tmp_path)
    assert result["ensemble_size"] == 2
    assert (result["rouge_l"], result["bleu"]) == (alone["rouge_l"], alone["bleu"])
    exported = pair.export(str(tmp_path / "ensemble_export"))
    assert exported.check == alone["samples"][0][::2]


def test_a_large_validation_split_is_warned_about(monkeypatch):
    monkeypatch.setattr(runner_module, "IN_MEMORY_PAIRS", 30)
    runner = Runner(load_config(QUICKSTART, TINY))  # 40 validation pairs
    with captured_log() as messages:
        assert len(runner.split("validation").sources) == 40
    assert any("the validation split has 40 pairs, all held in memory" in m for m in messages)
