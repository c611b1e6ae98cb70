"""Command line: `transformer-tf train|evaluate|translate|generate|export|build-vocab|prepare`.

Parses arguments, calls the `Runner`, prints. Configs are loaded and checked before
TensorFlow is imported, so a mistake in them is reported in a second, as one line, without
a traceback.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from transformer_tf.config import EvalConfig, config_from_dict
from transformer_tf.errors import UserError
from transformer_tf.run_dir import load_run_config
from transformer_tf.training.progress import log_to_stderr


def _runner(args, required=True):
    """The Runner of the run's config (--config or --run-dir), with --set and the options
    that set a config key (their `dest` is the key, e.g. `eval.beam_size`). The config is
    checked before TensorFlow loads, so its errors come fast."""
    overrides = [*(getattr(args, "set", None) or [])]
    overrides += [
        f"{key}={value}"
        for key, value in vars(args).items()
        if "." in key and value is not None and value is not False  # 0 is a value
    ]
    if required or args.config or args.run_dir:
        config = load_run_config(args.config, args.run_dir, overrides)
    else:
        config = config_from_dict({}, "command line", overrides)
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) hides the real output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from transformer_tf.runner import Runner

    return Runner(config)


def _write_lines(lines, path):
    text = "".join(f"{line}\n" for line in lines)
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_train(args):
    runner = _runner(args)
    result = runner.train()
    if result.chief and not result.stopped_by.startswith("signal"):
        if not args.no_eval:
            print(runner.evaluate())
        if runner.config.export.after_training and not args.no_export:
            print(runner.export())


def cmd_build_vocab(args):
    runner = _runner(args)
    first_pair = next(runner.training_text().pairs())
    for side, tokenizer, sample in zip(("source", "target"), runner.build_vocab(), first_pair):
        print(f"{side}: {tokenizer.describe(sample)}")
    print(f"written to {runner.run_dir.vocab}")


def cmd_prepare(args):
    runner = _runner(args)
    manifest = runner.prepare(args.shards)
    tokens = f"{manifest['source_tokens']:,} source, {manifest['target_tokens']:,} target tokens"
    print(f"prepared {manifest['pairs']:,} training pairs ({tokens}) in {runner.prepared_dir()}")


def cmd_evaluate(args):
    if bool(args.src) != bool(args.ref):
        raise UserError("--src and --ref go together: the source file and its references.")
    decoding = ("eval.beam_size", "eval.length_penalty", "eval.no_repeat_ngram_size")
    if args.saved_model and any(vars(args)[key] is not None for key in decoding):
        raise UserError(
            "a SavedModel decodes with the settings it was exported with; drop "
            "--beam-size/--length-penalty/--no-repeat-ngram-size, or evaluate the run "
            "(--run-dir)."
        )
    if not (args.config or args.run_dir or (args.saved_model and args.src)):
        raise UserError("pass --config or --run-dir, or --saved-model with --src and --ref.")
    runner = _runner(args, required=False)
    served = args.saved_model and runner.served(args.saved_model)
    translator = served or runner.translator(args.average_last, args.best)
    output_dir = args.output_dir or (runner.config.run_dir if args.config or args.run_dir else ".")
    files = (args.src, args.ref) if args.src else None
    print(runner.evaluate(args.split, files, translator, output_dir))


def cmd_export(args):
    runner = _runner(args)
    print(runner.export(args.output, args.format, args.tokenizer, args.average_last, args.best))


def _served(args):
    """The SavedModel of --saved-model, or the one the run of --config / --run-dir exported."""
    return _runner(args, required=not args.saved_model).served(args.saved_model)


def _sentences(args):
    """The sentences given, or the lines of --input (default: stdin)."""
    from transformer_tf.data.sources import read_lines

    return args.sentences or read_lines(args.input)


def cmd_translate(args):
    if not (args.attention or args.n_best):
        _write_lines(_served(args).translate(_sentences(args), args.batch_size), args.output)
        return
    if args.saved_model:  # before stdin is read: a wrong flag does not wait for input first
        raise UserError("--n-best and --attention decode a run: pass --config or --run-dir.")
    translator, sentences = _runner(args).translator(), _sentences(args)
    if args.attention and len(sentences) != 1:
        raise UserError("--attention draws one sentence: pass exactly one.")
    if args.attention:
        from transformer_tf.evaluation.attention_image import save_attention_png

        print(save_attention_png(translator, sentences[0], args.attention))
    else:
        n_best = translator.n_best(sentences, args.n_best, args.batch_size)
        lines = (f"{i} ||| {t} ||| {s:.4f}" for i, hyps in enumerate(n_best) for t, s in hyps)
        _write_lines(lines, args.output)


def cmd_generate(args):
    from transformer_tf.data.sources import iter_lines, parse_records

    records = list(parse_records(iter_lines(args.input), args.input or "stdin"))
    _write_lines(_served(args).generate_records(records, args.batch_size), args.output)


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return int(text)


def build_parser():
    """The `transformer-tf` argument parser, one subcommand per `cmd_*` function."""
    parser = argparse.ArgumentParser(
        prog="transformer-tf",
        description="Train, evaluate, export and serve encoder-decoder Transformers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help, config_required=False):
        sub = commands.add_parser(name, help=help)
        sub.set_defaults(func=func)
        run = sub.add_argument_group("run")
        run.add_argument("--config", required=config_required, help="YAML config file")
        run.add_argument("--run-dir", help="run directory (overrides the config's run_dir)")
        run.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config key")
        return sub

    def serving_args(sub, input_help):
        sub.add_argument("--saved-model", help="SavedModel directory")
        sub.add_argument("--input", help=input_help)
        sub.add_argument("--output", help="file for the outputs (default: stdout)")
        sub.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)

    def checkpoint_args(sub):
        sub.add_argument("--average-last", type=int, metavar="N", help="mean of the last N")
        sub.add_argument("--best", action="store_true", help="the best checkpoint by validation")
        sub.add_argument("--ensemble", dest="eval.ensemble", action="append", help="another run")

    train = command("train", cmd_train, "train (or resume), then evaluate and export", True)
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    train.add_argument("--no-export", action="store_true", help="skip the export at the end")

    evaluate = command("evaluate", cmd_evaluate, "scores of a split, or of --src/--ref")
    evaluate.add_argument("--saved-model", help="evaluate this SavedModel instead of the run")
    evaluate.add_argument("--split", choices=["train", "validation", "test"])
    evaluate.add_argument("--src", help="source sentences, one per line")
    evaluate.add_argument("--ref", help="reference translations, one per line")
    evaluate.add_argument("--output-dir", help="where eval/ goes (default: the run's)")
    evaluate.add_argument("--tokenize", dest="eval.tokenize", help="sacrebleu's: 13a, intl, ...")
    evaluate.add_argument("--lowercase", dest="eval.lowercase", action="store_true")
    evaluate.add_argument("--beam-size", dest="eval.beam_size", type=int, help="1: greedy")
    evaluate.add_argument("--length-penalty", dest="eval.length_penalty", type=float)
    ngram_help = "n: no output repeats an n-gram; 0: off"
    evaluate.add_argument(
        "--no-repeat-ngram-size", dest="eval.no_repeat_ngram_size", type=int, help=ngram_help
    )
    checkpoint_args(evaluate)

    export = command("export", cmd_export, "write a SavedModel (or CTranslate2 model)")
    ct2_help = "ctranslate2 needs pip install 'transformer_tf[ctranslate2]'"
    formats, ids = ["saved_model", "ctranslate2"], ["included", "none"]
    export.add_argument("--format", choices=formats, default=formats[0], help=ct2_help)
    export.add_argument("--output", help="directory (default: export.directory or the run's)")
    ids_help = "none: token ids in and out, core TensorFlow ops only"
    export.add_argument("--tokenizer", choices=ids, default=ids[0], help=ids_help)
    checkpoint_args(export)

    command("build-vocab", cmd_build_vocab, "build the run's tokenizers, and stop", True)
    prepare = command("prepare", cmd_prepare, "tokenize the training data once, for training", True)
    prepare.add_argument("--shards", type=_positive, default=8, help="TFRecord files to write")

    translate = command("translate", cmd_translate, "translate sentences with a SavedModel")
    serving_args(translate, "sentences, one per line (default: stdin)")
    translate.add_argument("--attention", metavar="FILE.png", help="one sentence's attention")
    translate.add_argument("--n-best", type=_positive, metavar="N", help="`i ||| text ||| score`")
    translate.add_argument("sentences", nargs="*", help="sentences (default: --input or stdin)")

    generate = command("generate", cmd_generate, "outputs for JSON lines of the model's inputs")
    serving_args(generate, 'JSON lines of the inputs, e.g. {"question": .., "context": ..}')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default: sys.argv); returns the exit status."""
    args = build_parser().parse_args(argv)
    log_to_stderr(logging.getLogger("transformer_tf"))
    try:
        return args.func(args) or 0  # a command returns nothing when it succeeds
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
