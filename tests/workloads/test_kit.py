"""The training kit and the contract: typed knobs, layering, the one CLI."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from workloads import kit, ten_lm
from workloads import saliency as W
from workloads.contract import Workload
from workloads.kit import LoopKnobs, at_least, knob
from workloads.kit.cli import main as cli_main
from workloads.knobs import ConfigError, Interval, OneOf, knob_types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_model_packages_import_nothing_from_the_layers_above():
    """Every module of ten_core/, saliency/ and regularizers/, in a fresh interpreter: none of
    workloads, sweeps, ray or mlflow gets imported."""
    code = """
import importlib, json, pkgutil, sys
mods = []
for pkg in ("ten_core", "saliency", "regularizers"):
    p = importlib.import_module(pkg)
    mods += [pkg] + [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(p.__path__)]
for m in mods:
    importlib.import_module(m)
bad = sorted(n for n in sys.modules if n.split(".")[0] in ("workloads", "sweeps", "ray", "mlflow"))
print(json.dumps({"modules": mods, "bad": bad}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    assert "saliency.regularizer" in result["modules"] and "ten_core.scan" in result["modules"]
    assert result["bad"] == []


def test_knob_alias_is_the_public_name_and_the_field_is_typed():
    wl = W.WORKLOAD
    cfg = wl.resolve({"lambda": "0.5"})
    assert cfg.lam == 0.5 and knob_types(W.SaliencyKnobs)["lambda"] is float
    assert "lam" not in wl.knob_types() and wl.public_values(cfg)["lambda"] == 0.5
    with pytest.raises(ConfigError, match="unknown knob"):
        wl.resolve({"lam": 0.5})


def test_every_problem_is_reported_at_once_and_values_are_cut():
    with pytest.raises(ConfigError) as e:
        ten_lm.WORKLOAD.resolve({"lr": 0.0, "batch_size": "x" * 5000, "nope": 1,
                                 "hten_scales": [2, 2]})
    text = str(e.value)
    for part in ("'lr': must be > 0", "'batch_size': expected int", "unknown knob(s) ['nope']",
                 "'hten_scales': must be a non-empty list of distinct"):
        assert part in text, part
    assert len(text) < 1000  # the 5000-character value is not echoed


def test_contract_requires_the_epochs_and_seed_knobs():
    @dataclasses.dataclass
    class NoSeed:
        epochs: int = 1

    with pytest.raises(TypeError, match="'seed'"):
        Workload(name="x", knobs=NoSeed, metrics={}, train=lambda c, s: None)
    with pytest.raises(TypeError, match="reserves"):
        Workload(name="x", knobs=LoopKnobs, metrics={"epoch": "maximize"},
                 train=lambda c, s: None)


def test_presets_own_energy_reg_weight_unless_the_user_sets_it():
    medium = ten_lm.WORKLOAD.resolve({"preset": "medium"})
    assert medium.energy_reg_weight is None
    assert ten_lm.model_config(medium).energy_reg_weight == 0.02  # the preset's value
    assert ten_lm.model_config(ten_lm.WORKLOAD.resolve({})).energy_reg_weight == 0.01  # tiny's
    mine = ten_lm.WORKLOAD.resolve({"preset": "medium", "energy_reg_weight": 0.5})
    assert ten_lm.model_config(mine).energy_reg_weight == 0.5


@pytest.mark.parametrize("argv, needle", [
    (["--set", "foo=1"], "unknown knob(s) ['foo']"),
    (["--set", "foo"], "--set expects KNOB=VALUE"),
    (["--set", "lr=abc"], "knob 'lr': expected float"),
    (["--set", "hten_scales=0,1"], "knob 'hten_scales': must be"),
])
def test_cli_bad_set_is_exit_2_with_one_line(capsys, argv, needle):
    assert ten_lm.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_cli_bad_data_directory_is_exit_2_naming_the_path(tmp_path, capsys):
    (tmp_path / "mit" / "ALLSTIMULI").mkdir(parents=True)
    (tmp_path / "mit" / "ALLSTIMULI" / "a.jpeg").write_bytes(b"not a jpeg")
    (tmp_path / "mit" / "ALLFIXATIONMAPS").mkdir()
    (tmp_path / "mit" / "ALLFIXATIONMAPS" / "a_fixPts.jpg").write_bytes(b"nor this")
    rc = W.main(["--smoke", "--set", f"mit1003_dir={tmp_path / 'mit'}",
                 f"cat2000_dir={tmp_path / 'cat'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "mit1003_dir" in err[0] and "a.jpeg" in err[0] and "cat2000_dir" in err[0]


def test_cli_help_lists_every_knob_with_its_domain(capsys):
    with pytest.raises(SystemExit):
        cli_main(ten_lm.WORKLOAD, ["--help"])
    out = capsys.readouterr().out
    assert "lambda = 0.0" in out and "(one of tiny, nano" in out and "(>= 0)" in out


def test_domains_describe_what_they_allow():
    assert Interval(lo=0, lo_open=True).describe() == "> 0"
    assert kit.between(0, 1, hi_open=True).describe() == "in [0, 1)"
    assert not kit.FINITE.contains(float("nan")) and kit.FINITE.contains(-3.0)
    assert OneOf(("a", "b")).invalid_example() not in ("a", "b")
    for domain in (at_least(1), kit.above(0), kit.DISTINCT_POSITIVE_INTS, OneOf((1, 2)),
                   kit.EachIn(kit.between(0, 1))):
        assert not domain.contains(domain.invalid_example()), domain


def test_a_knob_default_outside_its_domain_is_a_bug_reported_at_resolve():
    @dataclasses.dataclass
    class Bad(LoopKnobs):
        width: int = knob(0, at_least(1))

    wl = kit.make_workload(name="bad", knobs=Bad, metrics={}, setup=lambda c, s: None)
    with pytest.raises(ConfigError, match="'width': must be >= 1"):
        wl.resolve({})
