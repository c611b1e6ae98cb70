"""Data sources, downloads, tokenizers and batching, on files the tests write (no network:
URLs are served by a local HTTP server on 127.0.0.1)."""

import gzip
import hashlib
import http.server
import logging
import threading
from pathlib import Path

import pytest
import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.config import config_from_dict
from transformer_tf.data import sources, synthetic
from transformer_tf.data.download import cached_path
from transformer_tf.data.pipeline import count_too_long, length_buckets, train_dataset
from transformer_tf.data.tokenizers import (PAD_ID, SentencePieceTokenizer, WordPieceTokenizer,
                                            build_wordpiece_vocab, train_sentencepiece)
from transformer_tf.errors import UserError

from conftest import serve_in_fresh_process, tiny_args

SPLIT_SIZES = {"train": 300, "validation": 20, "test": 20}


@pytest.fixture(scope="module")
def corpus():
    """The synthetic corpus, small: {split: (english, german)}."""
    return synthetic.generate_splits(*SPLIT_SIZES.values(), seed=7)


def _write(path, lines, compress=False):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture()
def server(tmp_path):
    """(base URL, folder it serves, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests
    httpd.shutdown()
    httpd.server_close()


def _text_config(base, names, tmp_path, **data):
    files = {split: {"source": base + f"{names[split]}.en.gz",
                     "target": base + f"{names[split]}.de.gz"} for split in SPLIT_SIZES}
    return config_from_dict({"data": {"source": "text", "cache_dir": str(tmp_path / "cache"),
                                      **files, **data}}).data


def test_urls_download_once_verified_and_cached(server, corpus, tmp_path):
    base, root, requests = server
    names = {"train": "train", "validation": "val", "test": "test"}
    for split, (english, german) in corpus.items():
        _write(root / f"{names[split]}.en.gz", english, compress=True)
        _write(root / f"{names[split]}.de.gz", german, compress=True)
    digest = hashlib.sha256((root / "train.en.gz").read_bytes()).hexdigest()
    data = _text_config(base, names, tmp_path, sha256={base + "train.en.gz": digest})

    assert sources.load_splits(data) == corpus
    assert len(requests) == 6
    assert sources.load_splits(data) == corpus  # from the cache
    assert len(requests) == 6, "a cached file was downloaded again"

    wrong = "0" * 64
    data = _text_config(base, names, tmp_path / "fresh", sha256={base + "train.en.gz": wrong})
    with pytest.raises(UserError) as err:
        sources.load_splits(data)
    assert digest in str(err.value) and wrong in str(err.value)
    cached = cached_path(base + "train.en.gz", data.cache_dir)
    assert not cached.exists() and not list(cached.parent.glob("*.part*"))

    data = _text_config(base, {**names, "train": "missing"}, tmp_path)
    with pytest.raises(UserError, match=r"could not download .*missing\.en\.gz: HTTP 404"):
        sources.load_splits(data)


def test_bad_files_stop_with_one_clear_sentence(tmp_path, caplog):
    good = _write(tmp_path / "a.en", ["one", "two", "three"])
    with pytest.raises(UserError, match=r"'.*nowhere\.de' not found"):
        sources.read_parallel(good, tmp_path / "nowhere.de")
    short = _write(tmp_path / "a.de", ["eins", "zwei"])
    with pytest.raises(UserError, match=r"a\.en' has 3 lines but '.*a\.de' has 2"):
        sources.read_parallel(good, short)
    latin1 = tmp_path / "latin1.de"
    latin1.write_bytes("eins\nzwei\ndrei sch\xf6n\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.de: line 3 is not UTF-8"):
        sources.read_parallel(good, latin1)
    no_tab = _write(tmp_path / "pairs.tsv", ["one\teins", "two zwei"])
    with pytest.raises(UserError, match=r"pairs\.tsv: line 2 has no tab"):
        sources.read_tsv(no_tab)

    tsv = _write(tmp_path / "ok.tsv", ["one\teins", "", "two\t", "three\tdrei"])
    split = {"tsv": str(tsv)}
    data = config_from_dict({"data": {"source": "tsv", "train": split, "validation": split,
                                      "test": split}}).data
    with caplog.at_level(logging.INFO, logger="transformer_tf"):
        splits = sources.load_splits(data)
    assert splits["train"] == (["one", "three"], ["eins", "drei"])
    assert "train: dropped 2 of 4 pairs with an empty side" in caplog.text


def test_multi30k_preset_reads_a_local_folder_or_names_urls_with_checksums(tmp_path, corpus):
    for split, stem in sources.MULTI30K_FILES.items():
        english, german = corpus[split]
        _write(tmp_path / f"{stem}.en.gz", english, compress=True)
        _write(tmp_path / f"{stem}.de.gz", german, compress=True)
    data = config_from_dict({"data": {"source": "multi30k", "dir": str(tmp_path)}}).data
    assert sources.load_splits(data) == corpus

    data = config_from_dict({"data": {"source": "multi30k", "source_language": "fr",
                                      "target_language": "en"}}).data
    urls, checksums = sources.multi30k_files(data, "test")
    assert urls == {"source": sources.MULTI30K_URL + "test_2016_flickr.fr.gz",
                    "target": sources.MULTI30K_URL + "test_2016_flickr.en.gz"}
    assert set(checksums) == set(urls.values())


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    data = config_from_dict({"data": {"source": "ted_hrlr_pt_en"}}).data
    with tfds.testing.mock_data(num_examples=6):
        splits = sources.load_splits(data)
    assert set(splits) == {"train", "validation", "test"}
    for portuguese, english in splits.values():
        assert len(portuguese) == len(english) > 0
        assert all(isinstance(text, str) for text in portuguese + english)

    data = config_from_dict({"data": {"source": "tfds",
                                      "tfds": {"name": "ted_hrlr_translat/pt_to_en"}}}).data
    with pytest.raises(UserError, match="did you mean ted_hrlr_translate"):
        sources.load_splits(data)


def test_tfds_dataset_not_prepared_without_network_says_what_to_run(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_network(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    data = config_from_dict({"data": {"source": "ted_hrlr_pt_en",
                                      "tfds": {"data_dir": str(tmp_path)}}}).data
    with pytest.raises(UserError, match=r"not prepared .* run `tfds build "
                       r"ted_hrlr_translate/pt_to_en --data_dir DIR`"):
        sources.load_splits(data)


@pytest.fixture(scope="module")
def tokenizers(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    german = corpus["train"][1]
    return {
        "sentencepiece": SentencePieceTokenizer.from_file(
            train_sentencepiece(german, folder / "de.model", 300)),
        "wordpiece": WordPieceTokenizer.from_file(
            build_wordpiece_vocab(german, folder / "de.vocab", 300)),
    }


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


def test_token_budget_batches_and_length_filter(corpus, tokenizers):
    english, german = corpus["train"]
    tokenizer = tokenizers["sentencepiece"]  # German pieces on both sides: only lengths matter
    config = config_from_dict({"data": {"batch_tokens": 200, "max_length": 24,
                                        "pad_to_buckets": True}}).data
    too_long = count_too_long(german, german, tokenizer, tokenizer, config.max_length)
    lengths = tokenizer.tokenize(tf.constant(german)).row_lengths().numpy() + 2  # BOS/EOS
    assert too_long == int((lengths > config.max_length).sum()) > 0

    shapes, pairs, batches = set(), 0, 150
    for src, tgt in train_dataset(german, german, tokenizer, tokenizer, config, seed=1,
                                  num_batches=batches):
        assert int(tf.size(tgt)) <= config.batch_tokens and int(tf.size(src)) <= 200
        shapes.add(int(tgt.shape[1]))
        pairs += int(tgt.shape[0])
    # Exactly the buckets that hold pairs, each padded to its bound.
    bounds = length_buckets(config.max_length)
    used = {next(b - 1 for b in bounds if n < b) for n in lengths if n <= config.max_length}
    assert shapes == used, (shapes, used)
    assert pairs > batches * 5  # batches are filled by tokens, not one sentence each


def test_text_files_with_a_shared_wordpiece_vocabulary_train_export_and_serve(corpus, tmp_path):
    """Through the command line: parallel text files, one WordPiece vocabulary for both
    languages, token-budget batches; the exported SavedModel serves in a fresh process."""
    files = {}
    for split, (english, german) in corpus.items():
        files[split] = (_write(tmp_path / f"{split}.en", english),
                        _write(tmp_path / f"{split}.de", german, compress=False))
    settings = ["data.source=text", "tokenizer.type=wordpiece", "tokenizer.shared=true",
                "tokenizer.source_vocab_size=400", "data.batch_tokens=800", "train.steps=60"]
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
