"""`train.precision: auto` and `train.jit_compile: auto`: the start-up probes choose, the
choice is written into the run's config.yaml, a resumed run keeps it, and probing leaves
the run as it would have been with the chosen setting given explicitly."""

import types

import numpy as np

from transformer_tf.config import load_config
from transformer_tf.runner import Runner
from transformer_tf.training import probes

from conftest import QUICKSTART, TINY, captured_log

SHORT = ["train.steps=20", "train.checkpoint_every=10", "train.log_every=10"]


def _runner(run_dir, *overrides):
    return Runner(load_config(QUICKSTART, [*TINY, *SHORT, f"run_dir={run_dir}", *overrides]))


# A tiny run on bucket-padded batches, as XLA needs; few updates, since each new bucket shape
# is compiled anew (most of these tests' time).
BUCKETED = ["data.pad_to_buckets=true", "train.steps=3", "train.checkpoint_every=3"]


def _strategy(replicas):
    """What `Runner._choose_auto_settings` reads of a `tf.distribute` strategy."""
    return types.SimpleNamespace(num_replicas_in_sync=replicas)


def test_the_precision_probe_times_the_models_products_and_keeps_a_margin(monkeypatch):
    config = load_config(QUICKSTART, ["model.input_vocab_size=50", "model.target_vocab_size=60"])
    assert probes.matmul_shapes(config.model, 100)[-1] == (100, config.model.d_model, 60)
    assert probes.precision_speedup(config.model, 64) > 0  # measured, both precisions run
    for speedup, choice in ((probes.MARGIN, "bfloat16"), (probes.MARGIN - 0.01, "float32")):
        monkeypatch.setattr(probes, "precision_speedup", lambda *args, s=speedup: s)
        assert probes.choose_precision(config.model, 64) == (choice, speedup)


def test_probe_batches_have_the_bucketed_shapes_of_training():
    config = load_config(QUICKSTART, ["model.input_vocab_size=50", "model.target_vocab_size=60"])
    config.data.batch_tokens = 1024
    shapes = [
        (s.shape.as_list(), t.shape.as_list())
        for s, t in probes.probe_batches(config.model, config.data)
    ]
    assert shapes == [([1024 // 15, 15], [1024 // 15, 16]), ([1024 // 31, 31], [1024 // 31, 32])]


def test_an_auto_precision_is_recorded_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "precision_speedup", lambda *args: 2.0)  # bfloat16 wins
    with captured_log() as messages:
        _runner(tmp_path / "run", "train.precision=auto").train()
    assert "train.precision auto: bfloat16 (bfloat16 matrix products" in "\n".join(messages)
    assert Runner.from_run_dir(tmp_path / "run").config.train.precision == "bfloat16"
    # Resumed on a machine where float32 would win: the run does not switch.
    monkeypatch.setattr(probes, "precision_speedup", lambda *args: 0.5)
    with captured_log() as messages:
        resumed = _runner(tmp_path / "run", "train.precision=auto", "train.steps=30")
        resumed.train()
    assert "train.precision auto: bfloat16, as this run chose when it started" in messages
    assert resumed.config.train.precision == "bfloat16"


def test_the_xla_probe_runs_only_on_bucketed_shapes_and_leaves_the_run_unchanged(tmp_path):
    unbucketed = _runner(tmp_path / "unbucketed", "train.jit_compile=auto")
    with captured_log() as messages:
        assert unbucketed._choose_auto_settings(_strategy(1)) is False  # no scratch models
    assert unbucketed.config.train.jit_compile is False
    assert any("train.jit_compile auto: off (batch shapes are not bucketed" in m for m in messages)

    with captured_log() as messages:
        probed = _runner(tmp_path / "probed", *BUCKETED, "train.jit_compile=auto")
        probed.train()
    chosen = probed.config.train.jit_compile
    assert isinstance(chosen, bool)
    assert any("the train step ran" in m and "as fast with XLA" in m for m in messages)
    assert Runner.from_run_dir(tmp_path / "probed").config.train.jit_compile is chosen
    # The probe's scratch models do not shift the run's random state: the same weights as
    # a run given the probe's choice outright.
    explicit = _runner(tmp_path / "explicit", *BUCKETED, f"train.jit_compile={chosen}")
    explicit.train()
    for a, b in zip(
        probed.translator().model.get_weights(), explicit.translator().model.get_weights()
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_with_both_auto_the_step_is_timed_in_all_four_combinations(tmp_path, monkeypatch):
    """Precision and XLA interact, so with both auto and bucketed shapes the real step is
    timed in each combination: the fastest is taken when it clears the margin."""

    def timings(table):
        return lambda make_step, precision, jit_compile, batches: table[precision, jit_compile]

    plain = ("float32", False)
    base = {plain: 1.0, ("float32", True): 0.8, ("bfloat16", False): 0.85}
    for bf16_xla, choice in ((0.7, ("bfloat16", True)), (0.9, ("float32", True)), (0.88, plain)):
        if choice == plain:  # nothing 1.15 times as fast: float32 without XLA stays
            base = {**base, ("float32", True): 0.88, ("bfloat16", False): 0.88}
        monkeypatch.setattr(probes, "step_seconds", timings({**base, ("bfloat16", True): bf16_xla}))
        assert probes.choose_precision_and_jit_compile(None, [])[0] == choice
    monkeypatch.undo()

    # For real, on a tiny run: one log line with the four ratios, both choices recorded.
    with captured_log() as messages:
        runner = _runner(
            tmp_path / "run", *BUCKETED, "train.precision=auto", "train.jit_compile=auto"
        )
        runner.train()
    line = next(m for m in messages if m.startswith("train.precision and train.jit_compile auto"))
    for combination in ("float32 1.00x", "float32 with XLA", "bfloat16 ", "bfloat16 with XLA"):
        assert combination in line
    saved = Runner.from_run_dir(tmp_path / "run").config.train
    assert (saved.precision, saved.jit_compile) == (
        runner.config.train.precision,
        runner.config.train.jit_compile,
    )
    assert saved.precision in ("float32", "bfloat16") and isinstance(saved.jit_compile, bool)


def test_auto_means_float32_without_xla_for_several_replicas(tmp_path):
    """Each replica's process would measure for itself and might choose otherwise: with
    several, auto takes the plain settings (an explicit choice stays)."""
    runner = _runner(tmp_path / "run", "train.precision=auto", "train.jit_compile=auto")
    with captured_log() as messages:
        assert runner._choose_auto_settings(_strategy(2)) is False
    assert (runner.config.train.precision, runner.config.train.jit_compile) == ("float32", False)
    assert any("the probe measures one process; with 2 replicas" in m for m in messages)
    explicit = _runner(tmp_path / "run", "train.precision=bfloat16", "train.jit_compile=auto")
    explicit._choose_auto_settings(_strategy(2))
    assert explicit.config.train.precision == "bfloat16"
