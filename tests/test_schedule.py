import pytest

from nnunetv2_morse.config import MorseConfig
from nnunetv2_morse.schedule import awa_weight


def test_linear_awa_values():
    cfg = MorseConfig()
    T = 1000
    assert awa_weight(0, T, cfg) == 0.0
    assert awa_weight(T // 2, T, cfg) == 0.0
    assert awa_weight(3 * T // 4, T, cfg) == pytest.approx(0.1 * 0.25)
    assert awa_weight(T, T, cfg) == pytest.approx(0.05)
    assert awa_weight(T // 2 + 1, T, cfg) == pytest.approx(0.1 / T)


def test_step_and_off():
    step = MorseConfig(awa="step")
    off = MorseConfig(awa="off", rend_loss_weight=0.3)
    assert awa_weight(499, 1000, step) == 0.0 and awa_weight(501, 1000, step) == 0.1
    assert awa_weight(0, 1000, off) == 0.3 and awa_weight(999, 1000, off) == 0.3


def test_rejects_empty_schedule():
    with pytest.raises(ValueError, match="total_iterations"):
        awa_weight(0, 0, MorseConfig())
