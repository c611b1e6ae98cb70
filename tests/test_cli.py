"""The command line: train, resume, evaluate, translate and export as a user types them."""

import io
import json

import pytest
import sacrebleu

from transformer_tf.cli import main
from transformer_tf.config import load_config

from conftest import read_scalars, tiny_args, write_lines, write_records


def test_rerunning_continues_from_the_last_step(copy_run, capsys):
    assert main(["train", *tiny_args(copy_run, "train.steps=200"), "--no-eval", "--no-export"]) == 0
    text = capsys.readouterr().err
    assert "at step 150" in text and "step 200/200" in text and "step 50/200" not in text
    # 50 batches of many lengths, one trace: no retracing per batch shape.
    assert "the update was traced once" in text
    assert (copy_run / "checkpoints" / "ckpt-200.index").exists()
    assert sorted(read_scalars(copy_run / "logs" / "train")["loss"]) == [50, 100, 150, 200]


def test_build_vocab_prints_each_side_and_where_it_wrote(tmp_path, capsys):
    assert main(["build-vocab", *tiny_args(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("source: ") and lines[1].startswith("target: ")
    assert "entries (sentencepiece); '" in lines[0] and " -> " in lines[1]
    assert lines[2] == f"written to {tmp_path / 'run' / 'vocab'}"
    assert (tmp_path / "run" / "vocab" / "target.model").is_file()


def test_evaluate_prints_bleu_with_signature_and_writes_hypotheses(copy_run, capsys):
    assert main(["evaluate", "--run-dir", str(copy_run), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert "validation BLEU" in out and "nrefs:1|case:mixed|eff:no|tok:13a" in out
    hypotheses = (copy_run / "eval" / "validation-step150.hyp.txt").read_text().splitlines()
    config = load_config(copy_run / "config.yaml")
    from transformer_tf.data.sources import load_splits

    references = load_splits(config.data)["validation"].targets
    assert len(hypotheses) == len(references) == 40
    record = json.loads((copy_run / "metrics.jsonl").read_text().splitlines()[-1])
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert record["split"] == "validation" and abs(record["bleu"] - expected) < 1e-9
    assert f"validation BLEU {expected:.2f}" in out


def test_translate_command(trained_run, capsys, monkeypatch):
    export = str(trained_run / "export")
    assert main(["translate", "--saved-model", export, "The cat sat on the mat."]) == 0
    evaluated = (trained_run / "eval" / "test-step150.hyp.txt").read_text().splitlines()[0]
    assert capsys.readouterr().out.splitlines() == [evaluated]
    monkeypatch.setattr("sys.stdin", io.StringIO("The cat sat on the mat.\r\n\n"))
    assert main(["translate", "--saved-model", export]) == 0
    assert capsys.readouterr().out.splitlines() == [evaluated, ""]
    with pytest.raises(SystemExit):
        main(["translate", "--run-dir", str(trained_run), "--n-best", "0", "A dog."])
    assert "--n-best: must be a whole number of 1 or more, got '0'" in capsys.readouterr().err


def test_translate_a_file_keeps_order_blank_lines_and_warns_on_long_lines(
    trained_run, tmp_path, capsys
):
    long_line = " ".join(["The cat sat on the mat."] * 30)
    lines = ["The cat sat on the mat.", "", long_line, "A dog sleeps."]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    assert (
        main(
            [
                "translate",
                "--saved-model",
                str(trained_run / "export"),
                "--input",
                str(source),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    translated = output.read_text(encoding="utf-8").splitlines()
    assert len(translated) == 4 and translated[1] == ""
    assert all(translated[i] for i in (0, 2, 3))
    # Alone or in a file, a sentence translates the same.
    assert main(["translate", "--saved-model", str(trained_run / "export"), "A dog sleeps."]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [translated[3]]
    assert "warning: 1 of 4 inputs are longer than the model reads" in err
    assert "their ends were not used: line 3." in err


def test_evaluate_refuses_mismatched_files(trained_run, tmp_path, capsys):
    src, ref = tmp_path / "a.txt", tmp_path / "b.txt"
    src.write_text("one\ntwo\n", encoding="utf-8")
    ref.write_text("eins\n", encoding="utf-8")
    assert (
        main(["evaluate", "--run-dir", str(trained_run), "--src", str(src), "--ref", str(ref)]) == 2
    )
    assert f"'{src}' has 2 lines but '{ref}' has 1" in capsys.readouterr().err


def test_export_best_needs_validation(trained_run, capsys):
    assert main(["export", "--run-dir", str(trained_run), "--best"]) == 2
    assert "has no best checkpoint" in capsys.readouterr().err


def test_evaluating_an_average_records_it_beside_the_single_checkpoint(copy_run, capsys):
    single = (copy_run / "eval" / "test-step150.hyp.txt").read_text(encoding="utf-8")
    assert (
        main(["evaluate", "--run-dir", str(copy_run), "--split", "test", "--average-last", "2"])
        == 0
    )
    assert "step 150, mean of the last 2 checkpoints)" in capsys.readouterr().out
    assert (copy_run / "eval" / "test-step150-mean2.hyp.txt").exists()
    assert (copy_run / "eval" / "test-step150.hyp.txt").read_text(encoding="utf-8") == single
    record = json.loads((copy_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["averaged_checkpoints"] == 2 and record["step"] == 150
    # The config's eval.average_last is the default of --average-last.
    averaged = (copy_run / "eval" / "test-step150-mean2.hyp.txt").read_text(encoding="utf-8")
    command = ["evaluate", "--run-dir", str(copy_run), "--split", "test"]
    assert main([*command, "--set", "eval.average_last=2"]) == 0
    assert "step 150, mean of the last 2 checkpoints)" in capsys.readouterr().out
    assert (copy_run / "eval" / "test-step150-mean2.hyp.txt").read_text("utf-8") == averaged


def test_translate_20000_lines_in_order(trained_run, tmp_path):
    """A large input is translated in bounded batches, every line in its place."""
    distinct = ["A dog sleeps.", "The cat sat on the mat.", "", "A man reads a book."]
    lines = [distinct[i * 7 % 4] for i in range(20_000)]
    source, output = write_lines(tmp_path / "in.txt", lines), tmp_path / "out.txt"
    args = ["--saved-model", str(trained_run / "export"), "--input", str(source)]
    assert main(["translate", *args, "--output", str(output)]) == 0
    translated = output.read_text(encoding="utf-8").splitlines()
    assert len(translated) == 20_000
    by_source = dict(zip(lines[:4], translated[:4]))
    assert [by_source[line] for line in lines] == translated
    assert by_source[""] == "" and all(by_source[s] for s in distinct if s)


def test_rouge_runs_pick_the_best_by_rouge_l_and_evaluate_against_all_answers(
    trained_fields_run, capsys
):
    """The two-field run: validation recorded ROUGE (metrics.jsonl, TensorBoard), the best
    checkpoint followed ROUGE-L, and `evaluate` prints ROUGE against both answers."""
    records = [json.loads(line) for line in (trained_fields_run / "metrics.jsonl").open()]
    validations = [r for r in records if r["split"] == "validation" and "loss" in r]
    assert [r["step"] for r in validations] == [100, 150]
    assert all(0 <= r["rouge_l"] <= 100 and "rouge2_mean" in r for r in validations)
    scalars = read_scalars(trained_fields_run / "logs" / "eval")
    assert sorted(scalars["validation/rouge_l"]) == [100, 150]
    best = max(validations, key=lambda r: r["rouge_l"])["step"]
    assert (
        (trained_fields_run / "checkpoints" / "best" / "checkpoint")
        .read_text()
        .count(f"best-{best}")
    )
    assert main(["evaluate", "--run-dir", str(trained_fields_run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    # --best is one checkpoint, whatever eval.average_last says.
    best_args = ["--best", "--set", "eval.average_last=2", "--split", "validation"]
    assert main(["evaluate", "--run-dir", str(trained_fields_run), *best_args]) == 0
    assert f"step {best}" in capsys.readouterr().out
    assert "ROUGE-1/2/L" in out and "nrefs:2|multi:max|stem:porter" in out


def test_generate_answers_json_lines_by_field_name(trained_fields_run, tmp_path, capsys):
    questions = tmp_path / "questions.jsonl"
    write_records(
        questions,
        [
            {"question": "The cat sat on the mat.", "context": "a story", "id": 1},
            {"question": "", "context": ""},
            {"question": "A dog sleeps.", "context": "a story"},
        ],
    )
    export = str(trained_fields_run / "export")
    assert main(["generate", "--saved-model", export, "--input", str(questions)]) == 0
    answers = capsys.readouterr().out.splitlines()
    assert len(answers) == 3 and answers[0] and answers[1] == "" and answers[2]
    write_records(questions, [{"question": "Who?"}])
    assert main(["generate", "--saved-model", export, "--input", str(questions)]) == 2
    assert "questions.jsonl: line 1 has no string field 'context'; this model takes " in (
        capsys.readouterr().err
    )
