"""The cost model: a price table read and checked, usage priced at a scale, infeasible not priced, extrapolation marked."""

from __future__ import annotations

import math

import pytest

from harness.decide import cost
from harness.decide.cost import Prices, PricesError, Usage, estimate, load_prices

GIB = 2**30


def table(**over: str) -> str:
    parts = {
        "head": 'currency = "USD"\nhours_per_month = 730\nheadroom = 0.5\n',
        "app": '[app]\ninstance = "a"\nvcpus = 2\nmemory_gib = 4\nusd_per_hour = 0.1\nsource = "s"\nstatus = "verified"\nchecked = "d"\n',
        "redis": '[redis]\ninstance = "r"\nvcpus = 2\nmemory_gib = 4\nusd_per_hour = 0.05\nsource = "s"\nstatus = "secondary"\nchecked = "d"\n',
        "postgres": '[postgres]\ninstance = "p"\nvcpus = 4\nmemory_gib = 8\nusd_per_hour = 0.2\nsource = "s"\nstatus = "unverified"\nchecked = "d"\n',
        "egress": '[egress]\nusd_per_gib = 0.1\nsource = "s"\nstatus = "verified"\nchecked = "d"\n',
    }
    parts.update(over)
    return "".join(parts.values())


@pytest.fixture
def prices(tmp_path) -> Prices:
    p = tmp_path / "prices.toml"
    p.write_text(table())
    return load_prices(p)


def test_the_shipped_table_loads_and_names_a_source_and_status_for_every_price():
    p = load_prices()
    for row in p.rows():
        assert row["status"] in ("verified", "secondary", "unverified") and row["source"]
    assert p.unverified == [p.label(i) for i in p.ITEMS if p.status(i) == "unverified"]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"head": 'currency = "USD"\nhours_per_month = 730\nheadroom = 1.5\n'}, "at most 1"),
        (
            {
                "app": '[app]\ninstance = "a"\nvcpus = 0\nmemory_gib = 4\nusd_per_hour = 0.1\nsource = "s"\nstatus = "verified"\nchecked = "d"\n'
            },
            "vcpus",
        ),
        ({"egress": '[egress]\nusd_per_gib = -1\nsource = "s"\nstatus = "verified"\nchecked = "d"\n'}, "positive"),
        ({"redis": ""}, r"missing the \[redis\] table"),
        (
            {
                "postgres": '[postgres]\ninstance = "p"\nvcpus = 4\nmemory_gib = 8\nusd_per_hour = 0.2\nsource = "s"\nstatus = "guess"\nchecked = "d"\n'
            },
            "status",
        ),
        ({"head": "not toml ==="}, "not valid TOML"),
    ],
)
def test_a_malformed_table_is_one_clear_error(tmp_path, over, words):
    p = tmp_path / "prices.toml"
    p.write_text(table(**over))
    with pytest.raises(PricesError, match=words):
        load_prices(p)


def test_a_missing_table_names_the_file(tmp_path):
    with pytest.raises(PricesError, match="cannot read the price table"):
        load_prices(tmp_path / "nope.toml")


def test_machines_by_cores_or_memory_plus_services_and_egress(prices):
    # 1 core per 1,000 users; 2 vCPUs x 0.5 headroom = 1 core per machine.
    u = Usage(users=1000, cores=1.0, memory_bytes=0.5 * GIB, egress_bytes_per_s=GIB / 3600, redis=True, postgres=True)
    e = estimate(u, 3000, prices)
    assert e.app_machines == 3 and not e.extrapolated and e.usd is not None
    egress = 3 * 730 * 0.1  # 1 GiB an hour per 1,000 users, 3,000 users, 730 hours, $0.1/GiB
    assert e.parts == pytest.approx({"app": 3 * 0.1 * 730, "Redis": 0.05 * 730, "PostgreSQL": 0.2 * 730, "egress": egress})
    assert e.usd == pytest.approx(sum(e.parts.values()))
    # Memory decides when it binds first: 4 GiB x 0.5 = 2 GiB per machine.
    m = estimate(Usage(users=10, cores=0.001, memory_bytes=1 * GIB), 100, prices)
    assert m.app_machines == math.ceil(10 / 2)


def test_more_than_ten_times_the_measured_users_is_extrapolated(prices):
    u = Usage(users=100, cores=0.01)
    assert not estimate(u, 1000, prices).extrapolated
    assert estimate(u, 1001, prices).extrapolated
    assert not estimate(Usage(users=1, cores=1e-6, from_users=False), 100_000, prices).extrapolated


def test_an_option_that_cannot_reach_a_scale_is_infeasible_and_not_priced(prices):
    one = Usage(users=1000, cores=0.4, scales_out=False)
    assert estimate(one, 1000, prices).usd is not None
    far = estimate(one, 10_000, prices)
    assert far.usd is None and "one process needs 4.00 cores" in far.infeasible and far.text().startswith("infeasible")
    redis = estimate(Usage(users=1000, cores=0.1, redis=True, redis_cores=0.1), 10_000, prices)
    assert redis.usd is None and "one Redis needs 1.00 cores" in redis.infeasible
    pg = estimate(Usage(users=1000, cores=0.1, postgres=True, pg_cores=0.5), 10_000, prices)
    assert pg.usd is None and "PostgreSQL needs 5.0 cores" in pg.infeasible


def test_scaled_prices_change_only_that_item(prices):
    u = Usage(users=1000, cores=1.0, egress_bytes_per_s=1000.0)
    base = estimate(u, 1000, prices)
    doubled = estimate(u, 1000, prices.scaled("egress", 2))
    assert doubled.parts["egress"] == pytest.approx(2 * base.parts["egress"]) and doubled.parts["app"] == base.parts["app"]
    assert prices.scaled("app", 3).app.usd_per_hour == pytest.approx(0.3) and prices.scaled("app", 3).redis == prices.redis


def test_using_swaps_the_prices_in_force_and_restores_them(prices):
    before = cost.current()
    with cost.using(prices):
        assert cost.current() is prices
    assert cost.current() is before


def test_a_money_part_scores_infeasible_as_zero_and_says_so(prices):
    part = cost.money_part(lambda run, o: Usage(users=1000, cores=0.4, scales_out=False), "test", users=10_000)
    with cost.using(prices):
        v = part.source.fn(None, "x")  # type: ignore[arg-type]
    assert v >= cost.INFEASIBLE and part.utility.score(v) == 0 and part.show(v) == "infeasible at 10,000 users"


def test_usage_refuses_impossible_figures():
    with pytest.raises(ValueError):
        Usage(users=0)
    with pytest.raises(ValueError):
        Usage(users=1, cores=-1)
    with pytest.raises(ValueError):
        Usage(users=1, egress_bytes_per_s=math.nan)


def test_egress_is_priced_through_the_volume_tiers(tmp_path):
    p = tmp_path / "prices.toml"
    tiers = "[[egress.tiers]]\nup_to_gib = 100\nusd_per_gib = 0.1\n\n[[egress.tiers]]\nusd_per_gib = 0.05\n"
    p.write_text(table() + tiers)
    prices = load_prices(p)
    assert prices.egress_monthly(50) == pytest.approx(5.0)
    assert prices.egress_monthly(300) == pytest.approx(100 * 0.1 + 200 * 0.05)
    assert prices.scaled("egress", 2).egress_monthly(300) == pytest.approx(2 * (100 * 0.1 + 200 * 0.05))
    assert "for the first" in prices.price_text("egress")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[[egress.tiers]]\nup_to_gib = 100\nusd_per_gib = 0.1\n", "last tier must have no up_to_gib"),
        (
            "[[egress.tiers]]\nup_to_gib = 100\nusd_per_gib = 0.1\n[[egress.tiers]]\nup_to_gib = 50\nusd_per_gib = 0.1\n"
            "[[egress.tiers]]\nusd_per_gib = 0.1\n",
            "above the previous tier",
        ),
    ],
)
def test_malformed_tiers_are_refused(tmp_path, extra, words):
    p = tmp_path / "prices.toml"
    p.write_text(table() + extra)
    with pytest.raises(PricesError, match=words):
        load_prices(p)


def test_a_table_in_another_currency_or_not_text_is_refused(tmp_path):
    p = tmp_path / "prices.toml"
    p.write_text(table(head='currency = "EUR"\nhours_per_month = 730\nheadroom = 0.5\n'))
    with pytest.raises(PricesError, match="must be in USD"):
        load_prices(p)
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(PricesError, match="not UTF-8"):
        load_prices(p)


def test_the_money_part_is_one_value_from_the_whole_run():
    part = cost.money_part(lambda run, o: Usage(users=1, cores=0.0), "test")
    assert part.source.exact  # an option infeasible in one repeat only must not average a price with the marker
