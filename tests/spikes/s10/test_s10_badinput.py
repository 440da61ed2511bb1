"""Bad input to the monitoring libraries and receivers: every case is a record, handled, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikes.s10_monitoring import badinput


def test_label_and_name_cases_in_process() -> None:
    for rec in (
        badinput._prom_label("label_newline", badinput.NEWLINE_VALUE),
        badinput._prom_label("label_10kb", "u" * 10_000),
        badinput._otel_label("label_newline", badinput.NEWLINE_VALUE),
        badinput._otel_label("label_10kb", "u" * 10_000),
    ):
        assert rec["handled"], rec
        assert rec["detail"]["parses"] and rec["detail"]["round_trip"]
    assert badinput._prom_clash()["handled"]
    clash = badinput._otel_clash()
    assert set(clash) == {"case", "library", "outcome", "handled", "detail"}
    assert clash["detail"]["same_instrument_returned"] is True
    assert badinput._prom_invalid_name()["handled"]


def test_guard_turns_an_exception_into_a_record() -> None:
    def boom() -> dict[str, object]:
        raise RuntimeError("x")

    rec = badinput._guard("c", "lib", boom)
    assert rec["handled"] is False and "RuntimeError" in rec["outcome"]


@pytest.mark.slow  # a UDP sink, sentry-sdk in child processes, an HTTP ingest
def test_run_bad_input(tmp_path: Path) -> None:
    res = badinput.run_bad_input({"sentry_message_bytes": 300_000, "sentry_limit_bytes": 100_000}, tmp_path)
    assert res["total"] == len(res["cases"]) == 12
    by = {(c["case"], c["library"]): c for c in res["cases"]}
    dd = by[("malformed_dogstatsd_packet", "DogStatsdSink (+ datadog client)")]
    assert dd["handled"], dd
    assert dd["detail"]["malformed"] >= 5 and dd["detail"]["next_good_arrived"]
    sentry = [c for c in res["cases"] if c["case"].startswith("oversized_sentry_event")]
    assert len(sentry) == 3 and all(c["handled"] for c in sentry), sentry
    trimmed = by[("oversized_sentry_event_big_message_max_value_length", "sentry-sdk -> SentryIngest")]
    assert trimmed["detail"]["ingest"]["events"] == 1  # trimmed by the SDK, so under the limit
    assert (tmp_path / "badinput.json").exists()
