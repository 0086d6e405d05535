"""Every knob's domain is enforced by the space parser at --dry-run, before Ray: a categorical
choice, a distribution bound, a fixed or a baseline value outside the domain is exit 2 with a
line naming the file, the key and what is allowed. Also: hyperband wording, the trust model."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from sweeps import run
from workloads.knobs import Interval, public_values
from workloads.registry import get_workload

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKLOADS = ("ten_lm", "saliency", "examples.custom_workload")


def restricted_knobs():
    for name in WORKLOADS:
        wl = get_workload(name)
        defaults = public_values(wl.defaults)
        for knob in wl.knob_types():
            domain = wl.knob_domain(knob)
            if domain is not None:
                yield pytest.param(name, knob, domain, defaults[knob], id=f"{name}:{knob}")


def dry_run(tmp_path, capsys, doc: dict) -> tuple[int, list[str]]:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc = run.main(["--space", str(path), "--dry-run", "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing written
    return rc, capsys.readouterr().err.strip().splitlines()


def space(workload: str, parameters: dict, **extra) -> dict:
    metric = next(iter(get_workload(workload).metrics.items()))
    return {"workload": workload, "metric": {"name": metric[0], "goal": metric[1]},
            "parameters": parameters, **extra}


def plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("workload, knob, domain, default", list(restricted_knobs()))
def test_an_invalid_choice_is_exit_2_naming_file_key_and_domain(tmp_path, capsys, workload,
                                                                knob, domain, default):
    bad = domain.invalid_example()
    valid = default if default is not None else bad  # Optional knobs: None is always fine
    rc, err = dry_run(tmp_path, capsys, space(workload, {knob: {"values": [plain(valid),
                                                                           plain(bad)]}}))
    assert rc == 2, err
    line = next(e for e in err if f"parameters.{knob}.values[1]" in e)
    assert "space.yaml" in line and domain.describe() in line, line


@pytest.mark.parametrize("workload, knob, domain, default",
                         [p for p in restricted_knobs() if isinstance(p.values[2], Interval)
                          and p.values[2].lo is not None])
def test_an_out_of_domain_bound_is_exit_2(tmp_path, capsys, workload, knob, domain, default):
    annotation = get_workload(workload).knob_types()[knob]
    is_int = annotation is int
    bad = domain.invalid_example()
    hi = max(bad + 1, domain.lo + 1)
    spec = ({"distribution": "int_uniform", "min": int(bad), "max": int(hi)} if is_int else
            {"distribution": "uniform", "min": float(bad), "max": float(hi)})
    rc, err = dry_run(tmp_path, capsys, space(workload, {knob: spec}))
    assert rc == 2, err
    line = next(e for e in err if f"parameters.{knob}.min" in e)
    assert "space.yaml" in line and domain.describe() in line, line


@pytest.mark.parametrize("section", ["fixed", "baseline"])
def test_fixed_and_baseline_values_are_checked_too(tmp_path, capsys, section):
    doc = space("saliency", {"lambda": {"values": [0.1, 1.0]}},
                **{section: {"compute_every": -3}})
    rc, err = dry_run(tmp_path, capsys, doc)
    assert rc == 2 and any(f"{section}.compute_every" in e and ">= 0" in e for e in err), err


def test_all_problems_come_at_once(tmp_path, capsys):
    doc = space("ten_lm", {"hten_scales": {"values": [[1, 2], [0, 3]]},
                           "lr": {"distribution": "uniform", "min": -1.0, "max": 0.1},
                           "preset": {"values": ["tiny", "gigantic"]}})
    rc, err = dry_run(tmp_path, capsys, doc)
    assert rc == 2 and len(err) == 3, err


def test_hyperband_is_said_to_run_as_asha(tmp_path, capsys):
    path = tmp_path / "hb.yaml"
    path.write_text(yaml.safe_dump(space("saliency", {"lambda": {"values": [0.1, 1.0]}},
                                         early_terminate={"type": "hyperband"})))
    assert run.main(["--space", str(path), "--dry-run", "--output", str(tmp_path)]) == 0
    assert "early stop: hyperband (W&B's name) runs as ASHA on epoch" in capsys.readouterr().out


def test_a_module_that_is_not_a_workload_is_never_imported(tmp_path):
    """Trust model: a dotted `workload:` is imported only if its source assigns WORKLOAD at top
    level; a module with an import-time side effect is rejected without running."""
    pkg = tmp_path / "sidefx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    marker = tmp_path / "ran.txt"
    (pkg / "boom.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    doc = {"workload": "sidefx.boom", "metric": {"name": "x", "goal": "minimize"},
           "parameters": {"x": {"values": [1, 2]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "sweeps", "run.py"), "--space",
                           str(tmp_path / "s.yaml"), "--dry-run"], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown workload" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()
