"""Learning-rate schedules against their formulas, step by step."""

import math

import pytest

from transformer_tf.config import ConfigError, TrainConfig, config_from_dict
from transformer_tf.training.schedules import InverseSqrtSchedule, NoamSchedule, make_schedule


@pytest.mark.parametrize("step", [0, 1, 99, 399, 400, 1000, 20000])
def test_noam_is_the_papers_formula(step):
    # lrate = d_model^-0.5 * min(n^-0.5, n * warmup^-1.5), n = step + 1 (Keras counts from 0)
    n = step + 1
    expected = 2.0 * 512**-0.5 * min(n**-0.5, n * 400**-1.5)
    assert float(NoamSchedule(512, warmup_steps=400, scale=2.0)(step)) == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.002 / 400),
        (199, 0.002 * 200 / 400),
        (399, 0.002),
        (1599, 0.002 * 0.5),
        (39999, 0.002 * 0.1),
    ],
)
def test_inverse_sqrt_warms_up_linearly_to_the_peak_then_decays(step, expected):
    assert float(InverseSqrtSchedule(0.002, 400)(step)) == pytest.approx(expected, rel=1e-5)


def test_the_config_names_the_schedule():
    assert isinstance(make_schedule(TrainConfig(schedule="noam"), 512), NoamSchedule)
    inverse = make_schedule(
        TrainConfig(schedule="inverse_sqrt", learning_rate=0.003, warmup_steps=100), 512
    )
    assert float(inverse(99)) == pytest.approx(0.003)
    assert make_schedule(TrainConfig(schedule="constant", learning_rate=0.01), 512) == 0.01
    assert math.isclose(float(NoamSchedule(512).get_config()["warmup_steps"]), 4000)


@pytest.mark.parametrize(
    "step, factor",
    [(0, 1.0), (599, 1.0), (600, 1.0), (800, 0.5), (999, 0.0025), (1000, 0.0), (1200, 0.0)],
)
def test_cooldown_takes_the_rate_linearly_to_zero_over_the_last_steps(step, factor):
    config = TrainConfig(
        schedule="inverse_sqrt",
        learning_rate=0.002,
        warmup_steps=100,
        steps=1000,
        cooldown_steps=400,
    )
    expected = float(InverseSqrtSchedule(0.002, 100)(step)) * factor
    assert float(make_schedule(config, 128)(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)
    constant = TrainConfig(schedule="constant", learning_rate=0.01, steps=1000, cooldown_steps=400)
    assert float(make_schedule(constant, 128)(step)) == pytest.approx(
        0.01 * factor, rel=1e-5, abs=1e-12
    )


@pytest.mark.parametrize(
    "cooldown, message", [(-1, "must be 0 or more"), (2000, "at most 'train.steps'")]
)
def test_a_cooldown_outside_the_training_is_a_config_error(cooldown, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"train": {"steps": 1000, "cooldown_steps": cooldown}})
