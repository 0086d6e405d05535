"""The per-trial driver Tune ships to every trial: what it carries and what it costs to load."""
from __future__ import annotations

import subprocess
import sys

import ray.cloudpickle as cloudpickle

from sweeps.driver import make_driver
from sweeps.keys import BASELINE_TAG
from sweeps.space import load_space

REPO = __file__.rsplit("/tests/", 1)[0]


def test_the_shipped_driver_does_not_import_the_space_parser(tmp_path):
    """Tune unpickles the driver in a fresh process per trial; the space parser's imports
    (optuna, scipy) would cost every trial ~0.8 s of CPU there for nothing, the workload's
    module another 0.3 s (saliency) — the workers import it, not the driver."""
    blob = tmp_path / "driver.pkl"
    blob.write_bytes(cloudpickle.dumps(make_driver(load_space("entropy_lambda.yaml"), str(tmp_path))))
    code = ("import sys, ray.cloudpickle as cp\n"
            f"cp.loads(open({str(blob)!r}, 'rb').read())\n"
            "print(sorted(m for m in ('sweeps.space', 'optuna', 'scipy', 'workloads.saliency')\n"
            "             if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_driver_gives_the_workers_the_spaces_knobs():
    space = load_space("entropy_lambda.yaml")
    captured = {c.cell_contents for c in make_driver(space, "/tmp").__closure__
                if isinstance(c.cell_contents, str)}
    assert space.workload in captured
    # the knobs the driver derives are the ones the space derives, tags dropped
    config = {BASELINE_TAG: True, **(space.baseline or {})}
    from sweeps.keys import trial_knobs
    from workloads.registry import get_workload
    assert trial_knobs(get_workload(space.workload), space.fixed, config) == space.trial_knobs(config)
    assert BASELINE_TAG not in space.trial_knobs(config)
