"""The ten_lm workload: contract, learning, regularizer bookkeeping, checkpoint/restore."""
import math
import os
import typing

import pytest
import torch

from workloads.kit import loop
from workloads import ten_lm
from workloads.contract import ConfigError, LocalSession
from workloads.corpus import stdlib_manifest
from workloads.text_data import entropy_bits, unigram

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
                 "corpus_bytes", "chunk_size", "lambda", "compute_every", "num_probes", "amp",
                 "corpus", "decay_init", "stdlib_sha256"):
        assert knob in types, knob
    assert types["hten_scales"] == list[int] and types["lambda"] is float
    cfg = ten_lm.WORKLOAD.resolve({"hten_scales": "1,2,4", "lambda": "0.5", "use_hten": "true"})
    assert cfg.hten_scales == [1, 2, 4] and cfg.lam == 0.5 and cfg.use_hten
    assert ten_lm.WORKLOAD.defaults.preset == "tiny" and ten_lm.WORKLOAD.defaults.hten_scales == [
        1, 2, 4, 8]
    metrics = dict(ten_lm.WORKLOAD.metrics)
    assert {k: metrics[k] for k in ("val_ce", "val_bpb", "train_loss", "energy", "bias_entropy")
            } == {"val_ce": "minimize", "val_bpb": "minimize", "train_loss": "minimize",
                  "energy": "minimize", "bias_entropy": "maximize"}
    for name in ("bias_entropy_rel", "n_params", "lambda_abs_p50", "lambda_abs_p90",
                 "memory_p10", "memory_p50", "memory_p90", "memory_p50_s4", "memory_p90_s8"):
        assert name in metrics, name  # listed, so MLflow logs them


def test_defaults_use_the_stdlib_corpus_and_record_its_hash():
    cfg = ten_lm.WORKLOAD.defaults
    assert cfg.corpus == "stdlib" and cfg.data_path is None
    assert cfg.stdlib_sha256 == stdlib_manifest()["sha256"]
    assert ten_lm.WORKLOAD.public_values(cfg)["stdlib_sha256"] == cfg.stdlib_sha256  # a param
    assert ten_lm.check(cfg) == []
    assert ten_lm.check(ten_lm.WORKLOAD.resolve({"stdlib_sha256": cfg.stdlib_sha256[:12]})) == []
    assert ten_lm.check(ten_lm.WORKLOAD.resolve({"stdlib_sha256": ""})) == []  # unchecked
    (problem,) = ten_lm.check(ten_lm.WORKLOAD.resolve({"stdlib_sha256": "0" * 64}))
    assert "stdlib_sha256" in problem and stdlib_manifest()["python"] in problem
    with pytest.raises(ConfigError, match="stdlib_sha256"):  # a worker with another corpus
        ten_lm.train({**SMALL, "stdlib_sha256": "0" * 64}, LocalSession())
    # not the stdlib corpus: the hash is not checked
    assert ten_lm.check(ten_lm.WORKLOAD.resolve({"stdlib_sha256": "0" * 64,
                                                 "corpus": "generated"})) == []


@pytest.mark.parametrize("decay_init", ["paper", "long"])
def test_decay_init_knob_reaches_the_model(decay_init):
    cfg = ten_lm.WORKLOAD.resolve({"decay_init": decay_init, "seq_len": 64})
    model_cfg = ten_lm.model_config(cfg)
    assert model_cfg.decay_init == decay_init and model_cfg.memory_range == (1.05, 64.0)
    lam = torch.sigmoid(ten_lm.build_model(cfg).blocks[0].mixer.core.alpha.detach())
    assert (lam.max() <= 0.5) if decay_init == "paper" else (lam.max() > 0.9)


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
    train, val = ten_lm.datasets(cfg)
    before = ten_lm.evaluate(ten_lm.build_model(cfg), val, cfg, LocalSession(),
                             unigram(train.data))
    session, _ = run(tmp_path, "learn", **knobs)
    (m,) = session.history
    assert before["val_ce"] > 5.0  # ≈ ln 256 = 5.55 nats at init
    assert m["val_ce"] < before["val_ce"] - 1.0
    assert m["val_bpb"] == pytest.approx(m["val_ce"] / math.log(2))
    for k in ("val_ce", "val_bpb", "train_loss", "energy", "bias_entropy", "epoch",
              "bias_entropy_rel", "n_params", "lambda_abs_p50", "memory_p10", "memory_p90"):
        assert isinstance(m[k], float) and math.isfinite(m[k]), k
    assert 0.0 <= m["bias_entropy"] <= 8.0 and m["epoch"] == 1.0 and m["diverged"] == 0.0
    assert m["bias_entropy_rel"] == pytest.approx(
        m["bias_entropy"] / entropy_bits(unigram(train.data)))
    assert m["n_params"] == ten_lm.build_model(cfg).num_params()
    assert 1.0 < m["memory_p10"] <= m["memory_p50"] <= m["memory_p90"]
    assert "memory_p50_s1" not in m  # per-scale quantiles: HTEN only


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


def test_probes_are_unigram_draws_and_seeded():
    probs = unigram(ten_lm.datasets(ten_lm.WORKLOAD.resolve(SMALL))[0].data)
    g = ten_lm.seeded_generator(0, 1, 5)
    p = ten_lm.make_probes(4, 16, g, probs)
    assert p.shape == (4, 16) and p.dtype == torch.long
    assert (probs[p] > 0).all()  # only bytes the corpus uses
    assert torch.equal(p, ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 1, 5), probs))
    assert not torch.equal(p, ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 0, 5), probs))
    # the global torch RNG (data order, dropout) is untouched
    torch.manual_seed(3)
    a = torch.rand(1)
    torch.manual_seed(3)
    ten_lm.make_probes(4, 16, ten_lm.seeded_generator(0, 0, 0), probs)
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


@pytest.mark.parametrize("decay_init", ["paper", "long"])
def test_hten_variant_trains_and_reports_each_scale(tmp_path, decay_init):
    session, _ = run(tmp_path, "hten", use_hten=True, hten_scales="1,4", steps_per_epoch=3,
                     decay_init=decay_init)
    m = session.history[0]
    assert math.isfinite(m["val_ce"])
    assert m["memory_p50_s4"] >= 4.0 * 1.05 and m["memory_p10_s1"] >= 1.0  # in tokens
    assert m["memory_p90"] >= m["memory_p90_s1"]


def test_cli_smoke(capsys):
    assert ten_lm.main(["--smoke", "--set", "steps_per_epoch=2", "corpus_bytes=20000"]) == 0
    out = capsys.readouterr().out
    assert "val_bpb=" in out and "epoch=1" in out
    assert ten_lm.main(["--set", "lr=abc"]) == 2
