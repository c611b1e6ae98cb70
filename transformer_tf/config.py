"""Run configuration: dataclasses, YAML loading, validation and dotted overrides.

Every key is checked before any work starts: an unknown key or a value of the wrong type
stops with the key's dotted path and, for a typo, the nearest valid name.
"""

import dataclasses
import difflib
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import yaml

from transformer_tf.data.templates import template_fields
from transformer_tf.errors import ConfigError


@dataclass
class SplitFiles:
    """The files of one split. Each entry is a local path or an http(s) URL (downloaded once
    into `data.cache_dir`); `.gz` files are read transparently."""

    source: Optional[str] = None  # text: source-language sentences, one per line
    target: Optional[str] = None  # text: their translations, line N translating line N
    tsv: Optional[str] = None  # tsv: one file of `source<TAB>target` lines
    jsonl: Optional[str] = None  # jsonl: one JSON object a line (fields: see data.source_template)


@dataclass
class TfdsConfig:
    """A TensorFlow Datasets translation dataset (`data.source: tfds`)."""

    name: Optional[str] = None  # e.g. ted_hrlr_translate/pt_to_en, wmt14_translate/de-en
    data_dir: Optional[str] = None  # where it is prepared; default: TFDS's own
    train_split: str = "train"  # the TFDS split used for training
    validation_split: str = "validation"  # for validation during training
    test_split: str = "test"  # for the final evaluation


@dataclass
class SentenceSelection:
    """Cut one field of a JSON record to its sentences sharing the most words with another
    (`data/selection.py`), before the source template is filled: in training, evaluation
    and an exported model alike."""

    field: Optional[str] = None  # the long field to cut, e.g. context; null: no selection
    query: Optional[str] = None  # the field whose words rank its sentences, e.g. question
    keep: int = 3  # sentences kept, in their order in the field


@dataclass
class DataConfig:
    """Where the sentence pairs come from and how they are batched."""

    # synthetic: the embedded English->German corpus; text / tsv / jsonl: files of `train`,
    # `validation`, `test`; tfds: the dataset of `tfds`; multi30k: the Multi30K corpus
    # (downloaded, or read from `dir`); ted_hrlr_pt_en: the TensorFlow tutorial's
    # Portuguese->English TED talks through TFDS.
    source: Literal["synthetic", "text", "tsv", "jsonl", "tfds", "multi30k", "ted_hrlr_pt_en"] = (
        "synthetic"
    )
    # jsonl: the source text made from a record's fields, e.g. "question: {question} context:
    # {context}" or "{dialogue}"; an exported model takes these fields as named inputs
    source_template: Optional[str] = None
    # jsonl: keep only the sentences of one template field that share most words with another
    select_sentences: SentenceSelection = field(default_factory=SentenceSelection)
    # jsonl: the field of the training target: a string, or a list whose first entry is it
    target_field: Optional[str] = None
    # jsonl: the fields holding references for evaluation (strings or lists; every one a
    # record has is used, e.g. [summary1, summary2, summary3]); none there: the target
    reference_fields: List[str] = field(default_factory=list)
    # multi30k: en, de or fr (default en -> de); tfds: the feature keys (default: the
    # dataset's supervised keys)
    source_language: Optional[str] = None
    target_language: Optional[str] = None  # as source_language, for the target side
    dir: Optional[str] = None  # multi30k: a folder holding its files; default: download them
    train: SplitFiles = field(default_factory=SplitFiles)
    validation: SplitFiles = field(default_factory=SplitFiles)
    test: SplitFiles = field(default_factory=SplitFiles)
    sha256: Dict[str, str] = field(default_factory=dict)  # URL -> expected SHA-256
    cache_dir: Optional[str] = None  # downloads; default: ~/.cache/transformer_tf
    tfds: TfdsConfig = field(default_factory=TfdsConfig)
    train_size: int = 20000  # synthetic: sentence pairs in the training split
    validation_size: int = 500  # synthetic: pairs in the validation split
    test_size: int = 500  # synthetic: pairs in the test split
    seed: int = 1234  # synthetic: generator seed
    max_length: int = 64  # training pairs with more tokens than this (either side) are dropped
    # training pairs with more source tokens are dropped (default: max_length); sources
    # longer than the model reads (model.pe_input) are cut there first, in training,
    # evaluation and serving alike
    max_source_length: Optional[int] = None
    max_target_length: Optional[int] = None  # as max_source_length, for the target side
    batch_size: int = 64  # sentences per training batch (global, across replicas)
    # tokens per training batch, padding included (global); set, it replaces batch_size
    batch_tokens: Optional[int] = None
    shuffle_buffer: int = 20000  # training pairs shuffled and batched together, as one block
    # training pairs as token ids, written by `transformer-tf prepare`; training reads them
    # when they are there (default: <run_dir>/prepared)
    prepared_dir: Optional[str] = None
    # pad each batch to its length bucket's bound and batch size: one shape a bucket (XLA)
    pad_to_buckets: bool = False
    # training streams a global batch is made of (stream k: pairs i with i mod N == k,
    # batched on its own with 1/N of the budget), each worker reading only its own; null:
    # one per worker process. Fix it to train the same on any number of workers.
    input_shards: Optional[int] = None

    def length_limits(self) -> tuple[int, int]:
        """(most source tokens, most target tokens) of a training pair."""
        return (
            self.max_source_length or self.max_length,
            self.max_target_length or self.max_length,
        )


@dataclass
class TokenizerConfig:
    """Subword tokenizers, built from the training split and stored in `<run_dir>/vocab`."""

    # sentencepiece: trained with the sentencepiece package (cased, keeps accents);
    # wordpiece: built with tensorflow-text's bert_vocab_from_dataset, as the TensorFlow
    # tutorial does, but keeping case and accents.
    type: Literal["sentencepiece", "wordpiece"] = "sentencepiece"
    model_type: Literal["unigram", "bpe"] = "unigram"  # sentencepiece's algorithm
    shared: bool = False  # one vocabulary for both sides, of source_vocab_size entries
    source_vocab_size: int = 8000  # requested size; the real size may be smaller on a small corpus
    target_vocab_size: int = 8000  # requested size of the target vocabulary (not shared)
    character_coverage: float = 1.0  # sentencepiece
    # sentencepiece: case-fold every text before tokenizing (its nmt_nfkc_cf normalizer,
    # stored in the model, so serving folds too); the output is lower-case. For corpora
    # scored lower-cased, as Multi30K's published results are.
    lowercase: bool = False
    # sentences the vocabulary is built from: a larger training split is sampled (uniformly,
    # reproducibly), so vocabulary time and memory stop growing with the corpus
    sample_size: int = 1_000_000
    # sentencepiece: subword regularization (Kudo, 2018): training reads its pairs tokenized
    # sampling_copies times (prepared once; an epoch is all the copies), each segmentation
    # drawn at random, while validation, test and serving keep the best one. The draw's
    # smoothing (bpe: the probability of dropping a merge); None: off
    sampling_alpha: Optional[float] = None
    sampling_nbest: int = 64  # segmentations a draw chooses from: the best 64 (-1: all)
    sampling_copies: int = 16  # segmentations drawn of every training pair


@dataclass
class ModelConfig:
    """Exactly the arguments of `Transformer`; vocabulary sizes left empty come from the
    tokenizers (rounded up to a multiple of 8)."""

    num_layers: int = 6  # layers in the encoder and in the decoder
    d_model: int = 512  # model width
    num_heads: int = 8  # attention heads; must divide d_model
    dff: int = 2048  # inner width of the feed-forward networks
    input_vocab_size: Optional[int] = None  # default: the source tokenizer's size
    target_vocab_size: Optional[int] = None  # default: the target tokenizer's size
    pe_input: int = 256  # longest source sequence (positional encodings)
    pe_target: int = 256  # longest target sequence
    rate: float = 0.1  # dropout rate on embeddings and on every sublayer's output
    # none: separate matrices; decoder: the output projection is the target embedding;
    # all: source embedding, target embedding and output projection are one matrix (needs
    # tokenizer.shared: true). fairseq's --share-decoder-input-output-embed / --share-all-embeddings
    share_embeddings: Literal["none", "decoder", "all"] = "none"
    # post: layer norm after each residual sum (the paper); pre: before each sublayer, and a
    # final layer norm on each stack (tensor2tensor, fairseq --encoder-normalize-before)
    norm: Literal["post", "pre"] = "post"
    attention_dropout: float = 0.0  # dropout on the attention weights
    activation_dropout: float = 0.0  # dropout after the feed-forward ReLU
    # whole tokens dropped in training: each source and target token's embedding zeroed
    # with this probability (word dropout, Gal and Ghahramani 2016), the rest scaled up
    word_dropout: float = 0.0
    # mix copying from the source into every output distribution (pointer-generator: the
    # last decoder layer's attention points at source tokens); needs tokenizer.shared: true
    copy_attention: bool = False


@dataclass
class TrainConfig:
    """The custom training loop."""

    steps: int = 100000  # optimizer updates in total
    # a time budget: stop at the first log_every step past this many minutes of training,
    # summed over the runs that resumed it (compile, validations and saves included), and
    # keep that checkpoint; null: steps alone end the run
    max_minutes: Optional[float] = None
    optimizer: Literal["adam", "adamw"] = "adam"  # adamw: with decoupled weight decay
    adam_beta_1: float = 0.9  # the paper's Adam settings
    adam_beta_2: float = 0.98  # (adam and adamw)
    adam_epsilon: float = 1e-9  # (adam and adamw)
    weight_decay: float = 0.0  # adamw: decoupled decay, not applied to biases and layer norms
    # noam: scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5) (the paper's);
    # inverse_sqrt: linear warm-up to learning_rate, then learning_rate * sqrt(warmup / step);
    # constant: learning_rate.
    schedule: Literal["noam", "inverse_sqrt", "constant"] = "noam"
    warmup_steps: int = 4000  # steps of rising learning rate (noam, inverse_sqrt)
    learning_rate_scale: float = 1.0  # noam: multiplies the schedule
    learning_rate: float = 0.001  # inverse_sqrt: peak rate; constant: the rate
    # the last N of `steps` take the schedule's rate linearly down to 0; 0: no cool-down
    cooldown_steps: int = 0
    label_smoothing: float = 0.1  # share of the target probability spread over the vocabulary
    # R-Drop (Liang et al., 2021): each batch goes through the model twice, under different
    # dropout, and alpha times the symmetric KL divergence of the two predictions joins the
    # loss (the paper's alpha; each update costs two); 0: off
    rdrop_alpha: float = 0.0
    clip_norm: Optional[float] = None  # clip gradients to this global norm
    accumulation_steps: int = 1  # micro-batches per update, weighted by target tokens
    # compute dtype; auto: a probe at start-up (training/probes.py) takes bfloat16 (float16
    # on a GPU) where it runs clearly faster here, else float32 (with jit_compile auto and
    # data.pad_to_buckets, the train step is timed in each precision with and without XLA)
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # compile the train step with XLA; auto: where a probe of the step finds it clearly
    # faster (only with data.pad_to_buckets). An auto choice is kept in config.yaml
    jit_compile: Literal["auto", True, False] = "auto"
    deterministic: bool = False  # deterministic ops: bit-exact resume, somewhat slower
    seed: int = 42  # weights, dropout and data order
    log_every: int = 100  # steps between log lines and TensorBoard points
    checkpoint_every: int = 1000  # steps between checkpoints
    keep_checkpoints: int = 5  # latest checkpoints kept (the best one is kept apart)
    eval_every: int = 0  # steps between validation evaluations; 0: none during training
    # picks checkpoints/best; rouge1 / rouge2 / rouge_l need eval.metrics to list rouge
    best_metric: Literal["bleu", "chrf", "rouge1", "rouge2", "rouge_l", "loss"] = "bleu"
    early_stopping_patience: int = 0  # evaluations without improvement before stopping; 0: off


@dataclass
class DistributeConfig:
    """tf.distribute. Batch sizes in `data` are global: each replica gets an equal share."""

    # auto: a TPU when one is named or attached, mirrored over the GPUs when there are
    # several, else default (one device); one_device: the first GPU, or the CPU; mirrored:
    # all GPUs of this machine; multi_worker: several machines, from TF_CONFIG; tpu: a
    # Cloud TPU.
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"] = "auto"
    tpu: Optional[str] = None  # tpu: the TPU's name or grpc:// address (default: TPU_NAME)


@dataclass
class EvalConfig:
    """Decoding and scoring (used after training, by `evaluate`, and by the export)."""

    split: Literal["train", "validation", "test"] = "test"  # evaluated after training
    # Sentences per decoding batch. Sentences leave the batch as they end, so a large batch
    # costs no more than its outputs' lengths; it spreads each step's fixed cost wider.
    batch_size: int = 256
    beam_size: int = 1  # 1: greedy search
    length_penalty: float = 0.6  # beam search: GNMT alpha; 0 ranks by summed log-probability
    sampling_topk: int = 0  # 0: no sampling; k > 0: sample among the k likeliest; -1: all
    sampling_temperature: float = 1.0  # sampling: divides the logits
    # n > 0: no output holds an n-gram twice (fairseq's --no-repeat-ngram-size); 0: off
    no_repeat_ngram_size: int = 0
    max_length_ratio: float = 1.5  # decode at most ratio * source_tokens + offset tokens
    max_length_offset: int = 10  # see max_length_ratio
    # Scores of every evaluation: bleu and chrf (sacrebleu), rouge (ROUGE-1/2/L F1 from
    # rouge-score, stemmed; with several references, the best and the mean over them)
    metrics: List[Literal["bleu", "chrf", "rouge"]] = field(
        default_factory=lambda: ["bleu", "chrf"]
    )
    lowercase: bool = False  # lower-cased BLEU
    tokenize: str = "13a"  # sacrebleu tokenizer for BLEU (13a, intl, none, ...)
    samples: int = 3  # sample translations printed after evaluation
    max_sentences: Optional[int] = None  # decode at most this many (validation during training)
    # Decode with the mean weights of the last N checkpoints (after training, in `evaluate`
    # and `export`, unless --average-last says otherwise); 1: the latest weights alone.
    average_last: int = 1
    # Run directories whose models decode together with this run's: each step takes the
    # mean of their probabilities (each member also averaged as average_last says). They
    # must have this run's tokenizers (same data and tokenizer settings give the same ones).
    ensemble: List[str] = field(default_factory=list)


@dataclass
class ExportConfig:
    """The SavedModel written by `export` (and at the end of `train`)."""

    after_training: bool = True  # `train` exports when it finishes
    directory: Optional[str] = None  # default: <run_dir>/export


@dataclass
class Config:
    run_dir: str = "runs/default"  # checkpoints, logs, vocabularies, export
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self):
        return dataclasses.asdict(self)


def _type_name(tp):
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return str(tp)


def _convert(value, tp, where):
    """Check `value` against the annotation `tp`; return it (ints widened to floats)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (tp,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _convert(value, tp, where)
    if tp is float and isinstance(value, str):
        # PyYAML reads 1e-4 (no dot) as a string; take what is plainly a number.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if origin is Literal:
        ok = value in typing.get_args(tp)
    if not ok:
        raise ConfigError(
            f"{where} must be {_type_name(tp)}, got {value!r}; fix it in the config "
            "or the --set override."
        )
    return float(value) if tp is float else value


def _convert_mapping(value, where):
    """A mapping of strings to strings (e.g. URL -> checksum)."""
    value = value or {}
    if not (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ConfigError(f"{where} must be a mapping of strings to strings, got {value!r}.")
    return dict(value)


def _convert_list(value, item_type, where):
    """A list whose every entry is checked against `item_type`."""
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list (e.g. [a, b]), got {value!r}.")
    return [_convert(item, item_type, f"{where} entry {i + 1}") for i, item in enumerate(value)]


def _build(cls, values, path, source):
    """Make dataclass `cls` from a dict, checking every key and type."""
    where_section = f"{source}: '{path}'" if path else source
    if not isinstance(values, dict):
        raise ConfigError(f"{where_section} must be a mapping of keys to values, got {values!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = (
                f"did you mean '{path + '.' if path else ''}{close[0]}'?"
                if close
                else ("valid keys here: " + ", ".join(fields) + ".")
            )
            raise ConfigError(f"{source}: unknown key '{dotted}'; {hint}")
        tp = hints[key]
        if typing.get_origin(tp) is dict:
            kwargs[key] = _convert_mapping(value, f"{source}: '{dotted}'")
        elif typing.get_origin(tp) is list:
            kwargs[key] = _convert_list(value, typing.get_args(tp)[0], f"{source}: '{dotted}'")
        elif dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, dotted, source)
        else:
            kwargs[key] = _convert(value, tp, f"{source}: '{dotted}'")
    return cls(**kwargs)


def _apply_override(tree, assignment):
    """Set `a.b=c` in a nested dict; the value is parsed as YAML (so 200 is an int)."""
    if "=" not in assignment:
        raise ConfigError(
            f"override '{assignment}' is not of the form key.path=value "
            "(for example --set train.steps=200)."
        )
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{assignment}': '{key}' is not a section.")
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(
            f"override '{assignment}': the value is not valid YAML ({problem}); quote it."
        ) from None


def _check(config, source):
    """Checks that involve more than one key or a value range."""
    m = config.model
    if m.d_model % m.num_heads:
        raise ConfigError(
            f"{source}: 'model.d_model' ({m.d_model}) must be divisible by "
            f"'model.num_heads' ({m.num_heads})."
        )
    positive = {
        "model.num_layers": m.num_layers,
        "model.d_model": m.d_model,
        "model.num_heads": m.num_heads,
        "model.dff": m.dff,
        "model.pe_input": m.pe_input,
        "model.pe_target": m.pe_target,
        "train.steps": config.train.steps,
        "train.warmup_steps": config.train.warmup_steps,
        "train.log_every": config.train.log_every,
        "train.checkpoint_every": config.train.checkpoint_every,
        "train.keep_checkpoints": config.train.keep_checkpoints,
        "train.accumulation_steps": config.train.accumulation_steps,
        "train.learning_rate": config.train.learning_rate,
        "data.batch_size": config.data.batch_size,
        "data.max_length": config.data.max_length,
        "data.train_size": config.data.train_size,
        "eval.batch_size": config.eval.batch_size,
        "eval.average_last": config.eval.average_last,
        "tokenizer.source_vocab_size": config.tokenizer.source_vocab_size,
        "tokenizer.target_vocab_size": config.tokenizer.target_vocab_size,
        "tokenizer.sample_size": config.tokenizer.sample_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{source}: '{key}' must be positive, got {value}.")
    for key in ("max_source_length", "max_target_length", "input_shards"):
        value = getattr(config.data, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: 'data.{key}' must be positive or null, got {value}.")
    longest = max(config.data.length_limits())
    if config.data.batch_tokens is not None and config.data.batch_tokens < longest:
        raise ConfigError(
            f"{source}: 'data.batch_tokens' ({config.data.batch_tokens}) must be at "
            f"least the longest pair a batch may hold ({longest} tokens, from "
            "'data.max_length' / 'data.max_source_length' / 'data.max_target_length')."
        )
    _check_data_source(config.data, source)
    if config.eval.average_last > config.train.keep_checkpoints:
        raise ConfigError(
            f"{source}: 'eval.average_last' ({config.eval.average_last}) is more checkpoints "
            f"than 'train.keep_checkpoints' ({config.train.keep_checkpoints}) keeps; raise "
            "keep_checkpoints or lower average_last."
        )
    if config.eval.beam_size < 1:
        raise ConfigError(
            f"{source}: 'eval.beam_size' must be 1 or more, got {config.eval.beam_size}."
        )
    if config.eval.sampling_topk and config.eval.beam_size > 1:
        raise ConfigError(
            f"{source}: 'eval.sampling_topk' samples one hypothesis; set "
            "'eval.beam_size' to 1 or 'eval.sampling_topk' to 0."
        )
    if config.eval.no_repeat_ngram_size < 0:
        raise ConfigError(
            f"{source}: 'eval.no_repeat_ngram_size' must be 0 (off) or the n-gram size, "
            f"got {config.eval.no_repeat_ngram_size}."
        )
    if config.eval.sampling_temperature <= 0:
        raise ConfigError(
            f"{source}: 'eval.sampling_temperature' must be positive, "
            f"got {config.eval.sampling_temperature}."
        )
    for key in ("rate", "attention_dropout", "activation_dropout", "word_dropout"):
        if not 0.0 <= getattr(m, key) < 1.0:
            raise ConfigError(f"{source}: 'model.{key}' must be in [0, 1), got {getattr(m, key)}.")
    if config.tokenizer.lowercase and config.tokenizer.type != "sentencepiece":
        raise ConfigError(
            f"{source}: 'tokenizer.lowercase' needs 'tokenizer.type: sentencepiece' (WordPiece's "
            "lower-casing also strips accents); lower-case the text files instead."
        )
    tok = config.tokenizer
    if tok.sampling_alpha is not None:
        if tok.type != "sentencepiece":
            raise ConfigError(
                f"{source}: 'tokenizer.sampling_alpha' samples SentencePiece segmentations; set "
                "'tokenizer.type: sentencepiece' or remove sampling_alpha."
            )
        if not 0.0 < tok.sampling_alpha <= 1.0:
            raise ConfigError(
                f"{source}: 'tokenizer.sampling_alpha' must be in (0, 1], got {tok.sampling_alpha}."
            )
        if tok.sampling_nbest != -1 and tok.sampling_nbest < 2:
            raise ConfigError(
                f"{source}: 'tokenizer.sampling_nbest' must be -1 (all segmentations) or 2 or "
                f"more, got {tok.sampling_nbest}."
            )
        if tok.sampling_copies < 1:
            raise ConfigError(
                f"{source}: 'tokenizer.sampling_copies' must be 1 or more, "
                f"got {tok.sampling_copies}."
            )
    if m.copy_attention and not config.tokenizer.shared:
        raise ConfigError(
            f"{source}: 'model.copy_attention' copies source tokens into the output, which "
            "needs one vocabulary: set 'tokenizer.shared: true'."
        )
    if m.share_embeddings == "all" and not config.tokenizer.shared:
        raise ConfigError(
            f"{source}: 'model.share_embeddings: all' ties the source and target "
            "embeddings, which needs one vocabulary: set 'tokenizer.shared: true' "
            "or use share_embeddings 'decoder' or 'none'."
        )
    if config.train.cooldown_steps > config.train.steps:
        raise ConfigError(
            f"{source}: 'train.cooldown_steps' ({config.train.cooldown_steps}) must be at most "
            f"'train.steps' ({config.train.steps}): the rate falls to 0 over the last steps."
        )
    for key in ("eval_every", "early_stopping_patience", "cooldown_steps"):
        if getattr(config.train, key) < 0:
            raise ConfigError(
                f"{source}: 'train.{key}' must be 0 or more, got {getattr(config.train, key)}."
            )
    for key in ("clip_norm", "max_minutes"):
        value = getattr(config.train, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: 'train.{key}' must be positive or null, got {value}.")
    if config.train.early_stopping_patience and not config.train.eval_every:
        raise ConfigError(
            f"{source}: 'train.early_stopping_patience' needs evaluations; set "
            "'train.eval_every' to a number of steps."
        )
    if not config.eval.metrics:
        raise ConfigError(f"{source}: 'eval.metrics' is empty; list bleu, chrf and/or rouge.")
    metric = config.train.best_metric
    family = "rouge" if metric.startswith("rouge") else metric
    if family != "loss" and family not in config.eval.metrics:
        raise ConfigError(
            f"{source}: 'train.best_metric' is {metric}, which 'eval.metrics' "
            f"({', '.join(config.eval.metrics) or 'empty'}) does not compute; add {family} "
            "there or choose another best_metric."
        )
    if config.train.rdrop_alpha < 0:
        raise ConfigError(
            f"{source}: 'train.rdrop_alpha' must be 0 (off) or positive, "
            f"got {config.train.rdrop_alpha}."
        )
    if not 0.0 <= config.train.label_smoothing < 1.0:
        raise ConfigError(
            f"{source}: 'train.label_smoothing' must be in [0, 1), "
            f"got {config.train.label_smoothing}."
        )


def _check_data_source(data, source):
    """Each source has the keys it needs, and only those that make sense for it."""
    splits = {name: getattr(data, name) for name in ("train", "validation", "test")}
    if data.source == "text":
        for name, files in splits.items():
            if not (files.source and files.target):
                raise ConfigError(
                    f"{source}: data.source 'text' needs 'data.{name}.source' and "
                    f"'data.{name}.target' (a path, URL or glob each)."
                )
    elif data.source == "tsv":
        for name, files in splits.items():
            if not files.tsv:
                raise ConfigError(
                    f"{source}: data.source 'tsv' needs 'data.{name}.tsv' (a path, URL or glob)."
                )
    elif data.source == "jsonl":
        _check_jsonl(data, splits, source)
    elif data.source == "tfds" and not data.tfds.name:
        raise ConfigError(
            f"{source}: data.source 'tfds' needs 'data.tfds.name' (for example "
            "ted_hrlr_translate/pt_to_en)."
        )
    if data.source != "jsonl":
        keys = ("source_template", "target_field", "reference_fields")
        used = {key: getattr(data, key) for key in keys}
        used["select_sentences"] = data.select_sentences.field or data.select_sentences.query
        for key, value in used.items():
            if value:
                raise ConfigError(
                    f"{source}: 'data.{key}' reads JSON records: it needs "
                    f"'data.source: jsonl' (the source is {data.source!r})."
                )
    if data.source == "multi30k":
        for key in ("source_language", "target_language"):
            language = getattr(data, key)
            if language is not None and language not in ("en", "de", "fr"):
                raise ConfigError(
                    f"{source}: 'data.{key}' must be en, de or fr for Multi30K, got {language!r}."
                )
        if (data.source_language or "en") == (data.target_language or "de"):
            raise ConfigError(
                f"{source}: 'data.source_language' and 'data.target_language' must differ."
            )


def _check_jsonl(data, splits, source):
    """A jsonl source names its files, a valid template and the target's field."""
    for name, files in splits.items():
        if not files.jsonl:
            raise ConfigError(
                f"{source}: data.source 'jsonl' needs 'data.{name}.jsonl' (a path, URL or glob)."
            )
    for key, example in (("source_template", "'{question} {context}'"), ("target_field", "answer")):
        if not getattr(data, key):
            raise ConfigError(
                f"{source}: data.source 'jsonl' needs 'data.{key}' (for example {example})."
            )
    try:
        fields = template_fields(data.source_template)
    except ValueError as err:
        raise ConfigError(f"{source}: 'data.source_template': {err}.") from None
    if not fields:
        raise ConfigError(
            f"{source}: 'data.source_template' ({data.source_template!r}) names no field; "
            "put the record's fields in braces, e.g. '{dialogue}'."
        )
    select = data.select_sentences
    if select.field is not None or select.query is not None:
        for key in ("field", "query"):
            name = getattr(select, key)
            if name not in fields:
                raise ConfigError(
                    f"{source}: 'data.select_sentences.{key}' ({name!r}) must be a field of "
                    f"'data.source_template' ({', '.join(fields)})."
                )
        if select.query == select.field or select.keep < 1:
            raise ConfigError(
                f"{source}: 'data.select_sentences' needs a query field other than its field "
                f"and keep >= 1 (got field {select.field!r}, query {select.query!r}, keep "
                f"{select.keep})."
            )


def config_from_dict(values: dict, source: str = "config", overrides: Sequence[str] = ()) -> Config:
    """Build a checked `Config` from a nested dict plus `key.path=value` overrides."""
    values = dict(values or {})
    for assignment in overrides:
        _apply_override(values, assignment)
    config = _build(Config, values, "", source)
    _check(config, source)
    return config


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config file and apply overrides. Raises `ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found; check the --config path.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", err)
        raise ConfigError(f"{path}:{line} is not valid YAML ({problem}).") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, not {type(values).__name__}."
        )
    return config_from_dict(values, str(path), overrides)


def round_up(value, multiple=8):
    """`value` rounded up to a multiple of `multiple`."""
    return -(-value // multiple) * multiple


def resolve_model_config(model_config, source_vocab_size, target_vocab_size):
    """The model section with vocabulary sizes left empty taken from the tokenizers
    (rounded up to a multiple of 8, which keeps matrix shapes friendly to vector units);
    sizes that are too small, or unequal with shared embeddings, are refused."""
    sizes = {"input_vocab_size": source_vocab_size, "target_vocab_size": target_vocab_size}
    resolved = {}
    for key, needed in sizes.items():
        given = getattr(model_config, key)
        if given is not None and given < needed:
            raise ConfigError(
                f"'model.{key}' is {given} but the tokenizer has {needed} entries; "
                "remove the key to take the tokenizer's size, or raise it."
            )
        resolved[key] = given if given is not None else round_up(needed)
    if model_config.share_embeddings == "all" and len(set(resolved.values())) > 1:
        raise ConfigError(
            "'model.share_embeddings: all' needs equal 'model.input_vocab_size' "
            f"and 'model.target_vocab_size', got {resolved['input_vocab_size']} "
            f"and {resolved['target_vocab_size']}; remove both keys to take the "
            "shared vocabulary's size."
        )
    return dataclasses.replace(model_config, **resolved)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
