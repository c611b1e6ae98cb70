"""Config mistakes stop the command line with one sentence naming the key, no traceback."""

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer_tf.cli import main
from transformer_tf.config import Config, config_from_dict, load_config
from transformer_tf.errors import ConfigError, UserError

from conftest import QUICKSTART


def _run(capsys, args):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("path", sorted(QUICKSTART.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)  # every key checked, or a ConfigError


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_quickstart_loads_with_overrides():
    config = load_config(QUICKSTART, ["train.steps=7", "model.rate=0.2", "eval.lowercase=true"])
    assert (config.train.steps, config.model.rate, config.eval.lowercase) == (7, 0.2, True)


def test_unknown_key_names_the_path_and_the_nearest_valid_key(tmp_path, capsys):
    config = _write(tmp_path, "train:\n  stpes: 10\n")
    code, err = _run(capsys, ["train", "--config", config])
    assert code == 2
    assert err == f"error: {config}: unknown key 'train.stpes'; did you mean 'train.steps'?"


def test_unknown_section(tmp_path, capsys):
    code, err = _run(capsys, ["train", "--config", _write(tmp_path, "modle:\n  d_model: 8\n")])
    assert code == 2 and "unknown key 'modle'; did you mean 'model'?" in err


def test_wrong_type_names_the_key_and_the_expected_type(tmp_path, capsys):
    config = _write(tmp_path, "model:\n  d_model: big\n")
    code, err = _run(capsys, ["train", "--config", config])
    assert code == 2
    assert err == (
        f"error: {config}: 'model.d_model' must be an integer, got 'big'; fix it in "
        "the config or the --set override."
    )


def test_wrong_type_in_override(capsys):
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), "--set", "train.steps=1.5"])
    assert code == 2 and "'train.steps' must be an integer, got 1.5" in err


def test_bad_choice(tmp_path, capsys):
    code, err = _run(capsys, ["train", "--config", _write(tmp_path, "eval:\n  split: dev\n")])
    assert code == 2 and "'eval.split' must be one of 'train', 'validation', 'test'" in err


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    code, err = _run(capsys, ["train", "--config", str(missing)])
    assert code == 2
    assert err == f"error: config file '{missing}' not found; check the --config path."


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    config = _write(tmp_path, "train:\n  steps: 10\n  bad: [1, 2\n")
    code, err = _run(capsys, ["train", "--config", config])
    assert code == 2 and "line" in err and "not valid YAML" in err and "\n" not in err


def test_heads_must_divide_width(capsys):
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), "--set", "model.num_heads=3"])
    assert code == 2
    assert "'model.d_model' (128) must be divisible by 'model.num_heads' (3)" in err


def test_cli_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    config = _write(tmp_path, "train:\n  stpes: 10\n")
    result = subprocess.run(
        [sys.executable, "-m", "transformer_tf.cli", "train", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: unknown key 'train.stpes'; did you mean 'train.steps'?"
    ]


def test_readme_config_table_is_the_dataclasses():
    from transformer_tf.config_docs import README, config_rows, config_table, readme_table

    assert readme_table(README.read_text(encoding="utf-8")) == config_table(), (
        "README.md's config table is out of date: run python -m transformer_tf.config_docs --write"
    )
    undocumented = [key for key, _, _, meaning in config_rows() if not meaning]
    assert not undocumented  # every key says what it does


def test_sharing_all_embeddings_needs_a_shared_vocabulary(capsys):
    code, err = _run(
        capsys, ["train", "--config", str(QUICKSTART), "--set", "model.share_embeddings=all"]
    )
    assert code == 2
    assert "'model.share_embeddings: all'" in err and "'tokenizer.shared: true'" in err


def test_lowercase_needs_sentencepiece(capsys):
    settings = ["--set", "tokenizer.type=wordpiece", "--set", "tokenizer.lowercase=true"]
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), *settings])
    assert code == 2 and "'tokenizer.lowercase' needs 'tokenizer.type: sentencepiece'" in err


@pytest.mark.parametrize("key", ["attention_dropout", "activation_dropout", "word_dropout"])
def test_dropouts_must_be_rates(key, capsys):
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), "--set", f"model.{key}=1.5"])
    assert code == 2 and f"'model.{key}' must be in [0, 1), got 1.5" in err


def test_no_repeat_ngram_size_is_not_negative(capsys):
    args = ["train", "--config", str(QUICKSTART), "--set", "eval.no_repeat_ngram_size=-2"]
    code, err = _run(capsys, args)
    assert code == 2 and "'eval.no_repeat_ngram_size' must be 0 (off) or the n-gram size" in err


def test_rdrop_alpha_is_not_negative(capsys):
    args = ["train", "--config", str(QUICKSTART), "--set", "train.rdrop_alpha=-1"]
    code, err = _run(capsys, args)
    assert code == 2 and "'train.rdrop_alpha' must be 0 (off) or positive, got -1" in err


@pytest.mark.parametrize("key", ["clip_norm", "max_minutes"])
def test_clip_norm_and_time_budget_are_positive_or_null(key, capsys):
    args = ["train", "--config", str(QUICKSTART), "--set", f"train.{key}=0"]
    code, err = _run(capsys, args)
    assert code == 2 and f"'train.{key}' must be positive or null, got 0" in err


def test_norm_is_a_choice(capsys):
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), "--set", "model.norm=middle"])
    assert code == 2 and "'model.norm' must be one of 'post', 'pre'" in err


def test_averaging_needs_the_checkpoints_kept(capsys):
    code, err = _run(
        capsys, ["train", "--config", str(QUICKSTART), "--set", "eval.average_last=50"]
    )
    assert code == 2
    assert "'eval.average_last' (50) is more checkpoints than 'train.keep_checkpoints'" in err


# -- properties: any YAML values, any --set string: a config or a UserError, nothing else ----

_KEYS = {
    section.name: [f.name for f in dataclasses.fields(section.type)]
    for section in dataclasses.fields(Config)
    if dataclasses.is_dataclass(section.type)
}
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_SECTION_NAMES = st.sampled_from([*_KEYS, "run_dir", "nonsense"]) | st.text(max_size=8)


@st.composite
def _config_trees(draw):
    """Mostly real section and key names, with values of any YAML type."""
    tree = {}
    for section in draw(st.lists(_SECTION_NAMES, max_size=4)):
        if section in _KEYS and draw(st.booleans()):
            keys = st.sampled_from(_KEYS[section]) | st.text(max_size=6)
            tree[section] = draw(st.dictionaries(keys, _VALUES, max_size=4))
        else:
            tree[section] = draw(_VALUES)
    return tree


def _config_or_user_error(values, overrides=()):
    try:
        config = config_from_dict(values, "prop.yaml", overrides)
    except UserError:
        return
    assert isinstance(config, Config)


@settings(max_examples=300, deadline=None)
@given(_config_trees())
def test_any_yaml_values_give_a_config_or_a_user_error(values):
    _config_or_user_error(values)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(max_size=30)
        | st.builds(
            "{}.{}={}".format,
            st.sampled_from(list(_KEYS)),
            st.sampled_from(sorted({k for keys in _KEYS.values() for k in keys})),
            st.text(max_size=12),
        ),
        max_size=3,
    )
)
def test_any_set_strings_give_a_config_or_a_user_error(overrides):
    _config_or_user_error({}, overrides)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_yaml_text_gives_a_config_or_a_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except UserError:
        pass


JSONL = {
    "source": "jsonl",
    "train": {"jsonl": "train.jsonl"},
    "validation": {"jsonl": "validation.jsonl"},
    "test": {"jsonl": "test.jsonl"},
    "source_template": "{question} {context}",
    "target_field": "answers",
}


@pytest.mark.parametrize(
    "data, eval_section, message",
    [
        ({**JSONL, "test": {}}, {}, "data.source 'jsonl' needs 'data.test.jsonl'"),
        ({**JSONL, "target_field": None}, {}, "needs 'data.target_field'"),
        ({**JSONL, "source_template": "{question"}, {}, "'data.source_template': expected '}'"),
        ({**JSONL, "source_template": "{0}"}, {}, "'{0}' is not a plain field name"),
        ({**JSONL, "source_template": "{q.a}"}, {}, "'{q.a}' is not a plain field name"),
        ({**JSONL, "source_template": "no field"}, {}, "names no field"),
        ({"source_template": "{x}"}, {}, "'data.source_template' reads JSON records"),
        (
            {"select_sentences": {"field": "x", "query": "y"}},
            {},
            "'data.select_sentences' reads JSON records",
        ),
        (
            {**JSONL, "select_sentences": {"field": "story", "query": "question"}},
            {},
            "'data.select_sentences.field' ('story') must be a field of 'data.source_template'",
        ),
        (
            {**JSONL, "select_sentences": {"query": "question"}},
            {},
            "'data.select_sentences.field' (None) must be a field",
        ),
        (
            {**JSONL, "select_sentences": {"field": "context", "query": "question", "keep": 0}},
            {},
            "'data.select_sentences' needs a query field other than its field and keep >= 1",
        ),
        ({**JSONL, "reference_fields": "answers"}, {}, "'data.reference_fields' must be a list"),
        (JSONL, {"metrics": ["rouge"]}, "'train.best_metric' is bleu, which 'eval.metrics'"),
        (JSONL, {"metrics": []}, "'eval.metrics' is empty"),
        (JSONL, {"metrics": ["rogue"]}, "'eval.metrics' entry 1 must be one of"),
    ],
)
def test_jsonl_templates_and_metrics_are_checked(data, eval_section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({"data": data, "eval": eval_section})


def test_rouge_can_pick_the_best_checkpoint_and_limits_per_side():
    config = config_from_dict(
        {
            "data": {**JSONL, "max_source_length": 256, "max_target_length": 48},
            "eval": {"metrics": ["rouge"]},
            "train": {"best_metric": "rouge_l"},
        }
    )
    assert config.data.length_limits() == (256, 48)
    assert config_from_dict({}).data.length_limits() == (64, 64)


@pytest.mark.parametrize(
    "settings, message",
    [
        (["tokenizer.type=wordpiece"], "'tokenizer.sampling_alpha' samples SentencePiece"),
        (["tokenizer.sampling_alpha=0"], "'tokenizer.sampling_alpha' must be in (0, 1]"),
        (["tokenizer.sampling_nbest=1"], "'tokenizer.sampling_nbest' must be -1"),
        (["tokenizer.sampling_copies=0"], "'tokenizer.sampling_copies' must be 1 or more"),
    ],
)
def test_subword_sampling_settings_are_checked(settings, message, capsys):
    assignments = ["tokenizer.sampling_alpha=0.1", *settings]
    args = [arg for a in assignments for arg in ("--set", a)]
    code, err = _run(capsys, ["train", "--config", str(QUICKSTART), *args])
    assert code == 2 and message in err
