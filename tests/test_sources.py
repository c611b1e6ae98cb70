"""Data sources: files, URLs (downloaded once, checksummed), Multi30K, TFDS, and the
errors of bad files."""

import hashlib
import http.server
import logging
import threading

import pytest

from transformer_tf.config import config_from_dict
from transformer_tf.data import sources
from transformer_tf.data.download import cached_path
from transformer_tf.errors import UserError

from conftest import SPLIT_SIZES, write_lines, write_records


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


def _as_splits(corpus):
    return {name: sources.Split(*pair) for name, pair in corpus.items()}


def _text_config(base, names, tmp_path, **data):
    files = {
        split: {"source": base + f"{names[split]}.en.gz", "target": base + f"{names[split]}.de.gz"}
        for split in SPLIT_SIZES
    }
    return config_from_dict(
        {"data": {"source": "text", "cache_dir": str(tmp_path / "cache"), **files, **data}}
    ).data


def test_urls_download_once_verified_and_cached(server, corpus, tmp_path):
    base, root, requests = server
    names = {"train": "train", "validation": "val", "test": "test"}
    for split, (english, german) in corpus.items():
        write_lines(root / f"{names[split]}.en.gz", english, compress=True)
        write_lines(root / f"{names[split]}.de.gz", german, compress=True)
    digest = hashlib.sha256((root / "train.en.gz").read_bytes()).hexdigest()
    data = _text_config(base, names, tmp_path, sha256={base + "train.en.gz": digest})

    assert sources.load_splits(data) == _as_splits(corpus)
    assert len(requests) == 6
    assert sources.load_splits(data) == _as_splits(corpus)  # from the cache
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
    good = write_lines(tmp_path / "a.en", ["one", "two", "three"])
    with pytest.raises(UserError, match=r"'.*nowhere\.de' not found"):
        sources.read_parallel(good, tmp_path / "nowhere.de")
    short = write_lines(tmp_path / "a.de", ["eins", "zwei"])
    with pytest.raises(UserError, match=r"a\.en' has 3 lines but '.*a\.de' has 2"):
        sources.read_parallel(good, short)
    latin1 = tmp_path / "latin1.de"
    latin1.write_bytes("eins\nzwei\ndrei sch\xf6n\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.de: line 3 is not UTF-8"):
        sources.read_parallel(good, latin1)
    no_tab = write_lines(tmp_path / "pairs.tsv", ["one\teins", "two zwei"])
    with pytest.raises(UserError, match=r"pairs\.tsv: line 2 has no tab"):
        sources.read_tsv(no_tab)
    three = write_lines(tmp_path / "three.tsv", ["one\teins", "two\tzwei\tdeux"])
    with pytest.raises(UserError, match=r"three\.tsv: line 2 has 3 tab-separated fields"):
        sources.read_tsv(three)

    tsv = write_lines(tmp_path / "ok.tsv", ["one\teins", "", "two\t", "three\tdrei"])
    split = {"tsv": str(tsv)}
    data = config_from_dict(
        {"data": {"source": "tsv", "train": split, "validation": split, "test": split}}
    ).data
    with caplog.at_level(logging.INFO, logger="transformer_tf"):
        splits = sources.load_splits(data)
    assert splits["train"] == sources.Split(["one", "three"], ["eins", "drei"])
    assert "train: dropped 2 of 4 pairs with an empty side" in caplog.text


def test_multi30k_preset_reads_a_local_folder_or_names_urls_with_checksums(tmp_path, corpus):
    for split, stem in sources.MULTI30K_FILES.items():
        english, german = corpus[split]
        write_lines(tmp_path / f"{stem}.en.gz", english, compress=True)
        write_lines(tmp_path / f"{stem}.de.gz", german, compress=True)
    data = config_from_dict({"data": {"source": "multi30k", "dir": str(tmp_path)}}).data
    assert sources.load_splits(data) == _as_splits(corpus)

    data = config_from_dict(
        {"data": {"source": "multi30k", "source_language": "fr", "target_language": "en"}}
    ).data
    urls, checksums = sources.multi30k_files(data, "test")
    assert urls == {
        "source": sources.MULTI30K_URL + "test_2016_flickr.fr.gz",
        "target": sources.MULTI30K_URL + "test_2016_flickr.en.gz",
    }
    assert set(checksums) == set(urls.values())


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    data = config_from_dict({"data": {"source": "ted_hrlr_pt_en"}}).data
    with tfds.testing.mock_data(num_examples=6):
        splits = sources.load_splits(data)
    assert set(splits) == {"train", "validation", "test"}
    for portuguese, english, references in splits.values():
        assert len(portuguese) == len(english) > 0 and references is None
        assert all(isinstance(text, str) for text in portuguese + english)

    data = config_from_dict(
        {"data": {"source": "tfds", "tfds": {"name": "ted_hrlr_translat/pt_to_en"}}}
    ).data
    with pytest.raises(UserError, match="did you mean ted_hrlr_translate"):
        sources.load_splits(data)


def test_tfds_dataset_not_prepared_without_network_says_what_to_run(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_network(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    data = config_from_dict(
        {"data": {"source": "ted_hrlr_pt_en", "tfds": {"data_dir": str(tmp_path)}}}
    ).data
    with pytest.raises(
        UserError,
        match=r"not prepared .* run `tfds build "
        r"ted_hrlr_translate/pt_to_en --data_dir DIR`",
    ):
        sources.load_splits(data)


def test_a_split_with_no_text_is_refused_naming_it_and_its_files(tmp_path):
    """An empty split stops before any tokenizer trains on it (SentencePiece would say only
    `[!sentences_.empty()]`)."""
    full = {
        "source": str(write_lines(tmp_path / "a.en", ["one"])),
        "target": str(write_lines(tmp_path / "a.de", ["eins"])),
    }
    empty = {
        "source": str(write_lines(tmp_path / "empty.en", ["", " "])),
        "target": str(write_lines(tmp_path / "empty.de", ["leer", ""])),
    }
    data = config_from_dict(
        {"data": {"source": "text", "train": empty, "validation": full, "test": full}}
    ).data
    with pytest.raises(UserError, match=r"the train split \('.*empty\.en' and '.*empty\.de'\) "):
        sources.load_splits(data)
    assert sources.load_splits(data, ["validation"])["validation"] == sources.Split(
        ["one"], ["eins"]
    )


def _jsonl_config(files, **data):
    return config_from_dict(
        {
            "data": {
                "source": "jsonl",
                **{split: {"jsonl": str(path)} for split, path in files.items()},
                **data,
            }
        }
    ).data


def test_jsonl_fills_the_template_and_keeps_every_reference(tmp_path):
    """DialogSum's layout: `summary` in train and validation, three references in test."""
    train = [
        {"dialogue": "#Person1#: Hi.\n#Person2#: Hello.", "summary": "They greet.", "topic": "x"},
        {"dialogue": "", "summary": "Dropped: no source."},
        {"dialogue": "#Person1#: Tea?", "summary": "P1 offers tea."},
    ]
    test = [
        {
            "dialogue": "#Person1#: Bye.",
            "summary1": "Bye.",
            "summary2": "Farewell.",
            "summary3": "They part.",
        }
    ]
    files = {
        "train": write_records(tmp_path / "train.jsonl.gz", train),
        "validation": write_records(tmp_path / "validation.jsonl", train[:1]),
        "test": write_records(tmp_path / "test.jsonl", test),
    }
    data = _jsonl_config(
        files,
        source_template="Summarise: {dialogue}",
        target_field="summary",
        reference_fields=["summary1", "summary2", "summary3"],
    )
    splits = sources.load_splits(data)
    assert splits["train"].sources == [
        "Summarise: #Person1#: Hi.\n#Person2#: Hello.",
        "Summarise: #Person1#: Tea?",
    ]
    assert splits["train"].targets == ["They greet.", "P1 offers tea."]
    assert splits["validation"].reference_lists() == [["They greet."]]
    assert splits["test"].targets == ["Bye."]  # no `summary`: the first reference
    assert splits["test"].reference_lists() == [["Bye.", "Farewell.", "They part."]]


def test_jsonl_list_fields_two_field_template_and_one_to_two_answers(tmp_path):
    """FairytaleQA's layout: question and context joined, one or two answers in a list."""
    records = [
        {"question": "Who?", "context": "A fox.", "answers": ["the fox", "a fox"]},
        {"question": "Where?", "context": "In a wood.", "answers": ["in a wood"]},
    ]
    path = write_records(tmp_path / "qa.jsonl", records)
    data = _jsonl_config(
        {"train": path, "validation": path, "test": path},
        source_template="question: {question} context: {context}",
        target_field="answers",
        reference_fields=["answers"],
    )
    split = sources.load_splits(data, ["validation"])["validation"]
    assert split.sources[1] == "question: Where? context: In a wood."
    assert split.targets == ["the fox", "in a wood"]
    assert split.reference_lists() == [["the fox", "a fox"], ["in a wood"]]
    assert split.head(1).reference_lists() == [["the fox", "a fox"]]


def test_jsonl_sentence_selection_cuts_the_field_before_the_template_is_filled(tmp_path):
    records = [
        {
            "question": f"Who sang {i}?",
            "context": f"A king ruled. {i} sang. It rained.",
            "answers": ["x"],
        }
        for i in range(5)
    ] + [{"question": "", "context": "", "answers": ["dropped: no source"]}]
    path = write_records(tmp_path / "qa.jsonl", records)
    data = _jsonl_config(
        {"train": path, "validation": path, "test": path},
        source_template="question: {question} context: {context}",
        target_field="answers",
        select_sentences={"field": "context", "query": "question", "keep": 1},
    )
    split = sources.load_splits(data, ["validation"])["validation"]
    assert split.sources == [f"question: Who sang {i}? context: {i} sang." for i in range(5)]
    # Selection runs a chunk of records at a time; chunks do not change the result.
    numbered = list(sources.parse_records(enumerate(path.read_text().splitlines(), 1), "qa"))
    examples = list(sources.jsonl_examples(numbered, data))
    assert list(sources.jsonl_examples(numbered, data, chunk=2)) == examples
    assert [source for source, _, _ in examples] == split.sources + [""]
    # Training reads the same selected sources through tf.data.
    python, graph = _stream(
        {"source": "jsonl", "train": {"jsonl": str(path)}},
        source_template="question: {question} context: {context}",
        target_field="answers",
        select_sentences={"field": "context", "query": "question", "keep": 1},
    )
    assert python == graph == [(source, "x") for source in split.sources]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "Who?", ', r"bad\.jsonl: line 2 is not valid JSON \("),
        ('["Who?", "A fox."]', r"bad\.jsonl: line 2 is a JSON list, not an object"),
        (
            '{"question": "Who?", "answers": ["x"]}',
            r"line 2 has no field 'context' \(named by "
            r"'data\.source_template'\); it has question, answers",
        ),
        (
            '{"question": 7, "context": "c", "answers": ["x"]}',
            r"line 2: field 'question' is a "
            r"JSON int, not a string",
        ),
        (
            '{"question": "q", "context": "c", "answers": []}',
            r"line 2: field 'answers' must be a "
            r"string or a non-empty list of strings",
        ),
        ('{"question": "q", "context": "c"}', r"line 2 has none of the fields 'answers' "),
    ],
)
def test_bad_json_records_are_refused_naming_file_line_and_field(tmp_path, line, message):
    good = '{"question": "q", "context": "c", "answers": ["a"]}'
    path = write_lines(tmp_path / "bad.jsonl", [good, line])
    data = _jsonl_config(
        {"train": path, "validation": path, "test": path},
        source_template="{question} {context}",
        target_field="answers",
    )
    with pytest.raises(UserError, match=message):
        sources.load_splits(data, ["train"])


def _stream(data, **config):
    """(`TrainingText.pairs()`, `TrainingText.dataset()` as strings) of a data config."""
    splits = {name: data["train"] for name in SPLIT_SIZES}  # one file set for every split
    text = sources.TrainingText(config_from_dict({"data": {**data, **splits, **config}}).data)
    python = list(text.pairs())
    graph = [(s.decode(), t.decode()) for s, t in text.dataset().as_numpy_iterator()]
    return python, graph


def test_training_text_streams_shards_one_pair_from_each_in_turn(tmp_path, corpus):
    """A glob of parallel shards (plain and gzip, CRLF line ends, blank and white-space
    lines) reads as the same pairs in Python and in tf.data: shards in sorted order, one
    pair from each in turn, empty pairs left out."""
    english, german = corpus["train"]
    english, german = english[:9], german[:9]
    shards = [(english[0:3], german[0:3]), (english[3:9], german[3:9])]
    for number, (en, de) in enumerate(shards):
        compress = number == 1
        suffix = ".gz" if compress else ""
        write_lines(tmp_path / f"part{number}.en{suffix}", [f"{line}\r" for line in en], compress)
        write_lines(tmp_path / f"part{number}.de{suffix}", de, compress)
    write_lines(tmp_path / "part2.en", ["", "only English", "\u00a0"])  # left out, all three
    write_lines(tmp_path / "part2.de", ["nur Deutsch", "", "\u3000 "])
    files = {"source": str(tmp_path / "part*.en*"), "target": str(tmp_path / "part*.de*")}
    python, graph = _stream({"source": "text", "train": files})
    pairs = list(zip(english, german))
    assert python == graph == [pairs[0], pairs[3], pairs[1], pairs[4], pairs[2], *pairs[5:]]

    tsv = [f"{en}\t{de}" for en, de in pairs[:4]] + ["", "\t"]
    write_lines(tmp_path / "pairs.tsv.gz", tsv, compress=True)
    python, graph = _stream({"source": "tsv", "train": {"tsv": str(tmp_path / "pairs.tsv.gz")}})
    assert python == graph == pairs[:4]

    records = [{"question": en, "answers": [de, "other"]} for en, de in pairs[:3]]
    write_records(tmp_path / "qa.jsonl", records)
    jsonl = {"source": "jsonl", "train": {"jsonl": str(tmp_path / "q?.jsonl")}}
    python, graph = _stream(jsonl, source_template="{question}", target_field="answers")
    assert python == graph == pairs[:3]


def test_training_text_refuses_bad_shards_and_lines_before_training(tmp_path):
    write_lines(tmp_path / "a1.en", ["one", "two"])
    write_lines(tmp_path / "a1.de", ["eins", "zwei"])
    write_lines(tmp_path / "a2.en", ["three"])
    files = {"source": str(tmp_path / "a*.en"), "target": str(tmp_path / "a*.de")}
    with pytest.raises(UserError, match=r"1 source and 2 target files|2 source and 1 target"):
        _stream({"source": "text", "train": files})
    files = {"source": str(tmp_path / "b*.en"), "target": str(tmp_path / "a*.de")}
    with pytest.raises(UserError, match=r"'.*b\*\.en' \(data\.train\.source\) matches no file"):
        _stream({"source": "text", "train": files})
    write_lines(tmp_path / "a2.de", ["drei", "vier"])
    files = {"source": str(tmp_path / "a*.en"), "target": str(tmp_path / "a*.de")}
    with pytest.raises(UserError, match=r"a2\.en' has 1 lines but '.*a2\.de' has 2"):
        _stream({"source": "text", "train": files})

    write_lines(tmp_path / "bad.tsv", ["one\teins", "two zwei"])
    files = {name: {"tsv": str(tmp_path / "bad.tsv")} for name in SPLIT_SIZES}
    text = sources.TrainingText(config_from_dict({"data": {"source": "tsv", **files}}).data)
    with pytest.raises(UserError, match=r"bad\.tsv: line 2 has no tab"):
        text.check()
    assert not text.checked


@pytest.mark.parametrize("cycle", [1, 2, 3, 16])
def test_interleave_in_python_is_tf_data_interleave(cycle):
    import tensorflow as tf

    streams = [list(range(100 * i, 100 * i + n)) for i, n in enumerate([3, 0, 7, 1, 4, 4, 2])]
    expected = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(streams)).interleave(
        tf.data.Dataset.from_tensor_slices, cycle_length=cycle
    )
    assert list(sources.interleave(streams, cycle)) == list(expected.as_numpy_iterator())
