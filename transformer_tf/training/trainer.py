"""The custom training loop.

Given the run's data and tokenizers (the `Runner` loads them), trains the model: optimizer,
checkpoints (latest K and best), TensorBoard, periodic validation with BLEU, early stopping,
a time budget, and stopping cleanly on SIGTERM/SIGINT. Re-running the same config resumes at
the same step, learning rate, optimizer state, dropout random state and position in the data.
"""

import dataclasses
import errno
import logging
import math
import shutil
import signal
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from transformer_tf.checkpoints import (
    checkpoint_paths,
    record_training_seconds,
    restore_intact,
    training_seconds,
)
from transformer_tf.data.pipeline import (
    count_length_rules,
    distributed_train_dataset,
    eval_dataset,
)
from transformer_tf.errors import UserError
from transformer_tf.evaluation.attention_image import attention_image
from transformer_tf.evaluation.evaluate import decode_and_score, record_evaluation, sample_rows
from transformer_tf.evaluation.metrics import format_scores
from transformer_tf.inference.translator import Translator
from transformer_tf.model import build_model
from transformer_tf.run_dir import RunDir
from transformer_tf.training.distribute import is_chief
from transformer_tf.training.losses import masked_correct_sum, masked_loss_sum
from transformer_tf.training.optimizers import make_optimizer
from transformer_tf.training.progress import Progress, format_seconds
from transformer_tf.training.step import TrainStep

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def _out_of_space(err):
    """Whether a write failed because its device is full (ENOSPC, from Python or from
    TensorFlow's file system)."""
    return (
        getattr(err, "errno", None) == errno.ENOSPC
        or isinstance(err, tf.errors.ResourceExhaustedError)
        or "No space left on device" in str(err)
    )


@dataclasses.dataclass
class TrainResult:
    config: object  # the resolved config
    step: int
    stopped_by: str = ""  # "", "signal SIGTERM", "early stopping", "the time budget (...)"
    chief: bool = True  # False on the workers of multi-worker training that write nothing


class Trainer:
    """Trains the run of `config`; `run()` returns a `TrainResult`.

    Args:
        config: the resolved `Config` (vocabulary sizes filled in).
        strategy: the `tf.distribute.Strategy` to train under (made before any other
            TensorFlow work, as multi-worker training requires).
        train_pairs: the training pairs, readable as input streams: `TextPairs`
            (`transformer_tf.data.pipeline`) or `PreparedPairs` (`...data.prepared`).
        validation: the validation `Split` (`transformer_tf.data.sources`).
        tokenizers: (source, target) tokenizers of the run, made after TensorFlow was seeded
            (`tf.keras.utils.set_random_seed(config.train.seed)`), as the `Runner` does.
    """

    def __init__(self, config, strategy, train_pairs, validation, tokenizers):
        train = config.train
        self.config = config
        self.run_dir = RunDir(config.run_dir)
        self.strategy = strategy
        self.chief = is_chief(strategy)
        # The chief writes into the run directory; other workers into a folder of their own
        # that is removed at the end (the pattern TensorFlow documents).
        self.scratch = None if self.chief else Path(tempfile.mkdtemp(prefix="transformer_tf_"))
        self.train_pairs, self.validation = train_pairs, validation
        self.source_tokenizer, self.target_tokenizer = tokenizers
        with self.strategy.scope():
            self.model = build_model(config.model, train.precision)
            self.optimizer = make_optimizer(train, config.model.d_model)
            # Keras 3 creates optimizer slots lazily; build them so a restore fills every one.
            self.optimizer.build(self.model.trainable_variables)
        # Counters the Python loop reads: plain variables, outside the strategy.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_score = tf.Variable(math.nan, trainable=False, name="best_score")
        self.evals_without_improvement = tf.Variable(0, trainable=False, name="patience_used")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            best_score=self.best_score,
            evals_without_improvement=self.evals_without_improvement,
            # Keras keeps dropout's random state outside what tf.train.Checkpoint finds
            # through the model; saved here, a resumed run draws the same masks.
            random_state=list(self.model.non_trainable_variables),
        )
        checkpoints = self.run_dir.checkpoints if self.chief else self.scratch / "checkpoints"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(checkpoints), max_to_keep=train.keep_checkpoints
        )
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint,
            str(checkpoints / self.run_dir.best_checkpoints.name),
            max_to_keep=1,
            checkpoint_name="best",
        )
        paths = checkpoint_paths(self.run_dir.root)  # every worker
        self.trained_before = 0.0  # seconds of training the resumed checkpoint holds
        if paths:
            # The newest checkpoint that reads back whole: a damaged one is skipped.
            latest, _ = next(restore_intact(self.checkpoint, paths, self.model), (None, None))
            if latest is None:
                raise UserError(
                    f"none of the {len(paths)} checkpoints in '{self.run_dir.checkpoints}' "
                    "reads back whole (the warnings above say why); move them away to "
                    "train from scratch."
                )
            log.info("resumed from %s at step %d", latest, int(self.step))
            seconds = training_seconds(self.run_dir.checkpoints, int(self.step))
            if seconds is None and train.max_minutes:
                log.info(
                    "no training time is recorded for step %d (a checkpoint of an earlier "
                    "version): train.max_minutes counts from now",
                    int(self.step),
                )
            self.trained_before = seconds or 0.0
        # Made once: its compiled search is traced at the first evaluation, not at each.
        self.translator = Translator(
            self.model, self.source_tokenizer, self.target_tokenizer, config.eval
        )
        self._signal = None

    def _log_length_rules(self, statistics):
        """Say once, at the start, how many training sources are cut at `model.pe_input`
        and how many pairs the length limits leave out."""
        data, pe_input = self.config.data, self.config.model.pe_input
        cut, dropped = count_length_rules(statistics, data)
        max_source, max_target = data.length_limits()
        log.info(
            "training on %s pairs; %s with more than %d source or %d target tokens "
            "(data.max_length, max_source_length, max_target_length) are left out",
            f"{statistics.pairs - dropped:,}",
            f"{dropped:,}",
            max_source,
            max_target,
        )
        if cut:
            log.info(
                "%s training sources are longer than the model reads (model.pe_input=%d "
                "tokens): cut there, as evaluation and serving cut them",
                f"{cut:,}",
                pe_input,
            )

    # -- the loop -------------------------------------------------------------------------

    def run(self):
        train = self.config.train
        step, total = int(self.step), train.steps
        budget = train.max_minutes * 60 if train.max_minutes else None
        if step >= total:
            log.info("already trained: step %d of %d", step, total)
            return TrainResult(self.config, step, chief=self.chief)
        if budget and self.trained_before >= budget:
            log.info(
                "already trained: step %d after %s, the time budget (train.max_minutes=%g)",
                step,
                format_seconds(self.trained_before),
                train.max_minutes,
            )
            return TrainResult(self.config, step, chief=self.chief)
        params = sum(int(tf.size(v)) for v in self.model.trainable_variables)
        log.info(
            "training %s parameters, step %d -> %d%s, vocabularies %d / %d, %s",
            f"{params:,}",
            step,
            total,
            f" or {format_seconds(budget - self.trained_before)} more (train.max_minutes)"
            if budget
            else "",
            self.config.model.input_vocab_size,
            self.config.model.target_vocab_size,
            train.precision,
        )
        micro = train.accumulation_steps
        # This process's streams of the training pairs, with their lengths counted (or read
        # from the prepared manifest): the length rules logged, and the batches per epoch
        # a resumed run starts from.
        dataset, statistics = distributed_train_dataset(
            self.strategy,
            self.train_pairs,
            self.config.data,
            seed=train.seed,
            start_batch=step * micro,
            num_batches=(total - step) * micro,
        )
        if step == 0:
            self._log_length_rules(statistics)
        self.train_step = TrainStep(
            self.model, self.optimizer, train, self.strategy, dataset.element_spec
        )
        batches = iter(dataset)
        self.started = time.perf_counter()
        logs = self.run_dir.train_logs if self.chief else self.scratch / "logs"
        writer = tf.summary.create_file_writer(str(logs))
        progress = Progress(step, total, seconds_left=budget and budget - self.trained_before)
        window = _Window()
        stopped_by = ""
        with _StopOnSignals(self):
            while step < total:
                metrics = self._update_or_explain(batches, micro)
                step = int(self.step.assign_add(1))
                loss = metrics["loss_sum"] / max(metrics["tokens"], 1.0)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the training loss became {loss} at step {step}; stopped without saving "
                        f"(the last checkpoint is unchanged); lower the learning rate or set "
                        "train.clip_norm."
                    )
                window.add(metrics)
                progress.tick(step, loss, window.tokens_per_second())
                if step % train.log_every == 0 or step == total:
                    self._log(writer, progress, window, step, total)
                    window = _Window()
                if step % train.checkpoint_every == 0 or step == total:
                    self._save(step)
                if train.eval_every and (step % train.eval_every == 0 or step == total):
                    if self._evaluate(step):
                        stopped_by = "early stopping"
                if self._signal and not stopped_by:
                    stopped_by = f"signal {signal.Signals(self._signal).name}"
                if budget and step % train.log_every == 0 and not stopped_by:
                    if self._budget_spent(budget):
                        stopped_by = f"the time budget (train.max_minutes={train.max_minutes:g})"
                if stopped_by:
                    if step % train.checkpoint_every:
                        self._save(step)
                    log.info(
                        "stopped by %s at step %d%s",
                        stopped_by,
                        step,
                        "; run the same command to continue" if self._signal else "",
                    )
                    break
        writer.flush()
        log.info(
            "trained to step %d in %s; the update was traced %s",
            step,
            progress.elapsed(),
            self.train_step.traces(),
        )
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return TrainResult(self.config, step, stopped_by, self.chief)

    def _trained_seconds(self):
        """Seconds of training so far: those of the resumed checkpoint, and this process's."""
        return self.trained_before + time.perf_counter() - self.started

    def _budget_spent(self, budget):
        """Whether `budget` seconds of training are spent; in multi-worker training, by any
        worker's clock, so that all stop at the same step."""
        spent = float(self._trained_seconds() >= budget)
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            mine = self.strategy.run(lambda: tf.constant(spent))
            spent = float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, mine, axis=None))
        return spent > 0

    def _update_or_explain(self, batches, micro):
        """`_update`; in multi-worker training, a lost peer becomes one clear error."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return self._update(batches, micro)
        try:
            return self._update(batches, micro)
        except (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
            tf.errors.InternalError,
        ) as err:
            raise UserError(
                f"training stopped at step {int(self.step) + 1}: another worker or "
                f"device is gone ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]}); the last checkpoint is kept, "
                "restart every worker to resume."
            ) from None

    def _update(self, batches, micro):
        """One optimizer update over `micro` batches; returns float metrics."""
        if micro == 1:
            source, target = next(batches)
            return {k: float(v) for k, v in self.train_step.update(source, target).items()}
        totals = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0}
        for _ in range(micro):
            source, target = next(batches)
            for key, value in self.train_step.accumulate(source, target).items():
                totals[key] += float(value)
        totals["grad_norm"] = float(self.train_step.apply_accumulated()["grad_norm"])
        return totals

    def _log(self, writer, progress, window, step, total):
        rate = float(self.optimizer.learning_rate)
        progress.report(
            "step %d/%d  loss %.4f  accuracy %.3f  lr %.2e  grad norm %.3f  %s tokens/s  eta %s",
            step,
            total,
            window.loss(),
            window.accuracy(),
            rate,
            window.grad_norm(),
            f"{window.tokens_per_second():,.0f}",
            progress.eta(step),
        )
        with writer.as_default(step=step):
            tf.summary.scalar("loss", window.loss())
            tf.summary.scalar("accuracy", window.accuracy())
            tf.summary.scalar("learning_rate", rate)
            tf.summary.scalar("grad_norm", window.grad_norm())
            tf.summary.scalar("tokens_per_second", window.tokens_per_second())

    def _save(self, step, manager=None):
        manager = manager or self.manager
        try:
            path = manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as err:
            if not _out_of_space(err):
                raise
            # The checkpoint list is written last, so it still names only whole checkpoints;
            # what this save left half-written is removed so nothing else mistakes it for one.
            name = "best" if manager is self.best_manager else "ckpt"
            for partial in Path(manager.directory).glob(f"{name}-{step}[._]*"):
                if partial.is_dir():
                    shutil.rmtree(partial)
                else:
                    partial.unlink()
            raise UserError(
                f"no space left on the device of '{manager.directory}' while saving the "
                f"checkpoint of step {step}; free some space and run the same command: it "
                f"resumes from {manager.latest_checkpoint or 'the start'}, which is intact."
            ) from None
        if manager is self.manager:
            record_training_seconds(manager.directory, step, self._trained_seconds())
        log.info("saved checkpoint %s", path)

    # -- evaluation -----------------------------------------------------------------------

    def _evaluate(self, step):
        """Validation loss, accuracy, BLEU and chrF; keeps the best checkpoint. Returns True
        when early stopping should end the run."""
        train, eval_config = self.config.train, self.config.eval
        split = self.validation.head(eval_config.max_sentences)
        references = split.reference_lists()
        loss, accuracy = self._validation_loss(split.sources, split.targets)
        translator = self.translator
        translator.step = step
        hypotheses, scores = decode_and_score(translator, split.sources, references, eval_config)
        # Seconds since this process started training (not counting earlier runs resumed).
        result = {
            "step": step,
            "split": "validation",
            "sentences": len(split.sources),
            "seconds": round(time.perf_counter() - self.started, 1),
            "loss": loss,
            "accuracy": accuracy,
            **scores,
        }
        samples = sample_rows(split.sources, references, hypotheses, eval_config.samples)
        attention = translator.attention(split.sources[0])["attention"]
        last_layer = list(attention.values())[-1]  # [heads, target_len, source_len]
        if self.chief:  # every worker evaluates, so all take the same early-stopping decision
            record_evaluation(
                self.run_dir.root,
                result,
                hypotheses,
                samples,
                {"attention": attention_image(last_layer)},
            )
        log.info(
            "validation at step %d: loss %.4f  accuracy %.3f  %s",
            step,
            loss,
            accuracy,
            format_scores(scores),
        )

        score = result[train.best_metric]
        better = math.isnan(float(self.best_score)) or (
            score < float(self.best_score)
            if train.best_metric == "loss"
            else score > float(self.best_score)
        )
        if better:
            self.best_score.assign(score)
            self.evals_without_improvement.assign(0)
            self._save(step, self.best_manager)
        else:
            self.evals_without_improvement.assign_add(1)
        patience = train.early_stopping_patience
        if patience and int(self.evals_without_improvement) >= patience:
            log.info(
                "early stopping: validation %s has not improved on %.4f for %d evaluations",
                train.best_metric,
                float(self.best_score),
                patience,
            )
            return True
        return False

    def _validation_loss(self, sources, targets):
        """Teacher-forced loss (without label smoothing) and token accuracy."""
        sums = {"loss": 0.0, "tokens": 0.0, "correct": 0.0}
        for source, target in eval_dataset(
            sources,
            targets,
            self.source_tokenizer,
            self.target_tokenizer,
            self.config.data,
            self.config.eval.batch_size,
            self.config.model.pe_input,
        ):
            loss_sum, tokens, correct = self._eval_step(source, target)
            sums["loss"] += float(loss_sum)
            sums["tokens"] += float(tokens)
            sums["correct"] += float(correct)
        tokens = max(sums["tokens"], 1.0)
        return sums["loss"] / tokens, sums["correct"] / tokens

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def _eval_step(self, source, target):
        logits, _ = self.model(source, target[:, :-1], training=False)
        loss_sum, tokens = masked_loss_sum(target[:, 1:], logits)
        return loss_sum, tokens, masked_correct_sum(target[:, 1:], logits)


class _Window:
    """Sums of the metrics since the last log line."""

    def __init__(self):
        self.sums = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0, "grad_norm": 0.0}
        self.updates = 0  # with a finite gradient norm: float16 loss scaling skips the others
        self.started = time.perf_counter()

    def add(self, metrics):
        for key in ("loss_sum", "tokens", "correct"):
            self.sums[key] += metrics[key]
        if math.isfinite(metrics["grad_norm"]):
            self.sums["grad_norm"] += metrics["grad_norm"]
            self.updates += 1

    def loss(self):
        return self.sums["loss_sum"] / max(self.sums["tokens"], 1.0)

    def accuracy(self):
        return self.sums["correct"] / max(self.sums["tokens"], 1.0)

    def grad_norm(self):
        return self.sums["grad_norm"] / max(self.updates, 1)

    def tokens_per_second(self):
        return self.sums["tokens"] / max(time.perf_counter() - self.started, 1e-9)


class _StopOnSignals:
    """While active, SIGTERM and SIGINT ask the trainer to save and stop after the
    current update instead of killing the process."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, trainer):
        self.trainer = trainer
        self.previous = {}

    def _handle(self, signum, frame):
        self.trainer._signal = signum

    def __enter__(self):
        try:
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals stay as they were
            self.previous = {}
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
