"""`transformer-tf prepare`: training pairs tokenized once into TFRecord shards, read back
in the order of the text split, refused when they do not match the run."""

import json

import numpy as np
import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.config import config_from_dict
from transformer_tf.data import prepared as prepared_module
from transformer_tf.data.pipeline import (
    TextPairs,
    length_statistics,
    train_dataset,
    training_pairs,
)
from transformer_tf.data.prepared import read_prepared, write_prepared
from transformer_tf.errors import UserError
from transformer_tf.runner import Runner

from conftest import captured_log, same_text, tiny_args

SHORT = ["train.steps=20", "train.checkpoint_every=20", "train.log_every=10"]


def _rows(dataset):
    return [tuple(np.asarray(x).tolist() for x in row) for row in dataset.as_numpy_iterator()]


def test_prepared_pairs_come_back_in_order_with_their_statistics(
    corpus, tokenizers, tmp_path, monkeypatch
):
    english, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    pairs = training_pairs(same_text(german), tokenizer, tokenizer, source_cut=12)
    monkeypatch.setattr(prepared_module, "FILE_RECORDS", 7)  # shards of many files
    manifest = write_prepared(pairs, tmp_path / "prepared", shards=3, fingerprint="f1")
    assert [len(files) for files in manifest["shards"]] == [15, 15, 15]  # 100 pairs each
    assert manifest["pairs"] == len(german)
    assert not (tmp_path / "prepared.partial").exists()

    prepared = read_prepared(tmp_path / "prepared", "f1")
    dataset, statistics = prepared.stream(0, 1), prepared.statistics(0, 1)
    assert _rows(dataset) == _rows(pairs)  # same pairs, same order, cut flags included
    assert statistics == length_statistics(pairs)
    assert statistics.cut > 0  # sources longer than 12 tokens were cut, and counted
    assert manifest["target_tokens"] == sum(len(row[1]) for row in _rows(pairs))

    config = config_from_dict({"data": {"batch_tokens": 300, "max_length": 24}}).data
    from_text = train_dataset(pairs, config, seed=3, num_batches=30)
    from_files = train_dataset(dataset, config, seed=3, num_batches=30)
    for (src_a, tgt_a), (src_b, tgt_b) in zip(from_text, from_files, strict=True):
        np.testing.assert_array_equal(src_a, src_b)
        np.testing.assert_array_equal(tgt_a, tgt_b)

    # Input streams (one per worker): stream k of 3 is the files k, the text's stream k.
    text = TextPairs(same_text(german), tokenizer, tokenizer, source_cut=12)
    for index in range(3):
        assert _rows(prepared.stream(index, 3)) == _rows(text.stream(index, 3))
        assert prepared.statistics(index, 3) == text.statistics(index, 3)
        # Resuming skips records unparsed, starting the turn at the right file.
        for skip in (1, 2, 4, 7, 40, 99):
            assert _rows(prepared.stream(index, 3, skip)) == _rows(text.stream(index, 3))[skip:]
    with pytest.raises(UserError, match="prepare again with --shards a multiple of 2"):
        prepared.stream(0, 2)


def test_prepared_pairs_that_do_not_match_are_refused(corpus, tokenizers, tmp_path):
    _, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]
    pairs = training_pairs(same_text(german[:50]), tokenizer, tokenizer)
    assert read_prepared(tmp_path / "prepared", "f1") is None  # nothing prepared yet
    manifest = write_prepared(pairs, tmp_path / "prepared", shards=2, fingerprint="f1")
    with pytest.raises(UserError, match="prepared from other data, tokenizers"):
        read_prepared(tmp_path / "prepared", "f2")
    manifest_file = tmp_path / "prepared" / "manifest.json"
    manifest_file.write_text(json.dumps({**manifest, "format": 2}))
    with pytest.raises(UserError, match="prepared by an older version of the package"):
        read_prepared(tmp_path / "prepared", "f1")
    manifest_file.write_text(json.dumps(manifest))
    (tmp_path / "prepared" / manifest["files"][1]).unlink()
    with pytest.raises(UserError, match="is missing"):
        read_prepared(tmp_path / "prepared", "f1")


def _weights(run_dir):
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    names = sorted(n for n in reader.get_variable_to_shape_map() if n.startswith("model/"))
    return [reader.get_tensor(name) for name in names]


def test_training_reads_prepared_pairs_and_trains_as_from_the_text(tmp_path, capsys):
    prepared, text = tmp_path / "prepared", tmp_path / "text"
    assert main(["prepare", *tiny_args(prepared, *SHORT), "--shards", "2"]) == 0
    assert "prepared 2,000 training pairs" in capsys.readouterr().out
    with captured_log() as log:
        assert main(["train", *tiny_args(prepared, *SHORT), "--no-eval", "--no-export"]) == 0
    assert any("training on the prepared pairs" in message for message in log)
    assert any("training on 2,000 pairs" in message for message in log)  # from the manifest
    assert main(["train", *tiny_args(text, *SHORT), "--no-eval", "--no-export"]) == 0
    for a, b in zip(_weights(prepared), _weights(text), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # Other data, or sources cut elsewhere, over the same prepared pairs: refused in one line.
    elsewhere = ["--set", f"data.prepared_dir={prepared / 'prepared'}"]
    for change in ("model.pe_input=32", "data.train_size=1500"):
        args = tiny_args(tmp_path / change, *SHORT, change)
        assert main(["train", *args, *elsewhere]) == 2
        assert "prepared from other data, tokenizers" in capsys.readouterr().err
    # Batching settings do not change the pairs: the prepared ones are used.
    with captured_log() as log:
        args = tiny_args(prepared, *SHORT, "train.steps=30", "data.batch_size=16")
        assert main(["train", *args, "--no-eval", "--no-export"]) == 0
    assert any("training on the prepared pairs" in message for message in log)
    missing = ["--set", f"data.prepared_dir={tmp_path / 'nowhere'}"]
    assert main(["train", *tiny_args(text, *SHORT, "train.steps=30"), *missing]) == 2
    assert "holds no prepared pairs" in capsys.readouterr().err


def test_sampled_segmentations_are_prepared_as_copies_and_trained_on(tmp_path, capsys):
    """tokenizer.sampling_alpha: training prepares (once) copies of the training pairs whose
    segmentations are drawn at random; each copy spells the same text."""
    sampling = ["tokenizer.sampling_alpha=0.1", "tokenizer.sampling_copies=3"]
    run_dir = tmp_path / "sampled"
    with captured_log() as log:
        args = tiny_args(run_dir, *SHORT, *sampling)
        assert main(["train", *args, "--no-eval", "--no-export"]) == 0
    assert any("drawing 3 segmentations of every training pair" in m for m in log)
    assert any("training on 6,000 pairs" in m for m in log)  # 3 copies of 2,000

    runner = Runner.from_run_dir(run_dir)
    rows = _rows(runner.training_pairs().stream(0, 1))
    copies = [rows[:2000], rows[2000:4000], rows[4000:]]
    tokenizer = runner.tokenizers()[1]
    text = runner.training_text().dataset()
    best = _rows(TextPairs(text, *runner.tokenizers(), source_cut=256).stream(0, 1))
    for side in (0, 1):
        differ = sum(a[side] != b[side] for a, b in zip(copies[0], copies[1]))
        assert differ > 1000  # most sentences are segmented otherwise in another copy
        assert sum(a[side] != b[side] for a, b in zip(copies[0], best)) > 1000
    for copy in copies:  # the same target text in every copy
        for sampled, exact in list(zip(copy, best))[:50]:
            spelled = tokenizer.detokenize(tf.ragged.constant([sampled[1][1:-1], exact[1][1:-1]]))
            assert spelled[0].numpy() == spelled[1].numpy()

    # A second run of the same settings finds them; other sampling settings are refused.
    with captured_log() as log:
        args = tiny_args(run_dir, *SHORT, *sampling, "train.steps=30")
        assert main(["train", *args, "--no-eval", "--no-export"]) == 0
    assert not any("drawing" in m for m in log)
    other = ["tokenizer.sampling_alpha=0.2", "train.steps=40"]
    assert main(["train", *tiny_args(run_dir, *SHORT, *other), "--no-eval"]) == 2
    assert "tokenizer.sampling_alpha=0.1, but the config asks for 0.2" in capsys.readouterr().err
    elsewhere = [*other, f"data.prepared_dir={run_dir / 'prepared'}"]
    assert main(["train", *tiny_args(tmp_path / "other", *SHORT, *elsewhere), "--no-eval"]) == 2
    assert "tokenizer sampling" in capsys.readouterr().err
