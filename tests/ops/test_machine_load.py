"""LoadWatch: load average before and after, the CPU other processes used, and a loud warning when busy."""

from __future__ import annotations

import os

import pytest

from latentdial import machine_load
from latentdial.machine_load import LoadWatch


def fake_machine(monkeypatch, *, load_before, load_after, busy_ticks, own_ticks, seconds=10.0):
    """/proc readings: (start, end) pairs for the load average and the tick counters."""
    loads = iter([load_before, load_after])
    busy = iter(busy_ticks)
    own = iter(own_ticks)
    clock = iter([100.0, 100.0 + seconds])
    monkeypatch.setattr(machine_load, "load_average", lambda: next(loads))
    monkeypatch.setattr(machine_load, "_busy_ticks", lambda: next(busy))
    monkeypatch.setattr(machine_load, "_own_ticks", lambda: next(own))
    monkeypatch.setattr(machine_load.time, "monotonic", lambda: next(clock))


def test_the_benchmarks_own_cpu_does_not_make_the_machine_busy(monkeypatch, capsys):
    hz = os.sysconf("SC_CLK_TCK")
    # 10 s: the machine was busy for 19 core-seconds, 18.5 of them the benchmark's own
    fake_machine(monkeypatch, load_before=(0.1, 0.2, 0.3), load_after=(1.9, 0.9, 0.5),
                 busy_ticks=(0, 19 * hz), own_ticks=(0, int(18.5 * hz)))
    with LoadWatch("bench") as w:
        pass
    r = w.report
    assert r.other_cores == pytest.approx(0.05)
    assert not r.busy and "quiet" in r.line()
    assert capsys.readouterr().err == ""
    assert r.as_dict()["load_after"] == (1.9, 0.9, 0.5)


def test_a_loaded_start_or_busy_neighbours_make_the_run_busy_and_warn_loudly(monkeypatch, capsys):
    hz = os.sysconf("SC_CLK_TCK")
    fake_machine(monkeypatch, load_before=(3.2, 2.0, 1.0), load_after=(4.0, 2.5, 1.2),
                 busy_ticks=(0, 20 * hz), own_ticks=(0, 8 * hz))
    with LoadWatch("bench") as w:
        pass
    r = w.report
    assert r.busy and r.other_cores == pytest.approx(1.2)
    assert any("3.20 > 0.5 at the start" in x for x in r.reasons)
    assert any("1.20 cores" in x for x in r.reasons)
    err = capsys.readouterr().err
    assert "THE MACHINE WAS BUSY; DO NOT PUBLISH THESE FIGURES" in err and "before 3.20 2.00 1.00" in err
    assert r.as_dict()["busy"] is True


def test_a_real_reading_has_load_averages_and_the_cpu_of_the_others():
    with LoadWatch("real", warn=False) as w:
        sum(i * i for i in range(200_000))
    r = w.report
    assert len(r.load_before) == 3 and all(x >= 0 for x in r.load_after)
    assert r.other_cores is not None and r.other_cores >= 0
    assert r.seconds > 0 and r.cpus >= 1
