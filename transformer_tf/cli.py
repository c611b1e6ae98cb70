"""Command line: `transformer-tf train|evaluate|translate|export`.

A thin layer over the library. Configs are loaded and checked before TensorFlow is
imported, so a mistake in them is reported in a second, as one line, without a traceback.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from transformer_tf.config import load_config
from transformer_tf.errors import UserError

log = logging.getLogger("transformer_tf")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each message."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) hides the real output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _config_from_args(args):
    """The config named by --config, or the resolved config saved in --run-dir."""
    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "config", None):
        config = load_config(args.config, overrides)
        if getattr(args, "run_dir", None):
            config.run_dir = args.run_dir
        return config
    if getattr(args, "run_dir", None):
        path = Path(args.run_dir) / "config.yaml"
        if not path.is_file():
            raise UserError(f"'{args.run_dir}' has no config.yaml; pass --config, or train first.")
        config = load_config(path, overrides)
        config.run_dir = args.run_dir
        return config
    raise UserError("pass --config FILE (or --run-dir DIR of a trained run).")


def _print_evaluation(result):
    print(f"{result['split']} BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
          f"({result['sentences']} sentences, step {result['step']})")
    print(f"  {result['bleu_signature']}")
    print(f"  {result['chrf_signature']}")
    print(f"  hypotheses: {result['hypotheses_file']}")
    for source, reference, hypothesis in result["samples"]:
        print(f"  source:     {source}\n  reference:  {reference}\n  hypothesis: {hypothesis}")


def cmd_train(args):
    config = _config_from_args(args)
    _quiet_tensorflow()
    from transformer_tf.evaluation.evaluate import evaluate_run
    from transformer_tf.training.trainer import train

    result = train(config)
    config = result.config
    if result.stopped_by.startswith("signal") or (args.no_eval and args.no_export):
        return 0
    from transformer_tf.inference.translator import Translator

    translator = Translator.from_run(config)
    if not args.no_eval:
        _print_evaluation(evaluate_run(config, translator=translator))
    if config.export.after_training and not args.no_export:
        _export(config, translator, None)
    return 0


def _export(config, translator, output):
    """Write the SavedModel, then load it back and translate one sentence as a check."""
    import tensorflow as tf

    from transformer_tf.data.sources import load_splits
    from transformer_tf.inference.export import export_saved_model
    from transformer_tf.run import RunDir

    directory = Path(output or config.export.directory or RunDir(config.run_dir).export)
    export_saved_model(translator, directory)
    print(f"exported SavedModel (step {translator.step}) to {directory}")
    sources, _ = load_splits(config.data)[config.eval.split]
    served = tf.saved_model.load(str(directory)).signatures["serving_default"]
    translation = served(sentences=tf.constant(sources[:1]))["translations"][0]
    print(f"  check: {sources[0]!r} -> {translation.numpy().decode('utf-8')!r}")


def cmd_evaluate(args):
    config = _config_from_args(args)
    _quiet_tensorflow()
    from transformer_tf.evaluation.evaluate import evaluate_run

    from transformer_tf.inference.translator import Translator

    translator = Translator.from_run(config, args.average_last)
    _print_evaluation(evaluate_run(config, split=args.split, translator=translator))
    return 0


def cmd_export(args):
    config = _config_from_args(args)
    _quiet_tensorflow()
    from transformer_tf.inference.translator import Translator

    _export(config, Translator.from_run(config, args.average_last), args.output)
    return 0


def cmd_translate(args):
    if args.saved_model:
        directory = Path(args.saved_model)
    else:
        from transformer_tf.run import RunDir

        config = _config_from_args(args)
        directory = Path(config.export.directory or RunDir(config.run_dir).export)
    if not (directory / "saved_model.pb").is_file():
        raise UserError(f"no SavedModel in '{directory}'; run `transformer-tf export` first "
                        "or pass --saved-model DIR.")
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
    _quiet_tensorflow()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops of the SavedModel)

    translate = tf.saved_model.load(str(directory)).signatures["serving_default"]
    for start in range(0, len(sentences), args.batch_size):
        batch = sentences[start:start + args.batch_size]
        outputs = translate(sentences=tf.constant(batch))["translations"].numpy()
        for text in outputs:
            print(text.decode("utf-8"))
    return 0


def _add_config_args(parser, required=False):
    group = parser.add_argument_group("run")
    group.add_argument("--config", required=required, help="YAML config file")
    group.add_argument("--run-dir", help="run directory (overrides the config's run_dir)")
    group.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.steps=200 (repeatable)")


def _add_average_arg(parser):
    parser.add_argument("--average-last", type=int, default=1, metavar="N",
                        help="use the mean weights of the last N checkpoints")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="transformer-tf",
        description="Train, evaluate, export and serve encoder-decoder Transformers.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume), then evaluate and export")
    _add_config_args(train, required=True)
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    train.add_argument("--no-export", action="store_true", help="skip the export at the end")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="BLEU and chrF of a split")
    _add_config_args(evaluate)
    evaluate.add_argument("--split", choices=["train", "validation", "test"],
                          help="split to decode (default: eval.split)")
    _add_average_arg(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser("export", help="write a SavedModel of the latest checkpoint")
    _add_config_args(export)
    export.add_argument("--output", help="directory (default: export.directory or <run_dir>/export)")
    _add_average_arg(export)
    export.set_defaults(func=cmd_export)

    translate = commands.add_parser("translate", help="translate sentences with a SavedModel")
    _add_config_args(translate)
    translate.add_argument("--saved-model", help="SavedModel directory")
    translate.add_argument("--batch-size", type=int, default=64)
    translate.add_argument("sentences", nargs="*", help="sentences (default: lines of stdin)")
    translate.set_defaults(func=cmd_translate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # a library may have configured the root logger as well
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
