"""Command line: `transformer-tf train|evaluate|translate|export|build-vocab`.

Parses arguments, calls the `Runner`, prints. Configs are loaded and checked before
TensorFlow is imported, so a mistake in them is reported in a second, as one line, without
a traceback.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from transformer_tf.config import EvalConfig, config_from_dict, load_config
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


def _config(args, required=True):
    """The config named by --config (its run_dir replaced by --run-dir), or the resolved
    config saved in --run-dir; --set overrides and decoding flags applied."""
    overrides = [*(getattr(args, "set", None) or []), *_decoding_overrides(args)]
    if getattr(args, "config", None):
        config = load_config(args.config, overrides)
        config.run_dir = args.run_dir or config.run_dir
        return config
    if getattr(args, "run_dir", None):
        from transformer_tf.run_dir import RunDir

        return RunDir(args.run_dir).read_config(overrides)
    if required:
        raise UserError("pass --config FILE (or --run-dir DIR of a trained run).")
    return config_from_dict({}, "command line", overrides)


def _decoding_overrides(args):
    """--beam-size and friends as config overrides."""
    flags = {
        "beam_size": getattr(args, "beam_size", None),
        "length_penalty": getattr(args, "length_penalty", None),
        "tokenize": getattr(args, "tokenize", None),
        "lowercase": getattr(args, "lowercase", None) or None,
    }
    return [f"eval.{key}={value}" for key, value in flags.items() if value is not None]


def _runner(config):
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) hides the real output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from transformer_tf.runner import Runner

    return Runner(config)


def _print_evaluation(result):
    averaged = result.get("averaged_checkpoints")
    print(
        f"{result['split']} BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
        f"({result['sentences']} sentences, step {result['step']}"
        + (f", mean of the last {averaged} checkpoints" if averaged else "")
        + ")"
    )
    print(f"  {result['bleu_signature']}")
    print(f"  {result['chrf_signature']}")
    print(f"  hypotheses: {result['hypotheses_file']}")
    for source, reference, hypothesis in result["samples"]:
        print(f"  source:     {source}\n  reference:  {reference}\n  hypothesis: {hypothesis}")


def _print_export(exported):
    kind = {"ctranslate2": "CTranslate2 model"}.get(
        exported["format"], "SavedModel of token ids" if exported["ids_only"] else "SavedModel"
    )
    print(f"exported {kind} (step {exported['step']}) to {exported['directory']}")
    if exported["check"]:
        print("  check: {!r} -> {!r}".format(*exported["check"]))


def cmd_train(args):
    runner = _runner(_config(args))
    result = runner.train()
    if not result.chief or result.stopped_by.startswith("signal"):
        return 0
    if not args.no_eval:
        _print_evaluation(runner.evaluate())
    if runner.config.export.after_training and not args.no_export:
        _print_export(runner.export())
    return 0


def cmd_build_vocab(args):
    runner = _runner(_config(args))
    sources, targets = runner.split("train")
    for side, tokenizer, sample in zip(
        ("source", "target"), runner.build_vocab(), (sources[0], targets[0])
    ):
        pieces = tokenizer.pieces(tokenizer.tokenize([sample])[0])
        print(
            f"{side}: {tokenizer.vocab_size} entries ({runner.config.tokenizer.type}); "
            f"{sample!r} -> {' '.join(pieces)}"
        )
    print(f"written to {runner.run_dir.vocab}")
    return 0


def cmd_evaluate(args):
    if bool(args.src) != bool(args.ref):
        raise UserError(
            "--src and --ref go together: the source file and its reference translations."
        )
    if args.saved_model and (args.beam_size or args.length_penalty is not None):
        raise UserError(
            "a SavedModel decodes with the settings it was exported with; drop "
            "--beam-size/--length-penalty, or evaluate the run (--run-dir)."
        )
    if not (args.config or args.run_dir or (args.saved_model and args.src)):
        raise UserError(
            "pass --config or --run-dir (to evaluate a run), or --saved-model with --src and --ref."
        )
    runner = _runner(_config(args, required=False))
    translator = None
    if args.saved_model:
        from transformer_tf.inference.translator import ServedTranslator

        translator = ServedTranslator(args.saved_model)
    else:
        translator = runner.translator(args.average_last, args.best)
    output_dir = args.output_dir or (
        runner.config.run_dir if (args.config or args.run_dir) else "."
    )
    files = (args.src, args.ref) if args.src else None
    _print_evaluation(runner.evaluate(args.split, files, translator, output_dir))
    return 0


def cmd_export(args):
    runner = _runner(_config(args))
    _print_export(
        runner.export(args.output, args.format, args.tokenizer, args.average_last, args.best)
    )
    return 0


def _read_input(args):
    from transformer_tf.data.sources import read_lines

    if args.sentences:
        return args.sentences
    if args.input:
        return read_lines(args.input)
    return [line.rstrip("\n") for line in sys.stdin]


def _write_lines(lines, path):
    out = open(path, "w", encoding="utf-8") if path else sys.stdout
    try:
        for line in lines:
            print(line, file=out)
    finally:
        if path:
            out.close()


def cmd_translate(args):
    if args.attention:
        return _translate_with_attention(args)
    if args.n_best:
        return _translate_n_best(args)
    if args.saved_model:
        directory = Path(args.saved_model)
    else:
        from transformer_tf.run_dir import saved_model_dir

        directory = saved_model_dir(_config(args))
    if not (directory / "saved_model.pb").is_file():
        raise UserError(
            f"no SavedModel in '{directory}'; run `transformer-tf export` first "
            "or pass --saved-model DIR."
        )
    sentences = _read_input(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from transformer_tf.inference.translator import ServedTranslator, translate_in_batches

    outputs = translate_in_batches(
        ServedTranslator(directory).signature, sentences, args.batch_size
    )
    for number, truncated in enumerate(outputs["truncated"], start=1):
        if truncated:
            print(
                f"warning: line {number} is longer than the model reads; its end was not "
                "translated.",
                file=sys.stderr,
            )
    _write_lines(outputs["translations"], args.output)
    return 0


def _translate_n_best(args):
    """Print each sentence's n best translations: `index ||| translation ||| score`."""
    if args.saved_model:
        raise UserError(
            "--n-best decodes with a run's checkpoint: pass --config or --run-dir "
            "instead of --saved-model."
        )
    if args.n_best < 1:
        raise UserError(f"--n-best must be 1 or more, got {args.n_best}.")
    runner = _runner(_config(args))
    sentences = _read_input(args)
    n_best = runner.translator().n_best(sentences, args.n_best, args.batch_size)
    _write_lines(
        [
            f"{index} ||| {text} ||| {score:.4f}"
            for index, hypotheses in enumerate(n_best)
            for text, score in hypotheses
        ],
        args.output,
    )
    return 0


def _translate_with_attention(args):
    """Translate one sentence with the run's checkpoint and save its attention as a PNG."""
    runner = _runner(_config(args))
    sentences = _read_input(args)
    if len(sentences) != 1:
        raise UserError("--attention draws one sentence: pass exactly one.")
    from transformer_tf.evaluation.attention_image import save_attention_png

    result = runner.translator().attention(sentences[0])
    last = list(result["attention"].values())[-1]  # [heads, target_len, source_len]
    save_attention_png(last, args.attention)
    print(result["translation"])
    print(
        f"attention of the last decoder layer ({last.shape[0]} heads, target tokens down, "
        f"source tokens across) written to {args.attention}",
        file=sys.stderr,
    )
    return 0


def _add_config_args(parser, required=False):
    group = parser.add_argument_group("run")
    group.add_argument("--config", required=required, help="YAML config file")
    group.add_argument("--run-dir", help="run directory (overrides the config's run_dir)")
    group.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.steps=200 (repeatable)",
    )


def _add_checkpoint_args(parser):
    group = parser.add_argument_group("checkpoint")
    group.add_argument(
        "--average-last",
        type=int,
        default=1,
        metavar="N",
        help="use the mean weights of the last N checkpoints",
    )
    group.add_argument(
        "--best",
        action="store_true",
        help="use the best checkpoint by validation (train.best_metric)",
    )


def _add_decoding_args(parser):
    group = parser.add_argument_group("decoding (default: the config's eval section)")
    group.add_argument("--beam-size", type=int, help="1 for greedy search")
    group.add_argument("--length-penalty", type=float, help="GNMT alpha for beam search")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="transformer-tf",
        description="Train, evaluate, export and serve encoder-decoder Transformers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume), then evaluate and export")
    _add_config_args(train, required=True)
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    train.add_argument("--no-export", action="store_true", help="skip the export at the end")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="BLEU and chrF of a split, or of --src/--ref files"
    )
    _add_config_args(evaluate)
    evaluate.add_argument("--saved-model", help="evaluate this SavedModel instead of the run")
    evaluate.add_argument(
        "--split",
        choices=["train", "validation", "test"],
        help="split of the configured data (default: eval.split)",
    )
    evaluate.add_argument("--src", help="source sentences, one per line")
    evaluate.add_argument("--ref", help="reference translations, one per line")
    evaluate.add_argument(
        "--output-dir",
        help="where eval/ and metrics.jsonl go (default: the run directory, or . for a SavedModel)",
    )
    evaluate.add_argument(
        "--tokenize",
        help="sacrebleu tokenizer for BLEU, e.g. 13a, intl, "
        "none for already tokenized text (default: eval.tokenize)",
    )
    evaluate.add_argument("--lowercase", action="store_true", help="lower-cased BLEU")
    _add_checkpoint_args(evaluate)
    _add_decoding_args(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser(
        "export", help="write a SavedModel (or a CTranslate2 model) of the latest checkpoint"
    )
    _add_config_args(export)
    export.add_argument(
        "--format",
        choices=["saved_model", "ctranslate2"],
        default="saved_model",
        help="saved_model: TensorFlow SavedModel; ctranslate2: a CTranslate2 "
        "model directory with the tokenizer files (needs pip install "
        "'transformer_tf[ctranslate2]')",
    )
    export.add_argument(
        "--output",
        help="directory (default: export.directory or "
        "<run_dir>/export; <run_dir>/ctranslate2 for --format ctranslate2)",
    )
    export.add_argument(
        "--tokenizer",
        choices=["included", "none"],
        default="included",
        help="included: strings in and out (needs tensorflow-text); none: "
        "token ids in and out, core TensorFlow ops only (for saved_model_cli "
        "run and servers without tensorflow-text)",
    )
    _add_checkpoint_args(export)
    export.set_defaults(func=cmd_export)

    build_vocab = commands.add_parser(
        "build-vocab", help="build the run's tokenizers from the training split, and stop"
    )
    _add_config_args(build_vocab, required=True)
    build_vocab.set_defaults(func=cmd_build_vocab)

    translate = commands.add_parser("translate", help="translate sentences with a SavedModel")
    _add_config_args(translate)
    translate.add_argument("--saved-model", help="SavedModel directory")
    translate.add_argument("--input", help="file of sentences, one per line (default: stdin)")
    translate.add_argument("--output", help="file for the translations (default: stdout)")
    translate.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    translate.add_argument(
        "--attention",
        metavar="FILE.png",
        help="with --config/--run-dir: save the encoder-decoder attention "
        "of one sentence as an image",
    )
    translate.add_argument(
        "--n-best",
        type=int,
        metavar="N",
        help="with --config/--run-dir: print the N best translations of "
        "each sentence by beam search, as `index ||| text ||| score` "
        "(best first by the length-penalised score; score: summed "
        "log-probability)",
    )
    translate.add_argument("sentences", nargs="*", help="sentences (default: --input or stdin)")
    translate.set_defaults(func=cmd_translate)
    return parser


def main(argv=None) -> int:
    """Run the command line with `argv` (default: sys.argv); returns the exit status."""
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
