"""The runner benchmark's arithmetic: busy time is the union of stage intervals."""
from harness.bench.runner import busy_seconds


def test_busy_seconds_is_the_union_of_intervals():
    assert busy_seconds([]) == 0
    assert busy_seconds([(0, 10), (5, 12), (20, 25)]) == 17
    assert busy_seconds([(3, 4), (0, 10)]) == 10
