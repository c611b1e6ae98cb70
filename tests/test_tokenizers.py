"""Tokenizers: the same ids inside and outside tf.function, a shared WordPiece vocabulary
from text files to a served model, and vocabularies built on a bounded sample."""

import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.config import config_from_dict
from transformer_tf.data.tokenizers import build_or_load_tokenizers, sample_sentences

from conftest import serve_in_fresh_process, tiny_args, write_lines


@pytest.mark.parametrize("kind", ["sentencepiece", "wordpiece"])
def test_tokenizers_round_trip_the_same_inside_and_outside_tf_function(kind, tokenizers, corpus):
    tokenizer = tokenizers[kind]
    sentences = corpus["test"][1][:10]  # never trained on, in the corpus's alphabet
    eager = tokenizer.tokenize(tf.constant(sentences))
    traced = tf.function(tokenizer.tokenize)(tf.constant(sentences))
    assert eager.to_list() == traced.to_list()
    assert eager.dtype == tf.int32 and int(tf.reduce_min(eager.flat_values)) > 3  # no unknowns
    back = [text.decode("utf-8") for text in tokenizer.detokenize(eager).numpy()]
    assert back == sentences


def test_text_files_with_a_shared_wordpiece_vocabulary_train_export_and_serve(corpus, tmp_path):
    """Through the command line: parallel text files, one WordPiece vocabulary for both
    languages, token-budget batches; the exported SavedModel serves in a fresh process."""
    files = {}
    for split, (english, german) in corpus.items():
        files[split] = (
            write_lines(tmp_path / f"{split}.en", english),
            write_lines(tmp_path / f"{split}.de", german, compress=False),
        )
    settings = [
        "data.source=text",
        "tokenizer.type=wordpiece",
        "tokenizer.shared=true",
        "tokenizer.source_vocab_size=400",
        "data.batch_tokens=800",
        "train.steps=60",
    ]
    for split, (english, german) in files.items():
        settings += [f"data.{split}.source={english}", f"data.{split}.target={german}"]
    run_dir = tmp_path / "run"
    assert main(["train", *tiny_args(run_dir, *settings)]) == 0
    vocab = run_dir / "vocab"
    assert (vocab / "source.vocab").read_text() == (vocab / "target.vocab").read_text()

    first = corpus["test"][0][0]
    served = serve_in_fresh_process(run_dir / "export", [first])
    evaluated = (run_dir / "eval" / "test-step60.hyp.txt").read_text().splitlines()[0]
    assert served["translations"] == [evaluated]


def test_a_split_larger_than_sample_size_builds_its_vocabulary_on_a_sample(
    corpus, tmp_path, caplog
):
    """The vocabulary of a sampled split is exactly the vocabulary of that sample: the
    sample is all the builder sees, and the same split always gives the same sample."""
    english, german = corpus["train"]
    size = len(german) // 2
    config = config_from_dict(
        {"tokenizer": {"shared": True, "source_vocab_size": 300, "sample_size": size}}
    ).tokenizer
    with caplog.at_level("INFO", logger="transformer_tf"):
        build_or_load_tokenizers(config, english, german, tmp_path / "sampled")
    assert f"on {size:,} sentences sampled from {2 * len(german):,}" in caplog.text

    sample, seen = sample_sentences([*english, *german], size)
    assert seen == 2 * len(german) and len(sample) == size
    whole = config_from_dict({"tokenizer": {"shared": True, "source_vocab_size": 300}}).tokenizer
    build_or_load_tokenizers(whole, sample, [], tmp_path / "sample")
    model = "source.model"
    assert (tmp_path / "sampled" / model).read_bytes() == (tmp_path / "sample" / model).read_bytes()


def test_a_lowercase_sentencepiece_model_folds_case_in_the_graph(corpus, tmp_path):
    """`tokenizer.lowercase`: the fold is part of the stored model, so the tf.data pipeline
    and a SavedModel (both tensorflow-text) fold as the vocabulary was built."""
    english, german = corpus["train"]
    settings = {"shared": True, "source_vocab_size": 300}
    folded = config_from_dict({"tokenizer": {**settings, "lowercase": True}}).tokenizer
    cased = config_from_dict({"tokenizer": settings}).tokenizer
    source, _ = build_or_load_tokenizers(folded, english, german, tmp_path / "folded")
    cased_source, _ = build_or_load_tokenizers(cased, english, german, tmp_path / "cased")
    sentence = english[0]
    assert sentence != sentence.lower()  # the corpus is cased
    ids = source.tokenize(tf.constant([sentence, sentence.upper(), sentence.lower()]))
    assert ids[0].numpy().tolist() == ids[1].numpy().tolist() == ids[2].numpy().tolist()
    assert source.detokenize(ids[:1]).numpy()[0].decode("utf-8") == sentence.lower()
    cased_ids = cased_source.tokenize(tf.constant([sentence, sentence.lower()]))
    assert cased_ids[0].numpy().tolist() != cased_ids[1].numpy().tolist()
