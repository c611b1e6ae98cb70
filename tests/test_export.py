"""The SavedModel exports: served by TensorFlow's own tools and by a process without this
package."""

import json
import re
import sys
from pathlib import Path

import tensorflow as tf

from transformer_tf.cli import main
from transformer_tf.data.templates import fill_template
from transformer_tf.runner import Runner

from conftest import FIELDS_TEMPLATE, run_quietly, serve_in_fresh_process

SAVED_MODEL_CLI = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_lists_the_signature(trained_run):
    shown = run_quietly([*SAVED_MODEL_CLI, "show", "--all", "--dir", str(trained_run / "export")])
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout
    for name in ("sentences", "translations", "scores", "truncated"):
        assert f"['{name}']" in shown.stdout, name


def test_ids_export_runs_in_stock_saved_model_cli(each_trained_run, tmp_path):
    export = tmp_path / "ids"
    assert (
        main(
            [
                "export",
                "--run-dir",
                str(each_trained_run),
                "--tokenizer",
                "none",
                "--output",
                str(export),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (export / "assets").iterdir()) == ["source.vocab", "target.vocab"]
    translator = Runner.from_run_dir(each_trained_run).translator()
    ids = translator.source_tokenizer.tokenize(tf.constant(["The cat sat on the mat."]))
    ids = ids.to_tensor().numpy().tolist()
    ran = run_quietly(
        [
            *SAVED_MODEL_CLI,
            "run",
            "--dir",
            str(export),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            f"source_ids={ids}",
        ]
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    printed = re.search(r"target_ids.*?\[\[(.*?)\]\]", ran.stdout, re.S).group(1)
    served = [int(x) for x in re.findall(r"-?\d+", printed)]
    expected, _ = translator.search(*translator.encode(tf.constant(["The cat sat on the mat."])))
    expected = expected[0].numpy().tolist()
    assert served[: len(expected)] == expected


def test_readme_serving_snippet_runs_as_written(trained_run, tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Serving the SavedModel", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart" / "export").symlink_to(trained_run / "export")
    result = run_quietly([sys.executable, "-c", snippet], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = (
        Runner.from_run_dir(trained_run).translator().translate(["The cat sat on the mat."])[0]
    )
    translation, score = result.stdout.strip().rsplit(" ", 1)
    assert translation == expected and float(score) < 0


def test_saved_model_translates_in_a_process_without_this_package(each_trained_run):
    served = serve_in_fresh_process(
        each_trained_run / "export", ["The cat sat on the mat.", "A dog sleeps."]
    )
    assert served["imported_package"] is False
    # The canonical sentence is the first test sentence: the served model must translate
    # it exactly as the in-process evaluation did.
    evaluated = (each_trained_run / "eval" / "test-step150.hyp.txt").read_text().splitlines()[0]
    assert served["translations"][0] == evaluated
    assert served["translations"][1] and all(s < 0 for s in served["scores"])


def test_the_served_model_survives_hostile_input(trained_run):
    """Any bytes a client sends: one bad line gives a translation, never a failed batch."""
    import tensorflow_text  # noqa: F401  (the SentencePiece ops)

    serve = tf.saved_model.load(str(trained_run / "export")).signatures["serving_default"]
    sentences = [
        b"A dog sleeps.",
        b"\xff\xfe not UTF-8 \xc3",  # invalid bytes
        b" \t\x01\x02 ",  # whitespace and control characters only
        b"",
        ("The cat sat on the mat. " * 45_000).encode(),  # about 1 MB
    ]
    outputs = serve(sentences=tf.constant(sentences))
    translations = outputs["translations"].numpy()
    assert len(translations) == 5
    assert translations[0] and translations[4]
    for text in translations:
        text.decode("utf-8")  # every output is valid UTF-8
    assert outputs["truncated"].numpy().tolist() == [False, False, False, False, True]
    alone = serve(sentences=tf.constant([b"A dog sleeps."]))["translations"].numpy()[0]
    assert alone == translations[0]  # the bad lines did not change the good one's output


_SERVE_FIELDS_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the tokenizers' ops
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
fields = {name: tf.constant(values) for name, values in json.loads(sys.argv[2]).items()}
out = serve(**fields)
print(json.dumps({
    "inputs": sorted(serve.structured_input_signature[1]),
    "outputs": [t.decode("utf-8") for t in out["translations"].numpy()],
    "imported_package": any(m.startswith("transformer_tf") for m in sys.modules)}))
"""


def test_a_template_export_takes_its_fields_by_name_in_a_fresh_process(trained_fields_run):
    questions = ["The cat sat on the mat.", "A dog sleeps."]
    result = run_quietly(
        [
            sys.executable,
            "-c",
            _SERVE_FIELDS_SCRIPT,
            str(trained_fields_run / "export"),
            json.dumps({"question": questions, "context": ["a story", "a story"]}),
        ]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["inputs"] == ["context", "question"]
    assert served["imported_package"] is False
    # The graph fills the template as training did: the same output as the run's own
    # translator given the filled-in text.
    filled = [
        fill_template(FIELDS_TEMPLATE, {"question": q, "context": "a story"}) for q in questions
    ]
    expected = Runner.from_run_dir(trained_fields_run).translator().translate(filled)
    assert served["outputs"] == expected and all(expected)


def test_a_template_export_selects_sentences_in_its_graph_as_training_does(
    trained_fields_run, tmp_path
):
    """With `data.select_sentences`, the exported graph cuts the context to the sentences
    that share most words with the question before filling the template, as the training
    and evaluation data were made: the same outputs as the run's translator given the
    selected, filled-in text."""
    select = ["field=context", "query=question", "keep=1"]
    runner = Runner.from_run_dir(
        trained_fields_run, [f"data.select_sentences.{key}" for key in select]
    )
    served = runner.served(runner.export(tmp_path / "selecting").directory)
    questions = ["The cat sat on the mat.", "A dog sleeps."]
    contexts = [f"It rained. {q} The end came." for q in questions]
    outputs = served.generate({"question": questions, "context": contexts})
    filled = [fill_template(FIELDS_TEMPLATE, {"question": q, "context": q}) for q in questions]
    assert outputs == runner.translator().translate(filled) and all(outputs)
