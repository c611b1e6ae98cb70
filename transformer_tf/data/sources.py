"""Where examples come from: `load_splits` returns {split: Split(sources, targets, ...)}.

Sources: the embedded synthetic corpus; parallel text files; one TSV file per split; one
JSON-lines file per split (a template makes the source text from a record's fields; several
references per record for evaluation); a TensorFlow Datasets translation dataset; and two
presets, Multi30K (files by URL with their checksums, or from a local folder) and the
TensorFlow tutorial's TED talks (through TFDS).
"""

import difflib
import glob
import gzip
import itertools
import json
import logging
import re
import sys
from pathlib import Path
from typing import NamedTuple

from transformer_tf.data import synthetic
from transformer_tf.data.download import fetch, is_url
from transformer_tf.data.templates import fill_template, template_fields
from transformer_tf.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
MULTI30K_FILES = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
MULTI30K_SHA256 = {
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}
TED_HRLR_PT_EN = "ted_hrlr_translate/pt_to_en"
_GLOB = re.compile(r"[*?[]")  # a location with one of these is a glob pattern of shards
_OPEN_SHARDS = 16  # shards read at once, a pair from each in turn


class Split(NamedTuple):
    """The examples of one split, in order.

    sources: the model's input texts. targets: the text each is trained to produce.
    references: every reference of each example, for evaluation (`reference_lists`); None
    when each example's target is its one reference.
    """

    sources: list[str]
    targets: list[str]
    references: list[list[str]] | None = None

    def reference_lists(self) -> list[list[str]]:
        """Each example's references: [[reference, ...], ...]."""
        return self.references or [[target] for target in self.targets]

    def head(self, count: int | None) -> "Split":
        """The first `count` examples (all when None)."""
        if count is None:
            return self
        return Split(
            self.sources[:count],
            self.targets[:count],
            self.references[:count] if self.references is not None else None,
        )


def load_splits(data_config, names=SPLITS):
    """The splits `names` of the configured data source: {name: `Split`}. Examples with an
    empty source or target are dropped (and counted in the log)."""
    if data_config.source == "synthetic":
        splits = synthetic.generate_splits(
            data_config.train_size,
            data_config.validation_size,
            data_config.test_size,
            data_config.seed,
        )
        return {name: Split(*splits[name]) for name in names}
    if data_config.source in ("tfds", "ted_hrlr_pt_en"):
        splits = _tfds_splits(data_config, names)
    else:
        splits = {name: _file_split(data_config, name) for name in names}
    return {
        name: _drop_empty(name, Split(*split), _origin(data_config, name))
        for name, split in splits.items()
    }


class TrainingText:
    """The training split as a stream: read from its files (or TFDS) a pair at a time, each
    time it is needed, never held whole in memory, so a corpus may be larger than memory.

    `pairs()` is the checked Python stream (a malformed line stops with its file and line;
    pairs with an empty side are left out); `dataset()` the same pairs as a `tf.data`
    stream for training; `check()` reads the split once so that its errors come before
    training starts. The embedded synthetic corpus, generated in memory, is kept there.
    """

    def __init__(self, data_config):
        self.data_config = data_config
        self.checked = data_config.source in ("synthetic", "tfds", "ted_hrlr_pt_en")
        self._synthetic = None

    def pairs(self):
        """(source, target) of each example with text on both sides, in corpus order."""
        config = self.data_config
        if config.source == "synthetic":
            if self._synthetic is None:
                self._synthetic = load_splits(config, ["train"])["train"]
            yield from zip(self._synthetic.sources, self._synthetic.targets)
            return
        if config.source in ("tfds", "ted_hrlr_pt_en"):
            for source, target in tfds_pairs(config, "train").as_numpy_iterator():
                if source.strip() and target.strip():
                    yield source.decode("utf-8"), target.decode("utf-8")
            return
        total = kept = 0
        for total, (source, target, _) in enumerate(_file_examples(config, "train"), 1):
            if source.strip() and target.strip():
                kept += 1
                yield source, target
        _check_kept("train", kept, total, _origin(config, "train"))
        self.checked = True

    def check(self):
        """Read the split once, unless a whole pass was made already: a malformed line then
        stops the run before training, with its file and line."""
        if not self.checked:
            log.info("checking the training data (%s)", _origin(self.data_config, "train"))
            for _ in self.pairs():
                pass

    def dataset(self):
        """The pairs as a `tf.data.Dataset` of (source, target) strings, read again on each
        pass: parallel text and TSV by `TextLineDataset` (shards interleaved), TFDS by
        `as_dataset`, JSON lines and the synthetic corpus by `pairs()`."""
        import tensorflow as tf

        config = self.data_config
        string = tf.TensorSpec([], tf.string)
        if config.source in ("tfds", "ted_hrlr_pt_en"):
            return tfds_pairs(config, "train").filter(_both_sides)
        if config.source in ("synthetic", "jsonl"):
            return tf.data.Dataset.from_generator(self.pairs, output_signature=(string, string))
        paths = _split_files(config, "train")
        columns = [paths["tsv"]] if "tsv" in paths else [paths["source"], paths["target"]]
        files = tf.data.Dataset.from_tensor_slices(tuple([str(p) for p in c] for c in columns))

        def lines(path):
            gzip = tf.strings.regex_full_match(path, r".*\.gz")
            dataset = tf.data.TextLineDataset(path, compression_type=tf.where(gzip, "GZIP", ""))
            return dataset.map(lambda line: tf.strings.regex_replace(line, "\r$", ""))

        def shard(*names):  # (tsv file,) or (source file, target file)
            if len(names) == 2:
                return tf.data.Dataset.zip(lines(names[0]), lines(names[1]))
            return lines(names[0]).map(_tsv_fields)

        # One pair from each shard in turn, as `pairs()` reads them (`interleave`).
        pairs = files.interleave(shard, cycle_length=min(len(columns[0]), _OPEN_SHARDS))
        return pairs.filter(_both_sides)


def _tsv_fields(line):
    """(source, target) of a `source<TAB>target` line in the graph; a blank line gives
    ("", ""), left out with the other empty pairs (`check` refused every other shape)."""
    import tensorflow as tf

    fields = tf.concat([tf.strings.split(line, "\t", maxsplit=1), ["", ""]], axis=0)
    return fields[0], fields[1]


# What Python's str.isspace() calls white space, in RE2's syntax.
_BLANK = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\p{Z}]*"


def _both_sides(source, target):
    """Whether a pair has text on both sides, in the graph (as `TrainingText.pairs` keeps
    them: blank means only white space, as Python's `str.strip` sees it)."""
    import tensorflow as tf

    blank = tf.strings.regex_full_match(tf.stack([source, target]), _BLANK)
    return tf.logical_not(tf.reduce_any(blank))


def _origin(data_config, split):
    """Where a split's pairs come from, for messages: its files, or its TFDS dataset."""
    if data_config.source == "multi30k":
        return " and ".join(
            f"'{location}'" for location in multi30k_files(data_config, split)[0].values()
        )
    if data_config.source in ("tfds", "ted_hrlr_pt_en"):
        name = TED_HRLR_PT_EN if data_config.source == "ted_hrlr_pt_en" else data_config.tfds.name
        return f"TFDS '{name}' split '{getattr(data_config.tfds, f'{split}_split')}'"
    files = getattr(data_config, split)
    if data_config.source in ("tsv", "jsonl"):
        return f"'{getattr(files, data_config.source)}'"
    return f"'{files.source}' and '{files.target}'"


def multi30k_files(data_config, split):
    """{"source": location, "target": location} of a Multi30K split, and its checksums."""
    stem = MULTI30K_FILES[split]
    names = {
        side: f"{stem}.{language}.gz"
        for side, language in zip(
            ("source", "target"),
            (data_config.source_language or "en", data_config.target_language or "de"),
        )
    }
    if data_config.dir:
        return {side: str(Path(data_config.dir) / name) for side, name in names.items()}, {}
    urls = {side: MULTI30K_URL + name for side, name in names.items()}
    return urls, {MULTI30K_URL + name: MULTI30K_SHA256[name] for name in names.values()}


def _split_files(data_config, split):
    """The local files of one split of a `text`, `tsv`, `jsonl` or `multi30k` source:
    {"source": [...], "target": [...]}, {"tsv": [...]} or {"jsonl": [...]}. A URL is
    downloaded once; a glob pattern (`*`, `?`, `[`) stands for its matches, sorted: the
    shards of one corpus, read in that order (a source shard pairs with the target shard of
    the same rank)."""
    checksums = data_config.sha256
    if data_config.source == "multi30k":
        locations, checksums = multi30k_files(data_config, split)
    else:
        files = getattr(data_config, split)
        kind = data_config.source
        locations = (
            {kind: getattr(files, kind)}
            if kind in ("tsv", "jsonl")
            else {"source": files.source, "target": files.target}
        )
    paths = {}
    for side, location in locations.items():
        if is_url(location) or not _GLOB.search(location):
            paths[side] = [fetch(location, data_config.cache_dir, checksums.get(location))]
            continue
        paths[side] = [Path(match) for match in sorted(glob.glob(location))]
        if not paths[side]:
            raise UserError(
                f"'{location}' (data.{split}.{side}) matches no file; check the pattern."
            )
    if "source" in paths and len(paths["source"]) != len(paths["target"]):
        raise UserError(
            f"the {split} split has {len(paths['source'])} source and "
            f"{len(paths['target'])} target files; shards pair up by their sorted names, "
            "one target file for each source file."
        )
    return paths


def _file_examples(data_config, split):
    """(source, target, references) of a file split, one at a time, a pair from each shard
    in turn (`interleave`); a malformed line stops with one sentence naming its file and
    line."""
    paths = _split_files(data_config, split)
    if "tsv" in paths:
        shards = [((s, t, None) for s, t in _tsv_pairs(path)) for path in paths["tsv"]]
    elif "jsonl" in paths:
        shards = [jsonl_examples(_records(path), data_config) for path in paths["jsonl"]]
    else:
        shards = [
            ((s, t, None) for s, t in _parallel_pairs(source, target))
            for source, target in zip(paths["source"], paths["target"])
        ]
    return interleave(shards, _OPEN_SHARDS)


def _records(path):
    return parse_records(iter_lines(path), path)


_END = object()


def interleave(streams, cycle):
    """The items of `streams` (iterables, opened in order) in the order of tf.data's
    `interleave(cycle_length=cycle, block_length=1)`: one from each of `cycle` open streams
    in turn; the slot of a stream that ends takes the next stream when its turn comes
    back. A corpus split by topic into shards is so mixed, the same way in Python and in
    the graph.

    >>> list(interleave(["ab", "cdef", "g"], 2))
    ['a', 'c', 'b', 'd', 'e', 'g', 'f']
    """
    streams, slots, index, ended = iter(streams), [None] * cycle, 0, False
    while not ended or any(slot is not None for slot in slots):
        if slots[index] is not None:
            item = next(slots[index], _END)
            if item is not _END:
                yield item
            else:
                slots[index] = None
            index = (index + 1) % cycle
        elif not ended:
            stream = next(streams, _END)
            if stream is _END:
                ended = True
            else:
                slots[index] = iter(stream)
        else:
            index = (index + 1) % cycle


def _file_split(data_config, split):
    """(sources, targets, references) of one split of a `text`, `tsv`, `jsonl` or
    `multi30k` source, in memory; references is None when no example has more than one."""
    examples = list(_file_examples(data_config, split))
    sources, targets, references = (
        (list(column) for column in zip(*examples)) if examples else ([], [], [])
    )
    multiple = any(refs is not None and len(refs) > 1 for refs in references)
    return sources, targets, references if multiple else None


def _drop_empty(name, split, origin):
    """The examples of `split` with a non-empty source and target (`_check_kept`)."""
    kept = [
        i for i, (s, t) in enumerate(zip(split.sources, split.targets)) if s.strip() and t.strip()
    ]
    _check_kept(name, len(kept), len(split.sources), origin)
    if len(kept) == len(split.sources):
        return split
    return Split(*(None if column is None else [column[i] for i in kept] for column in split))


def _check_kept(name, kept, total, origin):
    """Log how many of a split's `total` pairs were left out for an empty side; a split left
    with none is refused, naming `origin` (before a tokenizer trains on it or an evaluation
    divides by it)."""
    if not kept:
        raise UserError(
            f"the {name} split ({origin}) has no pair with text on both sides; "
            "point the config's data section at files that have some."
        )
    if kept < total:
        log.info("%s: dropped %d of %d pairs with an empty side", name, total - kept, total)


def iter_lines(path=None):
    """The lines of a UTF-8 text file (`.gz` read transparently; None: standard input),
    without line ends, one at a time: (line number, text)."""
    if path is None:
        yield from ((number, line.rstrip("\r\n")) for number, line in enumerate(sys.stdin, 1))
        return
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file '{path}' not found; check the path in the config.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UserError(
                    f"{path}: line {number} is not UTF-8; convert the file "
                    "(e.g. with iconv) and try again."
                ) from None


def read_lines(path=None):
    """The lines of a UTF-8 text file (`.gz` read transparently; None: standard input),
    without line ends."""
    return [line for _, line in iter_lines(path)]


def read_parallel(source_path, target_path):
    """Two files whose line N translate each other: (sources, targets)."""
    pairs = list(_parallel_pairs(source_path, target_path))
    return [source for source, _ in pairs], [target for _, target in pairs]


def _parallel_pairs(source_path, target_path):
    """(line N of `source_path`, line N of `target_path`), one at a time; files of
    different lengths are refused when the shorter one ends."""
    sources, targets = iter_lines(source_path), iter_lines(target_path)
    for number, (source, target) in enumerate(itertools.zip_longest(sources, targets), 1):
        if source is None or target is None:
            rest = 1 + sum(1 for _ in (sources if target is None else targets))
            lines = [number - 1, number - 1]
            lines[target is not None] += rest  # the file that goes on
            raise UserError(
                f"'{source_path}' has {lines[0]} lines but '{target_path}' has {lines[1]}; "
                "parallel files need one line per sentence on each side."
            )
        yield source[1], target[1]


def read_tsv(path):
    """A file of `source<TAB>target` lines: (sources, targets)."""
    pairs = list(_tsv_pairs(path))
    return [source for source, _ in pairs], [target for _, target in pairs]


def _tsv_pairs(path):
    """(source, target) of each `source<TAB>target` line, one at a time; a blank line gives
    ("", ""), left out later with the other empty pairs."""
    for number, line in iter_lines(path):
        if not line.strip():
            yield "", ""
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            shape = "no tab" if len(fields) == 1 else f"{len(fields)} tab-separated fields"
            raise UserError(
                f"{path}: line {number} has {shape}; each line must be source<TAB>target."
            )
        yield fields[0], fields[1]


def jsonl_examples(records, data_config, chunk=512):
    """(source, target, references) of each (where, record) pair, in order (see
    `jsonl_fields`): the source is `data_config.source_template` filled from the record's
    fields, after `data_config.select_sentences` (if set) has cut its field to the
    sentences that share most words with its query, `chunk` records at a time. A record
    whose template fields are all blank gets an empty source (and is dropped, as an empty
    line is), whatever literal text the template adds."""
    template, select = data_config.source_template, data_config.select_sentences
    fields = (jsonl_fields(record, data_config, where) for where, record in records)
    while batch := list(itertools.islice(fields, chunk)):
        if select.field is not None:
            from transformer_tf.data.selection import select_sentences

            texts = [values[select.field] for values, _, _ in batch]
            queries = [values[select.query] for values, _, _ in batch]
            selected = select_sentences(texts, queries, select.keep).numpy()
            for (values, _, _), text in zip(batch, selected):
                values[select.field] = text.decode("utf-8")
        for values, target, references in batch:
            blank = not any(value.strip() for value in values.values())
            yield ("" if blank else fill_template(template, values)), target, references


def jsonl_fields(record, data_config, where):
    """(template field values, target, references) of one JSON record.

    The values are the record's fields that `data_config.source_template` names; the
    target is `data_config.target_field` (a string, or the first entry of a list), or the
    first reference when the record has no such field; the references are every
    `data_config.reference_fields` entry the record has (strings or lists), or else the
    target. A missing field is refused in one sentence naming `where` and the field.
    """
    values = {
        name: _text_field(record, name, where, "data.source_template")
        for name in template_fields(data_config.source_template)
    }
    references = [
        text
        for name in data_config.reference_fields
        if name in record
        for text in _texts_field(record, name, where)
    ]
    if data_config.target_field in record:
        target = _texts_field(record, data_config.target_field, where)[0]
    elif references:
        target = references[0]
    else:
        wanted = [data_config.target_field, *data_config.reference_fields]
        raise UserError(
            f"{where} has none of the fields {', '.join(map(repr, wanted))} "
            f"('data.target_field', 'data.reference_fields'); it has {', '.join(record)}."
        )
    return values, target, references or [target]


def parse_records(numbered_lines, origin):
    """JSON objects from (line number, text) pairs, blank lines skipped: (where, record),
    `where` naming `origin` and the line for messages. A line that is not a JSON object is
    refused in one sentence."""
    for number, line in numbered_lines:
        if not line.strip():
            continue
        where = f"{origin}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where} is not valid JSON ({err.msg}); fix or remove it.") from None
        if not isinstance(record, dict):
            raise UserError(f"{where} is a JSON {type(record).__name__}, not an object.")
        yield where, record


def _text_field(record, name, where, key):
    """The string `record[name]`, or a one-sentence error naming `where` and `key`."""
    if name not in record:
        raise UserError(
            f"{where} has no field {name!r} (named by '{key}'); it has {', '.join(record)}."
        )
    value = record[name]
    if not isinstance(value, str):
        raise UserError(
            f"{where}: field {name!r} is a JSON {type(value).__name__}, not a string "
            f"(named by '{key}')."
        )
    return value


def _texts_field(record, name, where):
    """A target or reference field: a string, or a non-empty list of strings -> list."""
    value = record[name]
    texts = [value] if isinstance(value, str) else value
    if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
        raise UserError(
            f"{where}: field {name!r} must be a string or a non-empty list of strings, "
            f"got {json.dumps(value)[:80]}."
        )
    return texts


def _tfds_splits(data_config, names):
    """Splits of a TensorFlow Datasets translation dataset, in memory."""
    splits = {}
    for split in names:
        pairs = [
            (source.decode("utf-8"), target.decode("utf-8"))
            for source, target in tfds_pairs(data_config, split).as_numpy_iterator()
        ]
        splits[split] = ([s for s, _ in pairs], [t for _, t in pairs])
        log.info("%s: %d pairs", _origin(data_config, split), len(pairs))
    return splits


def tfds_pairs(data_config, split):
    """A split of a TensorFlow Datasets translation dataset (prepared first if needed) as
    a `tf.data.Dataset` of (source, target) strings, read by `as_dataset`."""
    import tensorflow_datasets as tfds

    name = TED_HRLR_PT_EN if data_config.source == "ted_hrlr_pt_en" else data_config.tfds.name
    tfds_config = data_config.tfds
    try:
        builder = tfds.builder(name, data_dir=tfds_config.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        close = difflib.get_close_matches(name.split("/")[0], tfds.list_builders(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"TFDS has no dataset '{name}'{hint}; fix 'data.tfds.name'.") from None
    except ValueError as err:  # e.g. an unknown config after the slash
        raise UserError(f"TFDS cannot open '{name}': {err}; fix 'data.tfds.name'.") from None
    if not builder.is_prepared():
        log.info("preparing TFDS dataset %s in %s (downloads it)", name, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as err:  # network errors surface as many types
            raise UserError(
                f"TFDS dataset '{name}' is not prepared in '{builder.data_dir}' and could not "
                f"be downloaded ({type(err).__name__}: {str(err)[:200]}); on a machine with "
                f"network run `tfds build {name} --data_dir DIR`, copy DIR here and set "
                "'data.tfds.data_dir' to it."
            ) from None
    keys = builder.info.supervised_keys or (None, None)
    source_key = data_config.source_language or keys[0]
    target_key = data_config.target_language or keys[1]
    features = list(builder.info.features.keys())
    for config_key, key in (("source_language", source_key), ("target_language", target_key)):
        if key not in features:
            raise UserError(
                f"TFDS dataset '{name}' has no feature {key!r}; set "
                f"'data.{config_key}' to one of {features}."
            )
    tfds_split = getattr(tfds_config, f"{split}_split")
    try:
        dataset = builder.as_dataset(split=tfds_split)
    except (KeyError, ValueError):
        raise UserError(
            f"TFDS dataset '{name}' has no split '{tfds_split}'; set "
            f"'data.tfds.{split}_split' to one of {sorted(builder.info.splits)}."
        ) from None
    return dataset.map(lambda example: (example[source_key], example[target_key]))
