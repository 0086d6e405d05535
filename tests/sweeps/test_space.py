"""Space parser: every shipped space parses; one invalid file per rule, each with its exact line."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import optuna.distributions as od
import pytest
import yaml

from sweeps.errors import SpaceError
from sweeps.space import SPACES_DIR, TOP_KEYS, load_space
from workloads.registry import get_workload

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VALID = {
    "workload": "saliency",
    "metric": {"name": "val_ig", "goal": "maximize"},
    "parameters": {
        "lambda": {"distribution": "log_uniform_values", "min": 0.001, "max": 10},
        "compute_every": {"values": [10, 50]},
    },
}


def knobs(workload: str) -> str:
    return ", ".join(sorted(get_workload(workload).knob_types()))


def write(tmp_path, doc, name="bad.yaml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def merged(**changes):
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def cli_without_ray(args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI's main() in a fresh interpreter and fail if it imported Ray."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        from sweeps.run import main
        rc = main({args!r})
        assert "ray" not in sys.modules, "Ray was imported before validation finished"
        sys.exit(rc)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(SPACES_DIR, "*.yaml"))))
def test_every_shipped_space_parses(path):
    space = load_space(path)
    assert space.parameters, path
    # every parameter and the baseline resolve to a full workload config
    cfg = space.trial_config({})
    assert set(cfg) == set(space.get_workload().knob_types())


def test_bare_name_resolves_in_search_spaces():
    assert load_space("entropy_lambda").path == load_space(
        os.path.join(SPACES_DIR, "entropy_lambda.yaml")).path


def test_distributions_map_to_optuna_with_inclusive_bounds(tmp_path):
    doc = merged(parameters={
        "lambda": {"distribution": "log_uniform_values", "min": 0.001, "max": 10},
        "compute_every": {"distribution": "int_uniform", "min": 1, "max": 5},
        "lr": {"distribution": "uniform", "min": 0.0001, "max": 0.01},
        "weight_decay": {"distribution": "q_uniform", "min": 0.0, "max": 0.1, "q": 0.05},
    })
    space = load_space(write(tmp_path, doc, "ok.yaml"))
    d = {p.name: p.distribution for p in space.parameters}
    assert d["lambda"] == od.FloatDistribution(0.001, 10, log=True)
    assert d["compute_every"] == od.IntDistribution(1, 5)  # inclusive, unlike tune.randint
    assert d["lr"] == od.FloatDistribution(0.0001, 0.01)
    assert d["weight_decay"] == od.FloatDistribution(0.0, 0.1, step=0.05)


def test_list_choices_are_encoded_and_decoded():
    space = load_space("ten_energy")
    scales = next(p for p in space.parameters if p.name == "hten_scales")
    assert scales.distribution.choices == ("1,2", "1,2,4", "1,2,4,8")
    assert scales.when == {"use_hten": True}
    # conditional parameters come after the ones they depend on
    names = [p.name for p in space.parameters]
    assert names.index("use_hten") < names.index("hten_scales")
    cfg = space.trial_config({"use_hten": True, "hten_scales": "1,2,4"})
    assert list(cfg["hten_scales"]) == [1, 2, 4] and cfg["use_hten"] is True


def test_constant_value_becomes_fixed(tmp_path):
    doc = merged(parameters={**VALID["parameters"], "epochs": {"value": 2}})
    space = load_space(write(tmp_path, doc, "ok.yaml"))
    assert space.fixed["epochs"] == 2
    assert "epochs" not in {p.name for p in space.parameters}


# One invalid file per rule -> its exact one-line message.
CASES = [
    ("unknown top-level key", merged(colour="red"),
     lambda: f"bad.yaml: colour: unknown key (allowed: {', '.join(TOP_KEYS)})"),
    ("unknown workload", merged(workload="resnet"),
     lambda: "bad.yaml: workload: unknown workload (got 'resnet'; allowed: saliency, ten_lm)"),
    ("missing workload", merged(workload=None),
     lambda: "bad.yaml: workload: required (allowed: saliency, ten_lm)"),
    ("unknown method", merged(method="bayes"),
     lambda: "bad.yaml: method: unknown method (got 'bayes'; allowed: tpe, random, grid)"),
    ("metric not reported", merged(metric={"name": "accuracy", "goal": "maximize"}),
     lambda: "bad.yaml: metric.name: workload 'saliency' does not report this metric (got "
             f"'accuracy'; allowed: {', '.join(get_workload('saliency').metrics)})"),
    ("bad goal", merged(metric={"name": "val_ig", "goal": "up"}),
     lambda: "bad.yaml: metric.goal: must be one of minimize, maximize (got 'up')"),
    ("parameter not a knob", merged(parameters={"dropout": {"values": [0.1]}}),
     lambda: f"bad.yaml: parameters.dropout: not a knob of this workload (allowed: "
             f"{knobs('saliency')})"),
    ("log min not positive", merged(parameters={
        "lambda": {"distribution": "log_uniform_values", "min": -1, "max": 10}}),
     lambda: "bad.yaml: parameters.lambda.min: must be > 0 for log_uniform_values (got -1)"),
    ("min not below max", merged(parameters={
        "lambda": {"distribution": "uniform", "min": 1.0, "max": 0.5}}),
     lambda: "bad.yaml: parameters.lambda: min must be < max (got min=1.0, max=0.5)"),
    ("min of wrong type", merged(parameters={
        "lambda": {"distribution": "uniform", "min": "small", "max": 0.5}}),
     lambda: "bad.yaml: parameters.lambda.min: required, a number, for uniform (got 'small')"),
    ("empty values", merged(parameters={"compute_every": {"values": []}}),
     lambda: "bad.yaml: parameters.compute_every.values: must be a non-empty list (got [])"),
    ("value of wrong type", merged(parameters={"compute_every": {"values": [10, "often"]}}),
     lambda: "bad.yaml: parameters.compute_every.values[1]: expected int (got 'often')"),
    ("unknown distribution", merged(parameters={
        "lambda": {"distribution": "normal", "min": 0, "max": 1}}),
     lambda: "bad.yaml: parameters.lambda.distribution: unknown distribution (got 'normal'; "
             "allowed: uniform, q_uniform, int_uniform, log_uniform, log_uniform_values, "
             "categorical, constant; or give `values: [...]` or `value: x`)"),
    ("unknown parameter key", merged(parameters={
        "compute_every": {"values": [1], "probabilities": [1.0]}}),
     lambda: "bad.yaml: parameters.compute_every.probabilities: unknown key "
             "(allowed: values, value, distribution, min, max, q, when)"),
    ("float range on an int knob", merged(parameters={
        "compute_every": {"distribution": "uniform", "min": 1, "max": 9}}),
     lambda: "bad.yaml: parameters.compute_every.distribution: knob 'compute_every' is int "
             "(got uniform; allowed: int_uniform or values)"),
    ("when on a missing parameter", merged(parameters={
        **VALID["parameters"], "num_probes": {"values": [4, 8], "when": {"skip_bad": True}}}),
     lambda: "bad.yaml: parameters.num_probes.when.skip_bad: refers to a parameter "
             "that is not searched (allowed: compute_every, lambda)"),
    ("fixed knob unknown", merged(fixed={"epochz": 3}),
     lambda: f"bad.yaml: fixed.epochz: not a knob of this workload (allowed: {knobs('saliency')})"),
    ("fixed value of wrong type", merged(fixed={"epochs": "three"}),
     lambda: "bad.yaml: fixed.epochs: expected int (got 'three')"),
    ("searched and fixed", merged(fixed={"lambda": 0.1}),
     lambda: "bad.yaml: parameters.lambda: also set in fixed; a knob is either searched or fixed"),
    ("early stop with several metrics", merged(
        metric=[{"name": "val_ig", "goal": "maximize"}, {"name": "ood_ig", "goal": "maximize"}],
        early_terminate={"type": "asha"}),
     lambda: "bad.yaml: early_terminate: not supported with several metrics (ASHA needs one "
             "objective); remove it or use a single metric"),
    ("grid with a distribution", merged(method="grid"),
     lambda: "bad.yaml: parameters.lambda: grid search needs `values` for every parameter "
             "(got a distribution)"),
    ("budget of wrong type", merged(budget={"trials": "many"}),
     lambda: "bad.yaml: budget.trials: must be an integer in [1, 100000] (got 'many')"),
    ("resources out of range", merged(resources={"workers_per_trial": 0}),
     lambda: "bad.yaml: resources.workers_per_trial: must be an integer in [1, 4096] (got 0)"),
    ("negative gpus", merged(resources={"gpus_per_worker": -1}),
     lambda: "bad.yaml: resources.gpus_per_worker: must be a number in [0, 1024] (got -1)"),
    ("no parameters", merged(parameters={}),
     lambda: "bad.yaml: parameters: required: at least one parameter to search"),
    ("not YAML", "workload: [saliency\n",
     lambda: None),  # message checked separately: parser wording is PyYAML's
]


@pytest.mark.parametrize("rule,doc,expected", CASES, ids=[c[0] for c in CASES])
def test_each_rule_gives_its_exact_line(tmp_path, rule, doc, expected):
    with pytest.raises(SpaceError) as err:
        load_space(write(tmp_path, doc))
    if expected() is None:
        assert len(err.value.problems) == 1
        assert err.value.problems[0].startswith("bad.yaml: not valid YAML at line 2:")
    else:
        assert err.value.problems == [expected()]


def test_every_problem_is_reported_at_once(tmp_path):
    doc = merged(colour="red", budget={"trials": 0}, metric={"name": "val_ig", "goal": "up"})
    with pytest.raises(SpaceError) as err:
        load_space(write(tmp_path, doc))
    assert len(err.value.problems) == 3
    assert all(p.startswith("bad.yaml: ") for p in err.value.problems)


def test_cli_bad_space_exits_2_with_the_line_and_starts_no_ray(tmp_path):
    path = write(tmp_path, merged(parameters={
        "lambda": {"distribution": "log_uniform_values", "min": -1, "max": 10}}))
    proc = cli_without_ray(["--space", path, "--output", str(tmp_path / "out")])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: bad.yaml: parameters.lambda.min: must be > 0 for log_uniform_values (got -1)"]
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_bad_flag_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "sweeps", "run.py"),
                           "--space", "entropy_lambda", "--trials", "0", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--trials: must be an integer in [1, 100000] (got '0')" in proc.stderr


def test_cli_dry_run_prints_plan_without_ray(tmp_path):
    # 4 workers: ten_lm's batch_size 32 must split evenly over them
    proc = cli_without_ray(["--space", "ten_energy", "--dry-run", "--trials", "4",
                            "--workers-per-trial", "4", "--max-concurrent", "2",
                            "--output", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    assert "trials: 4" in proc.stdout
    assert "per trial: 4 DDP worker(s) = 4 CPU, 0 GPU" in proc.stdout
    assert "at most 2 trial(s) at once = 8 worker(s), 8 CPU, 0 GPU" in proc.stdout
    assert "hten_scales in ['1,2', '1,2,4', '1,2,4,8'] when use_hten=True" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_cli_unreachable_mlflow_server_exits_2_before_ray(tmp_path):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli_without_ray(["--space", "entropy_lambda", "--mlflow-uri",
                            f"http://127.0.0.1:{port}", "--output", str(tmp_path / "out")])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: --mlflow-uri http://127.0.0.1:{port}: MLflow server "
                                  f"not reachable")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_grid_runs_at_most_its_size(tmp_path):
    doc = merged(method="grid", parameters={"compute_every": {"values": [10, 50]},
                                            "lambda": {"values": [0.1, 1.0]}},
                 baseline={"lambda": 0.0}, budget={"trials": 10})
    space = load_space(write(tmp_path, doc, "grid.yaml"))
    assert space.grid_size() == 4 and space.num_trials() == 5
