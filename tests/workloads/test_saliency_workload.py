"""The saliency workload in one process: knobs, learning, checkpoint/restore, divergence."""
import dataclasses
import math
import os
import typing

import pytest
import torch

import workloads.saliency as W
from workloads.contract import ConfigError, LocalSession
from workloads.kit.loop import PROBE_STEPS, load_checkpoint
from workloads.registry import get_workload

METRIC_SET = {"epoch", "diverged", PROBE_STEPS, *W.METRICS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Small, fast knobs sharing one generated dataset."""
    return {"num_images": 100, "ood_images": 12, "image_size": 32, "batch_size": 8,
            "width": 8, "lr": 3e-3, "num_probes": 4,
            "data_root": str(tmp_path_factory.mktemp("salroot"))}


def test_knobs_and_registry():
    wl = get_workload("saliency")
    assert wl is W.WORKLOAD and wl.name == "saliency"
    types = wl.knob_types()
    assert types["lambda"] is float and types["compute_every"] is int
    assert types["uniform_intensities"] == list[float]
    assert types["mit1003_dir"] == typing.Optional[str]
    allowed = {int, float, bool, str, list[float], typing.Optional[str]}
    assert set(types.values()) <= allowed
    defaults = wl.defaults
    assert defaults.lam == 0.0 and defaults.compute_every == 5 and defaults.probes == "neutral"
    assert defaults.num_probes == 16 and defaults.uniform_intensities == [0.0, 0.5, 1.0]
    cfg = wl.resolve({"lambda": "0.25", "compute_every": 10.0, "skip_bad": "true"})
    assert cfg.lam == 0.25 and cfg.compute_every == 10 and cfg.skip_bad is True
    assert wl.public_values(cfg)["lambda"] == 0.25 and "lam" not in wl.public_values(cfg)
    assert "lam=0.25" in repr(cfg) and cfg == dataclasses.replace(cfg)
    assert wl.defaults.uniform_intensities is not W.SaliencyKnobs().uniform_intensities
    with pytest.raises(ConfigError, match="unknown knob"):
        wl.resolve({"lamda": 1.0})
    assert wl.resolve({"uniform_intensities": "0,1"}).uniform_intensities == [0.0, 1.0]
    with pytest.raises(ConfigError, match="uniform_intensities"):
        wl.resolve({"uniform_intensities": [0.5, 3.0]})
    with pytest.raises(ConfigError, match="image_size"):
        wl.resolve({"image_size": 4})


def test_smoke_and_input_check(tiny, tmp_path):
    wl = W.WORKLOAD
    assert set(wl.smoke) <= set(wl.knob_types())
    assert not {"lambda", "compute_every"} & set(wl.smoke)  # never overrides the searched knobs
    wl.resolve(wl.smoke)
    assert wl.check(wl.defaults) == []
    root = W.synthetic_root(wl.resolve({"data_root": tiny["data_root"], **wl.smoke}))
    W.synthetic.ensure_generated(root, seed=0, num_images=40, ood_images=12)
    good = wl.resolve({"mit1003_dir": os.path.join(root, "MIT1003"),
                       "cat2000_dir": os.path.join(root, "CAT2000")})
    assert wl.check(good) == []
    (tmp_path / "mit" / "ALLSTIMULI").mkdir(parents=True)
    bad = wl.resolve({"mit1003_dir": str(tmp_path / "mit"), "cat2000_dir": str(tmp_path / "no")})
    problems = wl.check(bad)
    assert len(problems) == 2
    assert any("mit1003_dir" in p and "ALLFIXATIONMAPS" in p for p in problems)
    assert any("cat2000_dir" in p and "missing" in p and "/no" in p for p in problems)
    with pytest.raises(ConfigError, match="'lr'"):
        wl.resolve({"lr": -1.0})


def test_short_training_raises_val_ig_and_reports_every_metric(tiny):
    session = LocalSession()
    W.train({**tiny, "epochs": 3, "lambda": 0.1, "compute_every": 2}, session)
    assert [h["epoch"] for h in session.history] == [1.0, 2.0, 3.0]
    for h in session.history:
        assert set(h) == METRIC_SET and h["diverged"] == 0.0
        assert all(torch.isfinite(torch.tensor(v)) for v in h.values())
        for kind in ("uniform", "neutral"):
            assert 0.0 < h[f"bias_entropy_{kind}_frac"] <= 1.0 + 1e-6
        assert h["probe_entropy_neutral"] <= h["bias_entropy_neutral"] + 1e-4  # mixing adds entropy
        assert h["val_ig"] < h["val_ig_oracle"] and h["ood_ig"] < h["ood_ig_oracle"]
        assert 0.5 <= h["val_auc"] <= 1.0 and 0.5 <= h["ood_auc"] <= 1.0
    assert session.history[-1]["val_ig"] > 0.2  # bits/fixation above the center bias
    assert session.history[-1]["train_nll"] < session.history[0]["train_nll"]


def test_checkpoint_restore_matches_an_uninterrupted_run(tiny, tmp_path):
    knobs = {**tiny, "epochs": 2, "steps_per_epoch": 3, "lambda": 0.5, "compute_every": 2}
    full = LocalSession(checkpoint_root=str(tmp_path / "full"))
    W.train(knobs, full)
    first = LocalSession(checkpoint_root=str(tmp_path / "first"))
    W.train({**knobs, "epochs": 1}, first)
    resumed = LocalSession(restored_checkpoint_dir=first.checkpoints[-1],
                           checkpoint_root=str(tmp_path / "resumed"))
    W.train(knobs, resumed)
    assert [h["epoch"] for h in resumed.history] == [2.0]  # epoch 1 was not repeated
    assert resumed.history[0] == full.history[1]
    a, b = full.checkpoints[-1], resumed.checkpoints[-1]
    for name in ("model.pt", "optimizer.pt"):
        sa = torch.load(os.path.join(a, name), weights_only=True)
        sb = torch.load(os.path.join(b, name), weights_only=True)
        if name == "model.pt":
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        else:
            assert sa["param_groups"] == sb["param_groups"]
            for k, st in sa["state"].items():
                assert all(torch.equal(st[x], sb["state"][k][x]) for x in st)
    model = W.SaliencyModel(W.ModelConfig(width=8))
    opt = W.configure_optimizers(model, lr=1e-3, weight_decay=0.0)
    state = load_checkpoint(b, model, opt, torch.device("cpu"))
    assert {k: state[k] for k in ("epoch", "step")} == {"epoch": 1, "step": 6}


def test_divergence_reports_and_stops(tiny, monkeypatch):
    real = W.training_losses

    def exploding(*args, **kwargs):
        out = real(*args, **kwargs)
        if kwargs["step"] >= 2:
            out["loss"] = out["loss"] * float("nan")
        return out
    monkeypatch.setattr(W, "training_losses", exploding)
    session = LocalSession()
    W.train({**tiny, "epochs": 3, "steps_per_epoch": 2}, session)
    assert [h["diverged"] for h in session.history] == [0.0, 1.0]
    assert session.history[-1]["epoch"] == 2.0


def test_amp_runs(tiny):
    session = LocalSession()
    W.train({**tiny, "epochs": 1, "steps_per_epoch": 2, "amp": True, "lambda": 0.5,
             "compute_every": 1}, session)
    assert session.history[0]["diverged"] == 0.0
    assert all(math.isfinite(v) for v in session.history[0].values())


def test_batch_larger_than_the_data_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="batch_size"):
        W.train({**tiny, "batch_size": 4096, "epochs": 1}, LocalSession())


def test_cli_smoke(tiny, capsys):
    assert W.main(["--smoke", "--set", f"data_root={tiny['data_root']}"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch=")]
    assert len(lines) == 2 and all("val_ig=" in ln for ln in lines)


def test_lambda_zero_is_bit_for_bit_the_unregularized_run(tiny):
    runs = []
    for knobs in ({"lambda": 0.0, "compute_every": 2}, {"lambda": 0.7, "compute_every": 0},
                  {"lambda": 0.0, "compute_every": 0, "probes": "uniform"}):
        session = LocalSession()
        W.train({**tiny, "epochs": 1, "steps_per_epoch": 4, **knobs}, session)
        runs.append(session.history)
    assert runs[0] == runs[1] == runs[2] and runs[0][0]["probe_steps"] == 0.0
    session = LocalSession()
    W.train({**tiny, "epochs": 1, "steps_per_epoch": 4, "lambda": 0.7, "compute_every": 2},
            session)
    assert session.history[0]["probe_steps"] == 2.0 and session.history != runs[0]
