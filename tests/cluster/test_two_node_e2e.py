"""A real 2-node Ray cluster on this machine: the sweep reaches it by --address only, its DDP
workers land on both nodes, and a trial the cluster can never hold fails fast."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.sweeps.e2e_helpers import REPO, RUN, pids_using, short_temp_dir, stop_leftovers

pytestmark = pytest.mark.e2e


# Ray 2.60 authenticates every connection with a token; this cluster gets its own, given to
# every process of the test through the environment (nothing is written to ~/.ray).
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
               "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> list[str]:
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    return [exe] if exe else [sys.executable, "-m", "ray.scripts.scripts"]


def node_ports() -> list[str]:
    """Every port a node opens by default must differ between two nodes on one machine."""
    return [f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}"]


@pytest.fixture
def two_node_cluster():
    temp_dir = short_temp_dir()
    gcs_port, dash_port = free_port(), free_port()
    head = [*ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
            "--num-cpus=1", "--num-gpus=0", '--resources={"node_a": 1}',
            f"--temp-dir={temp_dir}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
            f"--ray-client-server-port={free_port()}", *node_ports()]
    worker = [*ray_cli(), "start", f"--address=127.0.0.1:{gcs_port}",
              "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
              '--resources={"node_b": 1}', *node_ports()]
    try:
        for cmd in (head, worker):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=CLUSTER_ENV)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        yield f"127.0.0.1:{gcs_port}", temp_dir
    finally:
        stop_leftovers(temp_dir)  # by pid: every process using this cluster's temp dir
        assert not pids_using(temp_dir)


def actor_nodes(address: str) -> list[list[str]]:
    """Custom resources of the node each Ray Train worker actor ran on (State API)."""
    code = textwrap.dedent(f"""
        import json, ray
        from ray.util.state import list_actors
        ray.init(address={address!r}, logging_level="ERROR")
        nodes = {{n["NodeID"]: sorted(k for k in n["Resources"] if k.startswith("node_"))
                 for n in ray.nodes()}}
        actors = list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=1000,
                             detail=True)
        print(json.dumps([nodes.get(a.node_id, []) for a in actors]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, cwd=REPO, env=CLUSTER_ENV)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep(args: list[str], tmp_path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, RUN, *args, "--output", str(tmp_path), "--name", name],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=CLUSTER_ENV)


def test_sweep_on_two_node_cluster_uses_both_nodes(two_node_cluster, tmp_path):
    address, _ = two_node_cluster

    plan = sweep(["--space", "ten_energy", "--smoke", "--dry-run", "--address", address,
                  "--workers-per-trial", "2", "--cpus-per-worker", "1"], tmp_path, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "per trial: 2 DDP worker(s) = 2 CPU, 0 GPU" in plan.stdout
    assert "cluster now: 2 CPU, 0 GPU" in plan.stdout

    # 4 workers (3 would not divide the smoke batch of 8, which is refused earlier)
    too_big = sweep(["--space", "ten_energy", "--smoke", "--address", address,
                     "--workers-per-trial", "4", "--cpus-per-worker", "1"], tmp_path, "big")
    assert too_big.returncode == 2, too_big.stdout + too_big.stderr
    assert "one trial needs 4 CPU (4 workers) but the cluster can never have more than 2" \
        in too_big.stderr
    assert not (tmp_path / "big").exists()

    # Each node has one CPU: a 2-worker trial must put one worker on each.
    run = sweep(["--space", "ten_energy", "--smoke", "--trials", "1", "--address", address,
                 "--workers-per-trial", "2", "--cpus-per-worker", "1"], tmp_path, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "run" / "results.csv").is_file()
    placed = actor_nodes(address)
    assert sorted(n for nodes in placed for n in nodes) == ["node_a", "node_b"], placed
