"""Both cluster files pass the validation `ray up` runs; deliberately broken copies do not."""
import copy
import os

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from sweeps.capacity import Demand, check_capacity
from sweeps.cluster_info import autoscaler_max_resources
from sweeps.errors import ClusterError

CLUSTER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "cluster")


def load(name):
    with open(os.path.join(CLUSTER, name)) as f:
        return yaml.safe_load(f)


def ray_up_validation(config):
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("name", ["cluster.yaml", "local.yaml"])
def test_cluster_file_passes_ray_up_validation(name):
    ray_up_validation(load(name))


def test_cluster_files_bind_services_to_localhost_and_hold_no_secrets():
    for name in ("cluster.yaml", "local.yaml"):
        text = open(os.path.join(CLUSTER, name)).read()
        assert "--dashboard-host=127.0.0.1" in text and "--host 127.0.0.1" in text
        for secret in ("aws_access_key_id", "aws_secret_access_key", "BEGIN OPENSSH", "password"):
            assert secret.lower() not in text.lower()


BROKEN = [
    ("cluster.yaml", lambda c: c.update(head_node_type="missing"), ValueError),
    ("cluster.yaml", lambda c: c["available_node_types"]["gpu_worker"].update(max_workers="4"),
     Exception),
    ("cluster.yaml", lambda c: c.update(unknown_key=1), Exception),
    ("local.yaml", lambda c: c["provider"].pop("head_ip"), Exception),
]


@pytest.mark.parametrize("name,breaker,error", BROKEN)
def test_broken_copy_is_rejected(name, breaker, error):
    config = load(name)
    breaker(config)
    with pytest.raises(error):
        ray_up_validation(config)


def test_autoscaler_max_reads_the_launcher_config(tmp_path):
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(load("cluster.yaml")))
    # head (8 CPU) + 4 GPU nodes of 8 CPU, 1 GPU
    assert autoscaler_max_resources(str(path)) == {"CPU": 40.0, "GPU": 4.0}
    assert autoscaler_max_resources(str(tmp_path / "absent.yaml")) is None


def test_trial_larger_than_cluster_fails_fast():
    demand = Demand(workers_per_trial=4, cpus_per_trial=4, gpus_per_trial=4, max_concurrent=1)
    with pytest.raises(ClusterError, match="one trial needs 4 GPU .* never have more than 0"):
        check_capacity(demand, {"CPU": 8.0})
    # an autoscaler that can add GPU nodes makes the same demand acceptable
    lines = check_capacity(demand, {"CPU": 8.0}, autoscaler_max={"CPU": 40.0, "GPU": 4.0})
    assert "autoscaler max: 40 CPU, 4 GPU" in lines[0]
    with pytest.raises(ClusterError, match="one trial needs 4 CPU"):
        check_capacity(Demand(4, 4, 0, 1), {"CPU": 2.0})
