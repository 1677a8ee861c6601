"""The chat proxy benchmark's turns: each rate's duration is split into slices that the three
kinds take in rotation, and each kind's slices are reported as one phase (the figures come
from the real run)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.benchmark_module import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("chat_proxy.py", "chat_proxy_under_test") as module:
        yield module


class RecordingLoad:
    """Stands in for Load: records each turn instead of sending requests."""

    def __init__(self, bench) -> None:
        self.bench = bench
        self.turns: list[tuple[str, str, float]] = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        return None

    async def open_loop(self, kind, rate, duration_s, label):
        self.turns.append((kind, label, duration_s))
        sample = self.bench.Sample(kind, label, len(self.turns), ttft=0.001 * len(self.turns))
        cpu = {"platform": 0.5, "relay": 0.25, "upstream": 0.0, "client": 0.125}
        return self.bench.Phase(kind, label, rate, duration_s, [sample], cpu, shared=1)

    async def settle(self):
        return True

    async def burst(self, kind, n, label):  # pragma: no cover - no bursts asked for here
        raise AssertionError("no bursts in these tests")


def run(bench, load, *, duration_s, slice_s):
    return asyncio.run(
        bench.run_load(
            load, rates=[5.0], duration_s=duration_s, slice_s=slice_s, burst=1, burst_rounds=0
        )
    )


def test_each_kind_takes_every_slice_and_goes_first_in_turn(bench, capsys):
    load = RecordingLoad(bench)
    results = run(bench, load, duration_s=12.0, slice_s=5.0)
    measured = [t for t in load.turns if t[1] != "warm-up"]
    # 12 s in turns of at most 5 s: three slices of 4 s, and the order rotates.
    assert [kind for kind, _, _ in measured] == [
        "direct", "relay", "platform",
        "relay", "platform", "direct",
        "platform", "direct", "relay",
    ]  # fmt: skip
    assert {duration for _, _, duration in measured} == {4.0}
    # The same label within a slice: open_loop seeds the arrival times with it, so the three
    # kinds get the same arrivals in each slice and different ones in the next.
    for number in (1, 2, 3):
        labels = {label for _, label, _ in measured[3 * (number - 1) : 3 * number]}
        assert labels == {f"rate 5 slice {number}"}
    platform = results.rates[5.0]["platform"]
    assert platform.label == "rate 5"
    assert len(platform.samples) == 3
    assert platform.wall == pytest.approx(12.0)
    assert platform.cpu["platform"] == pytest.approx(1.5)
    assert platform.cpu["client"] == pytest.approx(0.375)
    assert platform.shared == 3
    assert [s.phase for s in platform.samples] == [
        "rate 5 slice 1",
        "rate 5 slice 2",
        "rate 5 slice 3",
    ]


def test_slice_zero_gives_each_kind_one_turn_of_the_whole_duration(bench, capsys):
    load = RecordingLoad(bench)
    results = run(bench, load, duration_s=12.0, slice_s=0.0)
    measured = [t for t in load.turns if t[1] != "warm-up"]
    assert measured == [
        ("direct", "rate 5", 12.0),
        ("relay", "rate 5", 12.0),
        ("platform", "rate 5", 12.0),
    ]
    assert len(results.rates[5.0]["relay"].samples) == 1


@pytest.mark.parametrize("value", ["-1", "0.5"])
def test_a_slice_below_a_second_is_refused(bench, value, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--slice", value])
    assert exc.value.code == 2
    assert "--slice" in capsys.readouterr().err
