"""The saliency workload under torch.distributed: 2 gloo processes on CPU."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

KNOBS = {"num_images": 60, "ood_images": 10, "image_size": 32, "batch_size": 8, "width": 8,
         "epochs": 2, "steps_per_epoch": 3, "lambda": 0.2, "compute_every": 2,
         "num_uniform_samples": 4}


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'store')}",
                            rank=rank, world_size=world)
    try:
        import workloads.saliency as W
        from workloads.contract import LocalSession
        session = LocalSession(world_size=world, rank=rank,
                               checkpoint_root=os.path.join(tmp, "ckpt"))
        W.train({**KNOBS, "data_root": os.path.join(tmp, "data")}, session)
        with open(os.path.join(tmp, f"rank{rank}.json"), "w") as f:
            json.dump({"history": session.history, "checkpoints": session.checkpoints}, f)
    finally:
        dist.destroy_process_group()


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
    assert state == {"epoch": 1, "step": 6}
    # one synthetic dataset, generated once, no temporary directories left behind
    assert len(os.listdir(tmp_path / "data")) == 1
