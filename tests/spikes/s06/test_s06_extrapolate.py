"""The projection formula: pure arithmetic from measured costs."""

from __future__ import annotations

import math

import pytest

from spikes.s06_scalability.extrapolate import Costs, Machine, max_connections, project

M = Machine(cores=2, memory_bytes=8 * 2**30, headroom=0.5)


def test_linear_scaling_of_cores_memory_and_services():
    c = Costs(
        connections=1000,
        memory_per_connection=10_000,
        server_cores=0.1,
        redis_ops_per_s=50,
        redis_cpu_per_op=1e-5,
        pg_rows_per_s=20,
        pg_xact_per_s=4,
        pg_cpu_per_row=2e-4,
    )
    p = project(c, 100_000, M)
    assert p.server_cores == pytest.approx(10.0)  # 0.1 cores per 1000 connections
    assert p.server_memory_bytes == pytest.approx(1e9)
    assert p.machines == 10  # ceil(10 cores / (2 x 0.5)) beats ceil(1e9 / 4 GiB) = 1
    assert p.redis_ops_per_s == pytest.approx(5000) and p.redis_cores == pytest.approx(0.05)
    assert p.pg_rows_per_s == pytest.approx(2000) and p.pg_xact_per_s == pytest.approx(400) and p.pg_cores == pytest.approx(0.4)
    assert p.feasible and p.limit == ""


def test_memory_can_decide_the_machine_count():
    c = Costs(connections=100, memory_per_connection=1_000_000, server_cores=0.0001)
    assert project(c, 100_000, M).machines == math.ceil(1e11 / (8 * 2**30 * 0.5))


def test_a_single_process_option_is_capped_at_one_core():
    c = Costs(connections=1000, memory_per_connection=10_000, server_cores=0.2, multi_process=False)
    assert project(c, 2000, M).feasible  # 0.4 cores <= 0.5
    p = project(c, 10_000, M)
    assert not p.feasible and "one process needs 2.00 cores" in p.limit
    assert max_connections(c, M) == pytest.approx(2500)  # 0.5 cores / 0.0002 cores per connection


def test_redis_and_the_database_cap_a_scaled_out_option():
    c = Costs(
        connections=1000,
        memory_per_connection=1,
        server_cores=0.01,
        redis_ops_per_s=1000,
        redis_cpu_per_op=1e-5,
        pg_rows_per_s=100,
        pg_cpu_per_row=1e-4,
    )
    # Redis: 0.01 cores per 1000 connections -> 0.5 cores at 50k; PostgreSQL: 0.01 per 1000 -> 1 core (2 x 0.5) at 100k.
    assert max_connections(c, M) == pytest.approx(50_000)
    p = project(c, 1_000_000, M)
    assert not p.feasible and "one Redis needs 10.00 cores" in p.limit and "PostgreSQL needs 10.0 cores" in p.limit


def test_nothing_measured_means_no_limit_and_bad_input_is_refused():
    assert max_connections(Costs(connections=10, memory_per_connection=0, server_cores=0), M) == math.inf
    with pytest.raises(ValueError):
        Costs(connections=0, memory_per_connection=1, server_cores=1)
    with pytest.raises(ValueError):
        Machine(cores=0, memory_bytes=1)
    with pytest.raises(ValueError):
        project(Costs(connections=1, memory_per_connection=1, server_cores=1), 0, M)


def test_a_run_short_of_its_target_is_projected_at_the_target():
    from spikes.s06_scalability.extrapolate import at_target

    measured = Costs(
        connections=50, memory_per_connection=1, server_cores=0.9, pg_rows_per_s=1000, pg_cpu_per_row=1e-6, multi_process=False
    )
    full = at_target(measured, delivered=1_000_000, expected=4_000_000, messages_in=100_000, wall_s=20)
    assert full.shortfall == 4 and full.server_cores == pytest.approx(3.6)  # each missing delivery costs what a delivered one did
    assert full.pg_rows_per_s == 5000 and full.pg_cpu_per_row == 1e-6  # one row per message in, at the measured cost per row
    assert project(full, 10_000, M).server_cores == pytest.approx(4 * project(measured, 10_000, M).server_cores)
    assert at_target(measured, delivered=10, expected=10, messages_in=10, wall_s=1) is measured  # target reached: unchanged
