"""Presets land on the size table (counted on the meta device) and bad configs say what is wrong."""
import pytest

from ten_core import PRESET_PARAMS, PRESETS, TENConfig, count_parameters


@pytest.mark.parametrize("name", list(PRESET_PARAMS))
def test_preset_sizes_within_10_percent(name):
    n = count_parameters(TENConfig.from_preset(name))  # meta device: nothing allocated
    target = PRESET_PARAMS[name]
    assert abs(n - target) <= 0.10 * target, f"{name}: {n:,} vs {target:,}"


def test_tiny_is_tiny():
    assert 100_000 <= count_parameters(TENConfig.from_preset("tiny")) <= 1_000_000


def test_preset_regularization_and_hten():
    for name in ("nano", "micro", "small"):
        assert TENConfig.from_preset(name).energy_reg_weight == 0.01
        assert not TENConfig.from_preset(name).use_hten
    for name in ("medium", "large", "xlarge"):
        assert TENConfig.from_preset(name).energy_reg_weight == 0.02
    for name in ("large", "xlarge"):
        assert TENConfig.from_preset(name).use_hten
    assert set(PRESETS) == {"tiny", *PRESET_PARAMS}


@pytest.mark.parametrize("kwargs, field", [
    (dict(hten_scales=(0, 2)), "hten_scales"),
    (dict(hten_scales=(-1, 2)), "hten_scales"),
    (dict(hten_scales=(2, 2)), "hten_scales"),
    (dict(hten_scales=()), "hten_scales"),
    (dict(use_hten=True, n_eigen=48, hten_scales=(1, 2, 4, 8, 16)), "hten_scales"),
    (dict(energy_reg_weight=-0.1), "energy_reg_weight"),
    (dict(d_model=0), "d_model"),
    (dict(n_eigen=30, n_heads=4), "n_eigen"),
    (dict(use_hten=True, n_eigen=24, n_heads=8, hten_scales=(1, 2)), "n_heads"),
    (dict(chunk_size=1), "chunk_size"),
    (dict(dropout=1.5), "dropout"),
    (dict(scan_method="fft"), "scan_method"),
    (dict(decay_init="s4d"), "decay_init"),
    (dict(memory_range=(1.0, 128.0)), "memory_range"),
    (dict(memory_range=(64.0, 8.0)), "memory_range"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        TENConfig(**kwargs)
    assert "got" in str(info.value)  # says what it got (and what is allowed)


def test_unknown_preset_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="preset") as info:
        TENConfig.from_preset("huge")
    assert "nano" in str(info.value) and "tiny" in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ValueError) as info:
        TENConfig(d_model=0, energy_reg_weight=-1.0, hten_scales=(3, 3))
    msg = str(info.value)
    assert "d_model" in msg and "energy_reg_weight" in msg and "hten_scales" in msg


def test_scales_accept_lists_and_divisible_counts():
    cfg = TENConfig(use_hten=True, n_eigen=48, n_heads=2, hten_scales=[1, 2, 4])
    assert cfg.hten_scales == (1, 2, 4) and cfg.eigen_per_scale == 16


@pytest.mark.parametrize("preset, scales", [("tiny", (1, 2)), ("tiny", (1, 2, 4)),
                                            ("tiny", (1, 2, 4, 8)), ("nano", (1, 2, 4, 8))])
def test_hten_and_ten_have_equal_parameter_budgets(preset, scales):
    """HTEN splits the K eigenstates over its scales (K/|S| per core), so it adds cores, not
    parameters: the counts differ only by the smaller block-diagonal resonance (< 1 %)."""
    ten = count_parameters(TENConfig.from_preset(preset))
    hten = count_parameters(TENConfig.from_preset(preset, use_hten=True, hten_scales=scales))
    assert abs(hten - ten) <= 0.01 * ten, (ten, hten)
