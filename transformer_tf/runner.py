"""The Runner: one run from config to SavedModel.

Data flows one way: config -> data source -> tokenizers -> trainer (model + strategy) ->
checkpoints -> translator -> evaluation / export. The Runner is the one place that walks
that chain; the modules it calls do not reach back up it.
"""

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf

from transformer_tf.checkpoints import restore_model
from transformer_tf.config import Config, resolve_model_config
from transformer_tf.data import prepared
from transformer_tf.data.pipeline import TextPairs
from transformer_tf.data.sources import Split, TrainingText, load_splits, read_parallel
from transformer_tf.data.tokenizers import (
    build_or_load_tokenizers,
    load_tokenizers,
    vocab_path,
    wait_for_tokenizers,
)
from transformer_tf.errors import UserError
from transformer_tf.evaluation.evaluate import evaluate
from transformer_tf.inference.ensemble import Ensemble
from transformer_tf.inference.translator import ServedTranslator, Translator
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir, saved_model_dir

if TYPE_CHECKING:  # the trainer module is imported when a run trains
    from transformer_tf.training.trainer import TrainResult

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("saved_model", "ctranslate2")
IN_MEMORY_PAIRS = 200_000  # more in a validation or test split is warned about


@dataclasses.dataclass
class Exported:
    """What `Runner.export` wrote; `str()` is the report the command line prints."""

    directory: Path
    step: int
    kind: str  # "SavedModel", "SavedModel of token ids" or "CTranslate2 model"
    check: tuple[str, str] | None  # (sentence, its translation by the exported model)

    def __str__(self):
        lines = [f"exported {self.kind} (step {self.step}) to {self.directory}"]
        if self.check:
            lines.append("  check: {!r} -> {!r}".format(*self.check))
        return "\n".join(lines)


class Runner:
    """Owns one run: its config, data splits, tokenizers and model.

    Splits and tokenizers are loaded when first needed, once, and shared by `train`,
    `evaluate`, `export` and `translator`. After `train`, evaluation and export use the
    trained weights in memory instead of reading them back from disk.

    Args:
        config: the run's `Config` (from `load_config`, or `RunDir.read_config` for a
            trained run).

    Example (trains for minutes, so not run as a doctest):
        >>> runner = Runner(load_config("configs/quickstart.yaml"))  # doctest: +SKIP
        >>> result = runner.train()  # or resume  # doctest: +SKIP
        >>> runner.evaluate("test")["bleu"]  # doctest: +SKIP
        99.0
        >>> runner.export().directory  # doctest: +SKIP
        'runs/quickstart/export'
    """

    def __init__(self, config: Config):
        self.config = config
        self.run_dir = RunDir(config.run_dir)
        self._splits = {}
        self._training_text = None
        self._tokenizers = None
        self._trained = None  # (model, step) after `train`

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, overrides: Sequence[str] = ()) -> "Runner":
        """The runner of a trained run, from the config saved in `run_dir`."""
        return cls(RunDir(run_dir).read_config(overrides))

    # -- what the run is made of ------------------------------------------------------------

    def split(self, name: str) -> Split:
        """The split `name` of the configured data (sources, targets, references), loaded
        once."""
        if name not in self._splits:
            self._splits[name] = load_splits(self.config.data, [name])[name]
            if len(self._splits[name].sources) > IN_MEMORY_PAIRS:
                log.warning(
                    "warning: the %s split has %d pairs, all held in memory (only the "
                    "training split streams); give it a smaller file or a TFDS split slice.",
                    name,
                    len(self._splits[name].sources),
                )
        return self._splits[name]

    def training_text(self) -> TrainingText:
        """The training split as a stream (`TrainingText`), for the vocabularies, `prepare`
        and training: never loaded whole."""
        if self._training_text is None:
            self._training_text = TrainingText(self.config.data)
        return self._training_text

    def tokenizers(self):
        """(source, target) tokenizers of the run, loaded once from its vocab folder."""
        if self._tokenizers is None:
            self._tokenizers = load_tokenizers(self.run_dir.vocab, self.config.tokenizer.type)
        return self._tokenizers

    def build_vocab(self, chief=True):
        """The tokenizers, built from the training split first if the run has none.
        Workers other than the chief (`chief=False`) wait for the chief's instead."""
        if self._tokenizers is None:
            if chief:
                text = self.training_text()
                self._tokenizers = build_or_load_tokenizers(
                    self.config.tokenizer,
                    (source for source, _ in text.pairs()),  # each read only if needed
                    (target for _, target in text.pairs()),
                    self.run_dir.vocab,
                )
            else:
                self._tokenizers = wait_for_tokenizers(self.config.tokenizer, self.run_dir.vocab)
        return self._tokenizers

    def vocab_files(self):
        """The run's tokenizer files: [source, target]."""
        return [
            vocab_path(self.run_dir.vocab, side, self.config.tokenizer.type)
            for side in ("source", "target")
        ]

    def _resolve_model_config(self):
        """Fill the model's vocabulary sizes from the tokenizers, as training does."""
        model = self.config.model
        if model.input_vocab_size is None or model.target_vocab_size is None:
            source, target = self.tokenizers()
            model = resolve_model_config(model, source.vocab_size, target.vocab_size)
            self.config = dataclasses.replace(self.config, model=model)
        return self.config.model

    # -- train --------------------------------------------------------------------------------

    def trainer(self):
        """The run's `Trainer`, restored from the latest checkpoint if there is one: the
        run directory locked for this process (`train` releases it), the vocabularies built
        (or loaded), the model shape checked against the run directory's and the resolved
        config written there."""
        # Imported here: the strategy must be made before TensorFlow does any other work
        # (multi-worker collectives cannot be configured after), so nothing above builds ops.
        from transformer_tf.training.distribute import is_chief, make_strategy
        from transformer_tf.training.trainer import Trainer

        strategy = make_strategy(self.config.distribute)
        chief = is_chief(strategy)
        if chief:  # before anything is written to the run directory
            self.run_dir.take_lock()
        train = self.config.train
        if train.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Seeding clears TensorFlow's kernel cache, and with it the kernels that hold a
        # tokenizer's vocabulary: seed first, and make tokenizers made before anew.
        tf.keras.utils.set_random_seed(train.seed)
        self._tokenizers = None
        self.build_vocab(chief)
        self._resolve_model_config()
        self.run_dir.check_same_model(self.config)
        if self._choose_auto_settings(strategy):
            # The XLA probe's scratch models drew from the seeded random state: seed again,
            # so that the run starts as it would have without the probe.
            tf.keras.utils.set_random_seed(train.seed)
            self._tokenizers = None
        if chief:
            self.run_dir.write_config(self.config)
        return Trainer(
            self.config,
            strategy,
            self.training_pairs(check=chief),
            self.split("validation"),
            self.tokenizers(),
        )

    def _choose_auto_settings(self, strategy):
        """`train.precision` and `train.jit_compile` set to `auto`: the choice this run made
        when it started (its config.yaml), or else the start-up probes' (`probes`), which
        measure this process: with several replicas or workers they would not agree, so
        there auto means float32 without XLA (say the choice explicitly). Returns whether
        a probe of the train step ran (it builds scratch models)."""
        from transformer_tf.training import probes

        saved = self.run_dir.read_config().train if self.run_dir.config.is_file() else None
        chosen, measured = {}, []
        for key, plain in probes.PLAIN.items():
            if getattr(self.config.train, key) != "auto":
                continue
            if saved is not None and getattr(saved, key) != "auto":
                chosen[key] = getattr(saved, key)
                log.info("train.%s auto: %s, as this run chose when it started", key, chosen[key])
            elif strategy.num_replicas_in_sync > 1:
                chosen[key] = plain
                log.info(
                    "train.%s auto: %s (the probe measures one process; with %d replicas, "
                    "set it explicitly)",
                    key,
                    plain,
                    strategy.num_replicas_in_sync,
                )
            else:
                measured.append(key)
        data = self.config.data
        probed_xla = "jit_compile" in measured and data.pad_to_buckets
        if measured:
            given = {key: getattr(self.config.train, key) for key in probes.PLAIN}
            chosen.update(
                probes.choose(
                    self.config.model,
                    data.batch_tokens or 16 * data.batch_size,
                    self._scratch_step,
                    probes.probe_batches(self.config.model, data) if probed_xla else None,
                    **{**given, **chosen},
                )
            )
        if chosen:
            train = dataclasses.replace(self.config.train, **chosen)
            self.config = dataclasses.replace(self.config, train=train)
        return probed_xla

    def _scratch_step(self, precision, jit_compile):
        """The train step of a new model and optimizer with this run's settings (weights of
        its own: the run's are not touched), for the probes of the step."""
        from transformer_tf.training.optimizers import make_optimizer
        from transformer_tf.training.step import TrainStep

        train = dataclasses.replace(self.config.train, precision=precision, jit_compile=jit_compile)
        model = build_model(self.config.model, precision)
        return TrainStep(model, make_optimizer(train, self.config.model.d_model), train)

    def prepared_dir(self) -> Path:
        """Where `prepare` writes the training pairs and training looks for them."""
        return Path(self.config.data.prepared_dir or self.run_dir.prepared)

    def _sampling(self):
        """(alpha, nbest, copies) of `tokenizer.sampling_alpha`; None when it is off."""
        tok = self.config.tokenizer
        if tok.sampling_alpha is None:
            return None
        return tok.sampling_alpha, tok.sampling_nbest, tok.sampling_copies

    def _fingerprint(self):
        config = self.config
        return prepared.fingerprint(
            self.vocab_files(), config.model.pe_input, config.data, self._sampling()
        )

    def training_pairs(self, check=True):
        """The training pairs, readable as input streams: those `prepare` wrote, when there
        are some (`PreparedPairs`), else the training text, tokenized as it is read
        (`TextPairs`; with `check`, read once first so that a bad line stops the run now:
        the chief checks, the other workers need not). Sampled segmentations
        (`tokenizer.sampling_alpha`) are always prepared: the chief (`check`) prepares
        them if it finds none."""
        found = prepared.read_prepared(self.prepared_dir(), self._fingerprint())
        if found:
            log.info("training on the prepared pairs in '%s'", self.prepared_dir())
            return found
        if self.config.data.prepared_dir or (self._sampling() and not check):
            raise UserError(
                f"'{self.prepared_dir()}' (data.prepared_dir) holds no prepared pairs "
                "(no manifest.json); run transformer-tf prepare --config ... first."
            )
        if self._sampling():
            self._write_prepared(shards=8)
            return self.training_pairs(check)
        return self._text_pairs(check)

    def _text_pairs(self, check=True):
        """The training text as `TextPairs`; with `check`, read once first, so that a
        malformed line stops here, not inside the training loop. With
        `tokenizer.sampling_alpha`, the text repeated `sampling_copies` times, each
        segmentation drawn at random."""
        text = self.training_text()
        if check:
            text.check()
        texts, tokenizers = text.dataset(), self.tokenizers()
        if self._sampling():
            alpha, nbest, copies = self._sampling()
            texts = texts.repeat(copies)
            tokenizers = [tokenizer.sampling(nbest, alpha) for tokenizer in tokenizers]
        return TextPairs(texts, *tokenizers, self.config.model.pe_input)

    def _write_prepared(self, shards):
        """`prepare`'s work, in a run whose vocabularies and model config are settled."""
        directory = self.prepared_dir()
        if self._sampling():
            alpha, nbest, copies = self._sampling()
            log.info(
                "drawing %d segmentations of every training pair (sentencepiece sampling, "
                "alpha %g, nbest %d)",
                copies,
                alpha,
                nbest,
            )
        log.info("writing the training pairs as ids into %d files in '%s'", shards, directory)
        pairs = self._text_pairs().stream(0, 1)
        return prepared.write_prepared(pairs, directory, shards, self._fingerprint())

    def prepare(self, shards: int = 8) -> dict:
        """Tokenize the training split once into `shards` TFRecord files of ids, with a
        manifest (`transformer_tf.data.prepared`), in `data.prepared_dir` or
        `<run_dir>/prepared`; training then reads them instead of the text. Builds the
        vocabularies first if the run has none. Returns the manifest."""
        if shards < 1:
            raise UserError(f"--shards must be 1 or more, got {shards}.")
        self.run_dir.take_lock()  # not under a training process
        try:
            self.build_vocab()
            self._resolve_model_config()
            self.run_dir.check_same_model(self.config)
            return self._write_prepared(shards)
        finally:
            self.run_dir.release_lock()

    def train(self) -> "TrainResult":
        """Train the run, or resume it from its latest checkpoint. Returns a `TrainResult`."""
        try:
            trainer = self.trainer()
            result = trainer.run()
        finally:
            self.run_dir.release_lock()
        self._trained = (self._float32_copy(trainer.model, trainer.strategy), result.step)
        return result

    def _float32_copy(self, model, strategy):
        """The trained model as decoding and export want it: float32, on one device. A model
        that computed in bfloat16/float16, or whose variables a multi-device strategy holds,
        gets its weights copied (in memory) into a new float32 model; else it is used as is."""
        if self.config.train.precision == "float32" and strategy.num_replicas_in_sync == 1:
            return model
        copy = build_model(self.config.model)
        copy.set_weights(model.get_weights())
        return copy

    # -- decode, evaluate, export ----------------------------------------------------------

    def translator(self, average_last: int | None = None, best: bool = False) -> Translator:
        """The run's `Translator`, decoding as the `eval` section says, with the trained
        weights: those in memory after `train`, else the latest checkpoint; or the mean of
        the last `average_last` checkpoints (default `eval.average_last`), or the best by
        validation (both from disk)."""
        # The best checkpoint is one checkpoint: eval.average_last does not apply to it.
        average_last = average_last or (1 if best else self.config.eval.average_last)
        if self._trained is not None and average_last == 1 and not best:
            model, step = self._trained
        else:
            model, step = restore_model(
                self.config.run_dir, self._resolve_model_config(), average_last, best
            )
        members = [self._ensemble_member(d, average_last, best) for d in self.config.eval.ensemble]
        if members:
            model = Ensemble([model, *members])
        return Translator(
            model, *self.tokenizers(), self.config.eval, step=step, averaged=average_last
        )

    def served(self, saved_model: str | Path | None = None) -> ServedTranslator:
        """The SavedModel at `saved_model`, or the one this run exported."""
        return ServedTranslator(saved_model or saved_model_dir(self.config))

    def _ensemble_member(self, run_dir, average_last, best):
        """The model of another run, to decode beside this one's (`eval.ensemble`): its own
        config's architecture, this run's tokenizers (refused unless identical)."""
        member = RunDir(run_dir)
        for path in self.vocab_files():
            other = member.vocab / path.name
            if not other.is_file() or other.read_bytes() != path.read_bytes():
                raise UserError(
                    f"'{other}' is not this run's '{path}': an ensemble needs one set of "
                    "tokenizers; train the members on the same data and tokenizer settings."
                )
        config = member.read_config()
        model, step = restore_model(member.root, config.model, average_last, best)
        if step < config.train.steps and not best:
            log.warning(
                "warning: ensemble member '%s' is at step %d of its %d (still training, or "
                "stopped early or by its time budget); decoding with its checkpoints so far.",
                run_dir,
                step,
                config.train.steps,
            )
        return model

    def evaluate(
        self,
        split: str | None = None,
        files: tuple[str, str] | None = None,
        translator: Translator | ServedTranslator | None = None,
        output_dir: str | Path | None = None,
    ) -> dict:
        """Decode and score a split of the run's data (default `eval.split`), or
        `files=(source_file, reference_file)`; record it in `output_dir` (default: the run
        directory). `translator` defaults to `self.translator()`. Scores are those of
        `eval.metrics`, against every reference the split has.

        Returns the result: scores, signatures, `hypotheses_file`, `samples`.
        """
        if files:
            data = Split(*read_parallel(*files))
            name = Path(files[0]).name
        else:
            name = split or self.config.eval.split
            data = self.split(name)
        translator = translator or self.translator()
        return evaluate(
            translator,
            data.sources,
            data.reference_lists(),
            self.config.eval,
            output_dir or self.config.run_dir,
            name,
        )

    def export(
        self,
        output: str | Path | None = None,
        export_format: str = "saved_model",
        tokenizer: str = "included",
        average_last: int | None = None,
        best: bool = False,
    ) -> Exported:
        """Write `self.translator(average_last, best)` as a SavedModel
        (`tokenizer="none"`: token ids in and out, core TensorFlow ops only) or as a
        CTranslate2 model; then load it back and translate one sentence of `eval.split`
        as a check (not for the ids-only form, which takes ids).
        """
        if export_format not in EXPORT_FORMATS:
            raise UserError(
                f"unknown export format {export_format!r}; use one of {', '.join(EXPORT_FORMATS)}."
            )
        if export_format == "ctranslate2" and self.config.eval.ensemble:
            raise UserError(
                "a CTranslate2 model holds one Transformer; export the ensemble as a "
                "SavedModel, or drop eval.ensemble / --ensemble."
            )
        if export_format == "ctranslate2" and tokenizer == "none":
            raise UserError(
                "--tokenizer none is a SavedModel form; a CTranslate2 model takes "
                "token strings, so drop --tokenizer with --format ctranslate2."
            )
        translator = self.translator(average_last, best)
        if export_format == "ctranslate2":
            directory, check = self._export_ctranslate2(translator, output)
            kind = "CTranslate2 model"
        elif tokenizer == "none":
            from transformer_tf.inference.export import export_ids_saved_model

            directory, check = Path(output or saved_model_dir(self.config)), None
            export_ids_saved_model(translator, directory)
            kind = "SavedModel of token ids"
        else:
            directory, check = self._export_saved_model(translator, output)
            kind = "SavedModel"
        return Exported(directory, translator.step, kind, check)

    def _check_sentence(self):
        return self.split(self.config.eval.split).sources[0]

    def _export_saved_model(self, translator, output):
        from transformer_tf.inference.export import export_saved_model

        directory, data = Path(output or saved_model_dir(self.config)), self.config.data
        export_saved_model(translator, directory, data.source_template, data.select_sentences)
        sentence = self._check_sentence()
        served = self.served(directory)
        return directory, (sentence, served.translate([sentence])[0])

    def _export_ctranslate2(self, translator, output):
        from transformer_tf.inference.export_ctranslate2 import (
            export_ctranslate2,
            load_ctranslate2,
            translate_ctranslate2,
        )

        directory = Path(output or self.run_dir.ctranslate2)
        export_ctranslate2(translator, directory, self.vocab_files())
        sentence = self._check_sentence()
        engine = load_ctranslate2(directory)
        return directory, (sentence, translate_ctranslate2(engine, translator, [sentence])[0])
