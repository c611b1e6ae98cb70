"""The run directory: where each artifact of a run lives, and the one reader, writer and
checker of its `config.yaml`.

    <run_dir>/config.yaml        resolved config
    <run_dir>/vocab/             source.model, target.model (SentencePiece) or .vocab (WordPiece)
    <run_dir>/prepared/          training pairs as token ids (transformer-tf prepare)
    <run_dir>/checkpoints/       tf.train.CheckpointManager (best/ holds the best by validation)
                                 and training_time.json (minutes of training at each)
    <run_dir>/logs/train, eval   TensorBoard
    <run_dir>/eval/              hypotheses and scores of each evaluation
    <run_dir>/export/            SavedModel
    <run_dir>/ctranslate2/       CTranslate2 model (export --format ctranslate2)
    <run_dir>/metrics.jsonl      one JSON object per evaluation
    <run_dir>/train.lock         host and pid of the process training the run, while it does
"""

import dataclasses
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import yaml

from transformer_tf.config import Config, config_from_dict, load_config, save_config
from transformer_tf.errors import UserError

log = logging.getLogger(__name__)

# Model settings that may change when a run is resumed: the weights fit either way.
DROPOUTS = ("rate", "attention_dropout", "activation_dropout", "word_dropout")


class RunDir:
    """Paths inside one run directory, and its saved config.

    Args:
        root: str or Path, the run directory (`run_dir` of the config).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.vocab = self.root / "vocab"
        self.prepared = self.root / "prepared"
        self.checkpoints = self.root / "checkpoints"
        self.best_checkpoints = self.checkpoints / "best"
        self.train_logs = self.root / "logs" / "train"
        self.eval_logs = self.root / "logs" / "eval"
        self.eval = self.root / "eval"
        self.export = self.root / "export"
        self.ctranslate2 = self.root / "ctranslate2"
        self.metrics = self.root / "metrics.jsonl"
        self.lock = self.root / "train.lock"

    def read_config(self, overrides=()) -> Config:
        """The resolved config saved by training, with `key.path=value` overrides applied.
        Its `run_dir` is this directory, wherever the run was trained."""
        if not self.config.is_file():
            raise UserError(
                f"'{self.root}' has no config.yaml; train first (transformer-tf train "
                "--config ...), or pass --config, or point --run-dir at a trained run."
            )
        values = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        config = config_from_dict(values, str(self.config), overrides)
        config.run_dir = str(self.root)
        return config

    def write_config(self, config):
        """Save the resolved `config` as this run's config.yaml."""
        self.root.mkdir(parents=True, exist_ok=True)
        save_config(config, self.config)

    def take_lock(self):
        """Make this process the one that trains the run: write `train.lock` with this
        host and pid. A lock left by a process of this host that is gone (killed, crashed)
        is taken over with a warning; a live holder, or one on another host, is refused.

        Raises:
            UserError: another process holds the lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        me = _this_process()
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.lock.read_text(encoding="utf-8").strip()
                if holder == me:
                    return
                if not _is_gone(holder):
                    raise UserError(
                        f"'{self.root}' is being trained by process {holder!r} (host pid, "
                        f"from {self.lock}); wait for it, stop it, or delete the lock file if "
                        "that process is gone."
                    ) from None
                log.warning("taking over %s: its process %r is gone", self.lock, holder)
                self.lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(me + "\n")
            return
        raise UserError(f"could not take {self.lock}: another process keeps taking it.")

    def release_lock(self):
        """Remove `train.lock` if this process holds it."""
        me = _this_process()
        if self.lock.is_file() and self.lock.read_text(encoding="utf-8").strip() == me:
            self.lock.unlink()

    def check_same_model(self, config):
        """Refuse to reuse this run directory when its saved model shape or tokenizer
        settings differ from `config`'s (the checkpoints would not fit, or the vocabularies
        in vocab/ would not be the ones asked for)."""
        if not self.config.is_file():
            return
        saved = self.read_config()
        for section, what in (("model", "a model"), ("tokenizer", "vocabularies built")):
            for field in dataclasses.fields(getattr(saved, section)):
                if field.name in DROPOUTS:
                    continue
                old = getattr(getattr(saved, section), field.name)
                new = getattr(getattr(config, section), field.name)
                if new is not None and old != new:
                    raise UserError(
                        f"'{self.root}' holds {what} with {section}.{field.name}={old}, but "
                        f"the config asks for {new}; use another run_dir or the same "
                        f"{section} settings."
                    )


def _this_process():
    """This process as a lock names it: "host pid"."""
    return f"{socket.gethostname()} {os.getpid()}"


def _is_gone(holder):
    """Whether the process of a lock's "host pid" has ended: known only on this host (on
    another, it counts as alive)."""
    host, _, pid = holder.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def saved_model_dir(config):
    """Where the run's SavedModel goes: `export.directory`, or `<run_dir>/export`."""
    return Path(config.export.directory or RunDir(config.run_dir).export)


def load_run_config(
    config_file: str | None = None, run_dir: str | None = None, overrides: Sequence[str] = ()
) -> Config:
    """The config of a run: the YAML file `config_file` (its run_dir replaced by `run_dir`),
    else the resolved config saved in `run_dir`; `key.path=value` overrides applied.

    Raises:
        UserError: neither is given, or the file or run directory is not usable.
    """
    if config_file:
        config = load_config(config_file, overrides)
        config.run_dir = run_dir or config.run_dir
        return config
    if run_dir:
        return RunDir(run_dir).read_config(overrides)
    raise UserError("pass --config FILE (or --run-dir DIR of a trained run).")
