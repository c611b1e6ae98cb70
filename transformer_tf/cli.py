"""Command line: `transformer-tf train|evaluate|translate|export|build-vocab`.

A thin layer over the library. Configs are loaded and checked before TensorFlow is
imported, so a mistake in them is reported in a second, as one line, without a traceback.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from transformer_tf.config import EvalConfig, load_config
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
          f"({result['sentences']} sentences, step {result['step']}"
          + (f", mean of the last {result['averaged_checkpoints']} checkpoints"
             if "averaged_checkpoints" in result else "") + ")")
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
    if (not result.chief or result.stopped_by.startswith("signal")
            or (args.no_eval and args.no_export)):
        return 0
    from transformer_tf.inference.translator import Translator

    translator = Translator.from_run(config)
    if not args.no_eval:
        _print_evaluation(evaluate_run(config, translator=translator))
    if config.export.after_training and not args.no_export:
        _export(config, translator, None)
    return 0


def cmd_build_vocab(args):
    config = _config_from_args(args)
    _quiet_tensorflow()
    from transformer_tf.data.sources import load_splits
    from transformer_tf.data.tokenizers import build_or_load_tokenizers
    from transformer_tf.run import RunDir

    train_sources, train_targets = load_splits(config.data, ["train"])["train"]
    tokenizers = build_or_load_tokenizers(config.tokenizer, train_sources, train_targets,
                                          RunDir(config.run_dir).vocab)
    for side, tokenizer in zip(("source", "target"), tokenizers):
        sample = (train_sources if side == "source" else train_targets)[0]
        pieces = tokenizer.pieces(tokenizer.tokenize([sample])[0])
        print(f"{side}: {tokenizer.vocab_size} entries ({config.tokenizer.type}); "
              f"{sample!r} -> {' '.join(pieces)}")
    print(f"written to {RunDir(config.run_dir).vocab}")
    return 0


def _export(config, translator, output, ids_only=False, export_format="saved_model"):
    """Write the SavedModel (or CTranslate2 model), then load it back and translate one
    sentence as a check."""
    import tensorflow as tf

    from transformer_tf.data.sources import load_splits
    from transformer_tf.inference.export import export_ids_saved_model, export_saved_model
    from transformer_tf.run import RunDir

    run = RunDir(config.run_dir)
    if export_format == "ctranslate2":
        _export_ctranslate2(config, translator, Path(output or run.ctranslate2), run.vocab)
        return
    directory = Path(output or config.export.directory or run.export)
    if ids_only:
        export_ids_saved_model(translator, directory)
        print(f"exported SavedModel of token ids (step {translator.step}) to {directory}")
        return
    export_saved_model(translator, directory)
    print(f"exported SavedModel (step {translator.step}) to {directory}")
    sources, _ = load_splits(config.data, [config.eval.split])[config.eval.split]
    served = tf.saved_model.load(str(directory)).signatures["serving_default"]
    translation = served(sentences=tf.constant(sources[:1]))["translations"][0]
    print(f"  check: {sources[0]!r} -> {translation.numpy().decode('utf-8')!r}")


def _export_ctranslate2(config, translator, directory, vocab_dir):
    from transformer_tf.data.sources import load_splits
    from transformer_tf.data.tokenizers import vocab_path
    from transformer_tf.inference.export_ctranslate2 import (
        export_ctranslate2, load_ctranslate2, translate_ctranslate2)

    files = [vocab_path(vocab_dir, side, config.tokenizer.type) for side in ("source", "target")]
    export_ctranslate2(translator, directory, files)
    print(f"exported CTranslate2 model (step {translator.step}) to {directory}")
    sources, _ = load_splits(config.data, [config.eval.split])[config.eval.split]
    engine = load_ctranslate2(directory)
    translation = translate_ctranslate2(engine, translator, sources[:1])[0]
    print(f"  check: {sources[0]!r} -> {translation!r}")


def _decoding_overrides(args):
    """--beam-size and friends as config overrides."""
    flags = {"beam_size": args.beam_size, "length_penalty": args.length_penalty,
             "tokenize": getattr(args, "tokenize", None),
             "lowercase": getattr(args, "lowercase", None) or None}
    return [f"eval.{key}={value}" for key, value in flags.items() if value is not None]


def cmd_evaluate(args):
    if bool(args.src) != bool(args.ref):
        raise UserError("--src and --ref go together: the source file and its reference "
                        "translations.")
    if args.saved_model and (args.beam_size or args.length_penalty is not None):
        raise UserError("a SavedModel decodes with the settings it was exported with; drop "
                        "--beam-size/--length-penalty, or evaluate the run (--run-dir).")
    decoding = _decoding_overrides(args)
    args.set = [*(args.set or []), *decoding]
    config = _config_from_args(args) if (args.config or args.run_dir) else None
    if config is None and not (args.saved_model and args.src):
        raise UserError("pass --config or --run-dir (to evaluate a run), or --saved-model "
                        "with --src and --ref.")
    _quiet_tensorflow()
    from transformer_tf.config import config_from_dict
    from transformer_tf.data.sources import load_splits, read_parallel
    from transformer_tf.evaluation.evaluate import evaluate
    from transformer_tf.inference.translator import ServedTranslator, Translator

    eval_config = config.eval if config else config_from_dict({}, "command line", decoding).eval
    if args.saved_model:
        translator = ServedTranslator(args.saved_model)
    else:
        translator = Translator.from_run(config, args.average_last, args.best)
    if args.src:
        sources, references = read_parallel(args.src, args.ref)
        name = Path(args.src).name
    else:
        name = args.split or eval_config.split
        sources, references = load_splits(config.data, [name])[name]
    output_dir = args.output_dir or (config.run_dir if config else ".")
    result = evaluate(translator, sources, references, eval_config, output_dir, name)
    _print_evaluation(result)
    return 0


def cmd_export(args):
    config = _config_from_args(args)
    _quiet_tensorflow()
    from transformer_tf.inference.translator import Translator

    translator = Translator.from_run(config, args.average_last, args.best)
    if args.format == "ctranslate2" and args.tokenizer == "none":
        raise UserError("--tokenizer none is a SavedModel form; a CTranslate2 model takes "
                        "token strings, so drop --tokenizer with --format ctranslate2.")
    _export(config, translator, args.output, ids_only=args.tokenizer == "none",
            export_format=args.format)
    return 0


def _read_input(args):
    from transformer_tf.data.sources import read_lines

    if args.sentences:
        return args.sentences
    if args.input:
        return read_lines(args.input)
    return [line.rstrip("\n") for line in sys.stdin]


def cmd_translate(args):
    if args.attention:
        return _translate_with_attention(args)
    if args.n_best:
        return _translate_n_best(args)
    if args.saved_model:
        directory = Path(args.saved_model)
    else:
        from transformer_tf.run import RunDir

        config = _config_from_args(args)
        directory = Path(config.export.directory or RunDir(config.run_dir).export)
    if not (directory / "saved_model.pb").is_file():
        raise UserError(f"no SavedModel in '{directory}'; run `transformer-tf export` first "
                        "or pass --saved-model DIR.")
    sentences = _read_input(args)
    _quiet_tensorflow()
    from transformer_tf.inference.translator import ServedTranslator, translate_in_batches

    served = ServedTranslator(directory)
    outputs = translate_in_batches(served.signature, sentences, args.batch_size)
    for number, truncated in enumerate(outputs["truncated"], start=1):
        if truncated:
            print(f"warning: line {number} is longer than the model reads; its end was not "
                  "translated.", file=sys.stderr)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for text in outputs["translations"]:
            print(text, file=out)
    finally:
        if args.output:
            out.close()
    return 0


def _translate_n_best(args):
    """Print each sentence's n best translations: `index ||| translation ||| score`."""
    if args.saved_model:
        raise UserError("--n-best decodes with a run's checkpoint: pass --config or --run-dir "
                        "instead of --saved-model.")
    if args.n_best < 1:
        raise UserError(f"--n-best must be 1 or more, got {args.n_best}.")
    config = _config_from_args(args)
    sentences = _read_input(args)
    _quiet_tensorflow()
    from transformer_tf.inference.translator import Translator

    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for index, hypotheses in enumerate(
                Translator.from_run(config).n_best(sentences, args.n_best, args.batch_size)):
            for text, score in hypotheses:
                print(f"{index} ||| {text} ||| {score:.4f}", file=out)
    finally:
        if args.output:
            out.close()
    return 0


def _translate_with_attention(args):
    """Translate one sentence with the run's checkpoint and save its attention as a PNG."""
    config = _config_from_args(args)
    sentences = _read_input(args)
    if len(sentences) != 1:
        raise UserError("--attention draws one sentence: pass exactly one.")
    _quiet_tensorflow()
    import tensorflow as tf

    from transformer_tf.evaluation.attention_image import attention_image
    from transformer_tf.inference.translator import Translator

    result = Translator.from_run(config).attention(sentences[0])
    last = result["attention"][f"decoder_layer{config.model.num_layers}"]
    png = tf.io.encode_png(attention_image(last, cell=16)[0])
    Path(args.attention).write_bytes(png.numpy())
    print(result["translation"])
    print(f"attention of the last decoder layer ({last.shape[0]} heads, target tokens down, "
          f"source tokens across) written to {args.attention}", file=sys.stderr)
    return 0


def _add_config_args(parser, required=False):
    group = parser.add_argument_group("run")
    group.add_argument("--config", required=required, help="YAML config file")
    group.add_argument("--run-dir", help="run directory (overrides the config's run_dir)")
    group.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.steps=200 (repeatable)")


def _add_checkpoint_args(parser):
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--average-last", type=int, default=1, metavar="N",
                       help="use the mean weights of the last N checkpoints")
    group.add_argument("--best", action="store_true",
                       help="use the best checkpoint by validation (train.best_metric)")


def _add_decoding_args(parser):
    group = parser.add_argument_group("decoding (default: the config's eval section)")
    group.add_argument("--beam-size", type=int, help="1 for greedy search")
    group.add_argument("--length-penalty", type=float, help="GNMT alpha for beam search")


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

    evaluate = commands.add_parser(
        "evaluate", help="BLEU and chrF of a split, or of --src/--ref files")
    _add_config_args(evaluate)
    evaluate.add_argument("--saved-model", help="evaluate this SavedModel instead of the run")
    evaluate.add_argument("--split", choices=["train", "validation", "test"],
                          help="split of the configured data (default: eval.split)")
    evaluate.add_argument("--src", help="source sentences, one per line")
    evaluate.add_argument("--ref", help="reference translations, one per line")
    evaluate.add_argument("--output-dir", help="where eval/ and metrics.jsonl go "
                          "(default: the run directory, or . for a SavedModel)")
    evaluate.add_argument("--tokenize", help="sacrebleu tokenizer for BLEU, e.g. 13a, intl, "
                          "none for already tokenized text (default: eval.tokenize)")
    evaluate.add_argument("--lowercase", action="store_true", help="lower-cased BLEU")
    _add_checkpoint_args(evaluate)
    _add_decoding_args(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser("export", help="write a SavedModel (or a CTranslate2 model) "
                                 "of the latest checkpoint")
    _add_config_args(export)
    export.add_argument("--format", choices=["saved_model", "ctranslate2"],
                        default="saved_model",
                        help="saved_model: TensorFlow SavedModel; ctranslate2: a CTranslate2 "
                        "model directory with the tokenizer files (needs pip install "
                        "'transformer_tf[ctranslate2]')")
    export.add_argument("--output", help="directory (default: export.directory or "
                        "<run_dir>/export; <run_dir>/ctranslate2 for --format ctranslate2)")
    export.add_argument("--tokenizer", choices=["included", "none"], default="included",
                        help="included: strings in and out (needs tensorflow-text); none: token ids in and out, core TensorFlow ops only (for "
                        "saved_model_cli run and servers without tensorflow-text)")
    _add_checkpoint_args(export)
    export.set_defaults(func=cmd_export)

    build_vocab = commands.add_parser(
        "build-vocab", help="build the run's tokenizers from the training split, and stop")
    _add_config_args(build_vocab, required=True)
    build_vocab.set_defaults(func=cmd_build_vocab)

    translate = commands.add_parser("translate", help="translate sentences with a SavedModel")
    _add_config_args(translate)
    translate.add_argument("--saved-model", help="SavedModel directory")
    translate.add_argument("--input", help="file of sentences, one per line (default: stdin)")
    translate.add_argument("--output", help="file for the translations (default: stdout)")
    translate.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    translate.add_argument("--attention", metavar="FILE.png",
                           help="with --config/--run-dir: save the encoder-decoder attention "
                           "of one sentence as an image")
    translate.add_argument("--n-best", type=int, metavar="N",
                           help="with --config/--run-dir: print the N best translations of "
                           "each sentence by beam search, as `index ||| text ||| score` "
                           "(best first by the length-penalised score; score: summed "
                           "log-probability)")
    translate.add_argument("sentences", nargs="*", help="sentences (default: --input or stdin)")
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
