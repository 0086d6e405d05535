"""The saliency workload under torch.distributed: 2 gloo processes on CPU."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.workloads.gloo import gloo_group

KNOBS = {"num_images": 60, "ood_images": 10, "image_size": 32, "batch_size": 8, "width": 8,
         "epochs": 2, "steps_per_epoch": 3, "lambda": 0.2, "compute_every": 2,
         "num_probes": 4}


def _worker(rank: int, world: int, tmp: str) -> None:
    with gloo_group(os.path.join(tmp, "store"), rank, world):
        import workloads.saliency as W
        from workloads.contract import LocalSession
        session = LocalSession(world_size=world, rank=rank,
                               checkpoint_root=os.path.join(tmp, "ckpt"))
        W.train({**KNOBS, "data_root": os.path.join(tmp, "data")}, session)
        with open(os.path.join(tmp, f"rank{rank}.json"), "w") as f:
            json.dump({"history": session.history, "checkpoints": session.checkpoints}, f)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_ranks_train_and_report_the_metric_set(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    import workloads.saliency as W
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in range(2):
        hist = out[r]["history"]
        assert [h["epoch"] for h in hist] == [1.0, 2.0]
        for h in hist:
            assert set(h) == {"epoch", "diverged", "probe_steps", *W.METRICS}
    # metrics are global (all-reduced sums), so both ranks report the same numbers
    assert out[0]["history"] == out[1]["history"]
    # rank 0 alone writes checkpoints; they hold the epoch and the global step count
    assert len(out[0]["checkpoints"]) == 2 and out[1]["checkpoints"] == []
    state = json.loads((tmp_path / "ckpt" / "epoch_0002" / "state.json").read_text())
    assert {k: state[k] for k in ("epoch", "step")} == {"epoch": 1, "step": 6}
    # one synthetic dataset, generated once, no temporary directories left behind
    assert len(os.listdir(tmp_path / "data")) == 1


# ---- the regularized objective is DDP-exact ------------------------------------------------
S = 16


def _global_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, S, S, generator=g)
    cb = torch.log_softmax(torch.randn(6, S * S, generator=g), 1).view(6, S, S)
    # uneven fixation counts per image, so per-rank normalization would differ from global
    counts = (torch.rand(6, S, S, generator=g) < torch.linspace(0.02, 0.4, 6).view(6, 1, 1)).float()
    pool = torch.randint(0, 256, (12, 3, S, S), dtype=torch.uint8, generator=g)
    return images, cb, counts, pool


def _grads(world: int, rank: int, fixation_total=None, shards: int | None = None):
    """Gradient of shard `rank` of `shards` (default: world) after one regularized loss."""
    from saliency.model import ModelConfig, SaliencyModel
    from saliency.regularizer import RegularizerConfig, training_losses
    images, cb, counts, pool = _global_batch()
    torch.manual_seed(1)
    model = SaliencyModel(ModelConfig(width=4, readout=[4]))
    with torch.no_grad():  # a readout that is not zero, so every parameter gets a gradient
        model.readout[-1].weight.normal_(0, 0.1)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    reg = RegularizerConfig(lam=0.5, compute_every=1, num_uniform_samples=4, probes="neutral",
                            neutral_pool=pool, seed=0)
    n = shards or world
    part = slice(rank * 6 // n, (rank + 1) * 6 // n)
    out = training_losses(net, images[part], cb[part], counts[part], step=0, reg=reg,
                          fixation_total=fixation_total, world_size=world)
    out["loss"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _grad_worker(rank: int, world: int, tmp: str) -> None:
    with gloo_group(os.path.join(tmp, "store"), rank, world):
        counts = _global_batch()[2][rank * 6 // world:(rank + 1) * 6 // world]
        total = counts.sum().clone()
        dist.all_reduce(total)  # what the workload's step does before the loss
        grads = _grads(world, rank, fixation_total=total)
        if rank == 0:
            torch.save(grads, os.path.join(tmp, "ddp.pt"))


def test_two_ranks_compute_the_one_process_regularized_gradient(tmp_path):
    """NLL normalized by the global fixation count and the same probes on every rank: the
    DDP-averaged gradient equals the one-process gradient on the same global batch."""
    mp.spawn(_grad_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.set_num_threads(1)
    one = _grads(1, 0)
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-5, msg=name)
    # the check can fail: each rank normalizing by its own fixation count (the old objective)
    # gives a different averaged gradient on this batch
    halves = [_grads(1, r, shards=2) for r in range(2)]
    naive = {name: (halves[0][name] + halves[1][name]) / 2 for name in one}
    assert max(float((naive[n] - one[n]).abs().max()) for n in one) > 1e-4
