"""The training kit and the contract: typed knobs, layering, the one CLI."""
import dataclasses
import json
import os
import subprocess
import sys
import time

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
    with pytest.raises(TypeError, match="'data_seed'"):  # a declared data seed must exist
        Workload(name="x", knobs=LoopKnobs, metrics={}, train=lambda c, s: None,
                 data_seed_knob="data_seed")
    assert W.WORKLOAD.data_seed_knob == "data_seed"


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


# --------------------------------------------------------------------------------------------
# Resume: corrupt checkpoints fall back to older ones, then to a fresh start; a finished run
# reports its saved final metrics again (issue 13 d, e)
# --------------------------------------------------------------------------------------------
RESUME_KNOBS = {"epochs": 3, "n_train": 128, "n_val": 64, "hidden": 16, "batch_size": 32,
                "dropout": 0.1, "weight_decay": 0.01}


def _train_custom(root, knobs=RESUME_KNOBS, **session_kw):
    from examples import custom_workload as CW
    from workloads.contract import LocalSession

    session = LocalSession(checkpoint_root=str(root), **session_kw)
    CW.WORKLOAD.train(knobs, session)
    return session


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """3 epochs in one go: checkpoints epoch_0001..epoch_0003 and three reports."""
    return _train_custom(tmp_path_factory.mktemp("full"))


def _copies(uninterrupted, dst, *epochs):
    import shutil
    return [shutil.copytree(uninterrupted.checkpoints[e - 1], str(dst / f"epoch{e}"))
            for e in epochs]


def _assert_same_final_state(a_dir, b_dir):
    import torch
    from workloads.kit.loop import CHECKPOINT_MODEL, CHECKPOINT_OPTIMIZER
    a = torch.load(os.path.join(a_dir, CHECKPOINT_MODEL), weights_only=True)
    b = torch.load(os.path.join(b_dir, CHECKPOINT_MODEL), weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(os.path.join(a_dir, CHECKPOINT_OPTIMIZER), weights_only=True)
    ob = torch.load(os.path.join(b_dir, CHECKPOINT_OPTIMIZER), weights_only=True)
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for k, st in oa["state"].items():
        assert all(torch.equal(st[x], ob["state"][k][x]) for x in st)


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _warnings(err):
    lines = [line for line in err.splitlines() if line.startswith("WARNING:")]
    assert all(len(line) <= 400 for line in lines), lines
    return lines


def test_truncated_latest_checkpoint_resumes_from_the_previous_one(uninterrupted, tmp_path,
                                                                   capsys):
    from workloads.kit.loop import CHECKPOINT_FALLBACKS, CHECKPOINT_MODEL
    ep2, ep1 = _copies(uninterrupted, tmp_path, 2, 1)
    _truncate(os.path.join(ep2, CHECKPOINT_MODEL))
    capsys.readouterr()
    resumed = _train_custom(tmp_path / "resumed", restored_checkpoint_dirs=[ep2, ep1])
    assert [h["epoch"] for h in resumed.history] == [2.0, 3.0]  # continued after epoch 1
    for got, want in zip(resumed.history, uninterrupted.history[1:]):
        assert got.pop(CHECKPOINT_FALLBACKS) == 1.0  # every report of the run says so
        assert got == want
    _assert_same_final_state(resumed.checkpoints[-1], uninterrupted.checkpoints[-1])
    lines = _warnings(capsys.readouterr().err)
    assert any(ep2 in line and "skipping" in line and "trying an older one" in line
               for line in lines), lines


def test_every_checkpoint_corrupt_starts_from_scratch(uninterrupted, tmp_path, capsys):
    from workloads.kit.loop import CHECKPOINT_FALLBACKS, CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE
    ep2, ep1 = _copies(uninterrupted, tmp_path, 2, 1)
    with open(os.path.join(ep2, CHECKPOINT_STATE), "w") as f:
        f.write('{"epoch": 1, "st')                       # bad JSON
    os.remove(os.path.join(ep1, CHECKPOINT_OPTIMIZER))    # a missing file
    capsys.readouterr()
    resumed = _train_custom(tmp_path / "resumed", restored_checkpoint_dirs=[ep2, ep1])
    assert [h.pop(CHECKPOINT_FALLBACKS) for h in resumed.history] == [2.0, 2.0, 2.0]
    assert resumed.history == uninterrupted.history  # the fresh start is the uninterrupted run
    _assert_same_final_state(resumed.checkpoints[-1], uninterrupted.checkpoints[-1])
    lines = _warnings(capsys.readouterr().err)
    assert any(ep2 in line and "JSONDecodeError" in line for line in lines), lines
    assert any(ep1 in line and "starting from scratch" in line for line in lines), lines


def test_a_finished_checkpoint_reports_its_saved_metrics_once(uninterrupted, tmp_path):
    (ep3,) = _copies(uninterrupted, tmp_path, 3)
    # the plain restored_checkpoint_dir of LocalSession users still works
    resumed = _train_custom(tmp_path / "resumed", restored_checkpoint_dir=ep3)
    assert resumed.history == [uninterrupted.history[-1]]
    assert resumed.checkpoints == []  # nothing new to save


def test_an_old_finished_checkpoint_without_metrics_reruns_its_last_epoch(uninterrupted,
                                                                          tmp_path):
    """Checkpoints written before state.json kept the metrics: the previous one is used (not
    counted as a fallback) and the last epoch re-run, reproducing its metrics and weights."""
    from workloads.kit.loop import CHECKPOINT_STATE
    ep3, ep2 = _copies(uninterrupted, tmp_path, 3, 2)
    path = os.path.join(ep3, CHECKPOINT_STATE)
    with open(path) as f:
        state = json.load(f)
    assert state.pop("metrics") == uninterrupted.history[-1]
    with open(path, "w") as f:
        json.dump(state, f)
    resumed = _train_custom(tmp_path / "resumed", restored_checkpoint_dirs=[ep3, ep2])
    assert resumed.history == [uninterrupted.history[-1]]
    _assert_same_final_state(resumed.checkpoints[-1], uninterrupted.checkpoints[-1])


def _ddp_resume_worker(rank, init_file, candidates, out_dir):
    from examples import custom_workload as CW
    from tests.workloads.gloo import gloo_group
    from workloads.contract import LocalSession

    with gloo_group(init_file, rank, 2):
        session = LocalSession(world_size=2, rank=rank, restored_checkpoint_dirs=candidates[rank])
        CW.WORKLOAD.train(RESUME_KNOBS, session)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(session.history, f)


def test_ddp_ranks_agree_on_the_checkpoint_when_one_rank_cannot_read_it(uninterrupted,
                                                                        tmp_path):
    """Rank 1's copy of the latest checkpoint is truncated, rank 0's is fine (as on two nodes):
    both ranks must resume from the previous one, or their collectives would not pair up."""
    import torch.multiprocessing as mp
    from workloads.kit.loop import CHECKPOINT_FALLBACKS, CHECKPOINT_MODEL
    (good2,) = _copies(uninterrupted, tmp_path / "r0", 2)
    bad2, ep1 = _copies(uninterrupted, tmp_path / "r1", 2, 1)
    _truncate(os.path.join(bad2, CHECKPOINT_MODEL))
    ctx = mp.start_processes(_ddp_resume_worker, nprocs=2, join=False, start_method="spawn",
                             args=(str(tmp_path / "store"), [[good2, ep1], [bad2, ep1]],
                                   str(tmp_path)))
    try:
        deadline = time.time() + 120
        while not ctx.join(timeout=1):
            assert time.time() < deadline, "the ranks did not finish (mismatched collectives?)"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.json") as f:
            history = json.load(f)
        assert [(h["epoch"], h[CHECKPOINT_FALLBACKS]) for h in history] == [(2.0, 1.0),
                                                                          (3.0, 1.0)], rank


def test_older_checkpoints_are_listed_newest_first_through_the_filesystem(tmp_path):
    import pyarrow.fs
    import ray.train

    from sweeps.ray_session import older_checkpoints, restore_candidates
    names = ["checkpoint_2025-01-01_10-00-00.000001", "checkpoint_2025-01-01_10-00-05.000002",
             "checkpoint_2025-01-01_10-00-09.000003", "checkpoint_2025-01-01_10-00-12.000004"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_text(json.dumps({"name": name}))
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")  # a file, not a checkpoint
    (tmp_path / "other").mkdir()
    latest = str(tmp_path / names[2])  # names[3]: newer, never registered
    assert older_checkpoints(pyarrow.fs.LocalFileSystem(), latest) == [
        str(tmp_path / names[1]), str(tmp_path / names[0])]
    dirs = restore_candidates(ray.train.Checkpoint(latest))
    assert len(dirs) == 3 and [dirs.label(i) for i in range(3)] == [
        latest, str(tmp_path / names[1]), str(tmp_path / names[0])]
    with open(os.path.join(dirs[1], "state.json")) as f:  # copied to local disk on demand
        assert json.load(f) == {"name": names[1]}
    assert len(restore_candidates(None)) == 0


def test_restore_reads_local_checkpoints_in_place_and_removes_downloaded_copies(
        uninterrupted, tmp_path, monkeypatch):
    """Ray's Checkpoint.to_directory() left a /tmp/checkpoint_tmp_* copy on every restore: a
    local checkpoint is now read where it is, a remote one (here a SubTreeFileSystem, which is
    not the local filesystem) is copied into a private temp dir that the restore removes."""
    import tempfile

    import pyarrow.fs
    import ray.train

    from sweeps.ray_session import CheckpointDirs
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ep2, ep1 = _copies(uninterrupted, tmp_path, 2, 1)

    local = CheckpointDirs([ray.train.Checkpoint(ep2), ray.train.Checkpoint(ep1)])
    assert local[0] == ep2 and local[1] == ep1 and list(scratch.iterdir()) == []

    remote_fs = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    remote = CheckpointDirs([ray.train.Checkpoint("epoch2", filesystem=remote_fs),
                             ray.train.Checkpoint("epoch1", filesystem=remote_fs)])
    resumed = _train_custom(tmp_path / "resumed", restored_checkpoint_dirs=remote)
    assert [h["epoch"] for h in resumed.history] == [3.0]  # it did load epoch 2's copy
    _assert_same_final_state(resumed.checkpoints[-1], uninterrupted.checkpoints[-1])
    assert list(scratch.iterdir()) == []  # the copy is gone once the weights are loaded
