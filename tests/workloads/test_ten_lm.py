"""The ten_lm workload: contract, learning, regularizer bookkeeping, checkpoint/restore."""
import math
import os
import typing

import pytest
import torch

from workloads.kit import loop
from workloads import ten_lm
from workloads.contract import ConfigError, LocalSession

torch.set_num_threads(1)

# Small enough for a few seconds of CPU per run.
SMALL = dict(corpus_bytes=60_000, seq_len=32, batch_size=8, epochs=1, steps_per_epoch=6,
             eval_windows=16, warmup_steps=2)


def run(tmp_path, name, **overrides) -> tuple[LocalSession, dict]:
    session = LocalSession(checkpoint_root=str(tmp_path / name))
    ten_lm.train({**SMALL, **overrides}, session)
    return session, final_params(session)


def final_params(session: LocalSession) -> dict:
    path = os.path.join(session.checkpoints[-1], loop.CHECKPOINT_MODEL)
    return torch.load(path, weights_only=True)


def assert_same_params(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)


def test_knobs_have_sweepable_types():
    allowed = {int, float, bool, str, list[int], typing.Optional[str], typing.Optional[float]}
    types = ten_lm.WORKLOAD.knob_types()
    assert set(types.values()) <= allowed
    for knob in ("preset", "energy_reg_weight", "use_hten", "hten_scales", "lr", "weight_decay",
                 "batch_size", "seq_len", "epochs", "steps_per_epoch", "seed", "data_path",
                 "corpus_bytes", "chunk_size", "lambda", "compute_every", "num_probes", "amp"):
        assert knob in types, knob
    assert types["hten_scales"] == list[int] and types["lambda"] is float
    cfg = ten_lm.WORKLOAD.resolve({"hten_scales": "1,2,4", "lambda": "0.5", "use_hten": "true"})
    assert cfg.hten_scales == [1, 2, 4] and cfg.lam == 0.5 and cfg.use_hten
    assert ten_lm.WORKLOAD.defaults.preset == "tiny" and ten_lm.WORKLOAD.defaults.hten_scales == [
        1, 2, 4, 8]
    assert dict(ten_lm.WORKLOAD.metrics) == {
        "val_ce": "minimize", "val_bpb": "minimize", "train_loss": "minimize",
        "energy": "minimize", "bias_entropy": "maximize"}


@pytest.mark.parametrize("overrides, knob", [
    (dict(preset="huge"), "preset"),
    (dict(use_hten=True, hten_scales=[1, 2, 4, 8, 16]), "hten_scales"),
    (dict(hten_scales=[2, 2]), "hten_scales"),
    (dict(energy_reg_weight=-1.0), "energy_reg_weight"),
    (dict(batch_size=0), "batch_size"),
    (dict(lr=0.0), "lr"),
])
def test_bad_knobs_raise_config_error(tmp_path, overrides, knob):
    with pytest.raises(ConfigError, match=knob):
        ten_lm.train({**SMALL, **overrides}, LocalSession())


def test_one_epoch_lowers_val_ce(tmp_path):
    knobs = dict(SMALL, steps_per_epoch=40, lr=3e-3)
    cfg = ten_lm.WORKLOAD.resolve(knobs)
    _, val = ten_lm.datasets(cfg)
    before = ten_lm.evaluate(ten_lm.build_model(cfg), val, cfg, LocalSession())
    session, _ = run(tmp_path, "learn", **knobs)
    (m,) = session.history
    assert before["val_ce"] > 5.0  # ≈ ln 256 = 5.55 nats at init
    assert m["val_ce"] < before["val_ce"] - 1.0
    assert m["val_bpb"] == pytest.approx(m["val_ce"] / math.log(2))
    for k in ("val_ce", "val_bpb", "train_loss", "energy", "bias_entropy", "epoch"):
        assert isinstance(m[k], float) and math.isfinite(m[k]), k
    assert 0.0 <= m["bias_entropy"] <= 8.0 and m["epoch"] == 1.0 and m["diverged"] == 0.0


def test_regularizer_off_is_bit_for_bit_the_baseline(tmp_path):
    base_s, base = run(tmp_path, "base")
    lam0_s, lam0 = run(tmp_path, "lam0", **{"lambda": 0.0, "compute_every": 2})
    every0_s, every0 = run(tmp_path, "every0", **{"lambda": 0.7, "compute_every": 0})
    assert_same_params(base, lam0)
    assert_same_params(base, every0)
    assert base_s.history == lam0_s.history == every0_s.history
    assert base_s.history[0]["probe_steps"] == 0.0


def test_probes_follow_compute_every_across_epochs(tmp_path):
    # steps 0..6 in epoch 1 (probes at 0, 3, 6), 7..13 in epoch 2 (9, 12)
    session, params = run(tmp_path, "probe", epochs=2, steps_per_epoch=7,
                          **{"lambda": 0.5, "compute_every": 3, "num_probes": 2})
    assert [m["probe_steps"] for m in session.history] == [3.0, 2.0]
    _, base = run(tmp_path, "base", epochs=2, steps_per_epoch=7)
    assert any(not torch.equal(params[k], base[k]) for k in params)  # the term did act
    assert all(math.isfinite(m["bias_entropy"]) for m in session.history)


def test_probes_are_content_free_and_seeded():
    g = ten_lm.seeded_generator(0, 1, 5)
    p = ten_lm.make_probes(4, 16, g)
    assert p.shape == (4, 16) and p.dtype == torch.long
    assert (p[:2] == p[:2, :1]).all()  # constant rows
    assert len(set(p[2].tolist())) > 4  # uniform random rows
    assert torch.equal(p, ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 1, 5)))
    assert not torch.equal(p, ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 0, 5)))
    # the global torch RNG (data order, dropout) is untouched
    torch.manual_seed(3)
    a = torch.rand(1)
    torch.manual_seed(3)
    ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 0, 0))
    assert torch.equal(a, torch.rand(1))


class Crash(Exception):
    pass


class CrashAfter(LocalSession):
    """Dies right after its n-th report (the checkpoint is already copied)."""

    def __init__(self, n, **kw):
        super().__init__(**kw)
        self.n = n

    def report(self, metrics, checkpoint_dir=None):
        super().report(metrics, checkpoint_dir)
        if len(self.history) == self.n:
            raise Crash


def test_resume_continues_at_next_epoch_and_matches_uninterrupted(tmp_path):
    knobs = dict(SMALL, epochs=2, steps_per_epoch=5)
    full_s, full = run(tmp_path, "full", **knobs)

    crashed = CrashAfter(1, checkpoint_root=str(tmp_path / "crashed"))
    with pytest.raises(Crash):
        ten_lm.train(knobs, crashed)
    resumed = LocalSession(checkpoint_root=str(tmp_path / "resumed"),
                           restored_checkpoint_dir=crashed.checkpoints[-1])
    ten_lm.train(knobs, resumed)

    assert [m["epoch"] for m in resumed.history] == [2.0]  # only the missing epoch ran
    assert resumed.history[0] == full_s.history[1]
    assert_same_params(final_params(resumed), full)
    opt_a = torch.load(os.path.join(resumed.checkpoints[-1], loop.CHECKPOINT_OPTIMIZER),
                       weights_only=True)
    opt_b = torch.load(os.path.join(full_s.checkpoints[-1], loop.CHECKPOINT_OPTIMIZER),
                       weights_only=True)
    for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and sa["step"] == sb["step"]


def test_non_finite_loss_reports_divergence_and_stops(tmp_path, monkeypatch):
    real_build = ten_lm.build_model

    def poisoned(cfg):
        model = real_build(cfg)
        with torch.no_grad():
            model.tok_emb.weight[0, 0] = float("nan")
        return model

    monkeypatch.setattr(ten_lm, "build_model", poisoned)
    session = LocalSession()
    ten_lm.train({**SMALL, "epochs": 3, "corpus_bytes": 20_000}, session)
    (m,) = session.history
    assert m["diverged"] == 1.0 and m["epoch"] == 1.0


def test_hten_variant_trains(tmp_path):
    session, _ = run(tmp_path, "hten", use_hten=True, hten_scales="1,4", steps_per_epoch=3)
    assert math.isfinite(session.history[0]["val_ce"])


def test_cli_smoke(capsys):
    assert ten_lm.main(["--smoke", "--set", "steps_per_epoch=2", "corpus_bytes=20000"]) == 0
    out = capsys.readouterr().out
    assert "val_bpb=" in out and "epoch=1" in out
    assert ten_lm.main(["--set", "lr=abc"]) == 2
