"""Pure pieces of benchmarks/sweep_overhead.py: the steps' share of a sweep and its ceiling."""
import math

from benchmarks.sweep_overhead import steps_share_ceiling, union_seconds


def test_overlapping_step_intervals_count_once():
    assert union_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == 4.0
    assert union_seconds([]) == 0.0


def test_the_ceiling_is_the_share_of_perfectly_packed_cpu_work():
    # 80 s of steps in a sweep whose processes used 560 CPU-s: on 2 cores its wall is >= 280 s
    assert math.isclose(steps_share_ceiling(80.0, 560.0, 2), 80 / 280)
    # the same CPU on more cores allows a higher share; no CPU measured -> unknown, not 0 or inf
    assert steps_share_ceiling(80.0, 560.0, 4) > steps_share_ceiling(80.0, 560.0, 2)
    assert math.isnan(steps_share_ceiling(80.0, 0.0, 2))
