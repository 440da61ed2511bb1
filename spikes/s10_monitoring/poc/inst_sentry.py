"""The Sentry back end of Spike 10's server: sentry-sdk for errors only (see ``instruments``)."""

from __future__ import annotations

from typing import Any

from spikes.s10_monitoring.poc.instruments import Instruments


class SentryInstruments(Instruments):
    """sentry-sdk for errors only: ``capture_exception``; no metrics endpoint, no traces."""

    name = "sentry"

    def __init__(self, dsn: str) -> None:
        import sentry_sdk

        self.sdk = sentry_sdk
        sentry_sdk.init(dsn=dsn, traces_sample_rate=None, send_default_pii=False)
        self.captured = 0

    def error(self, exc: BaseException, kind: str) -> None:
        self.sdk.capture_exception(exc, tags={"kind": kind})
        self.captured += 1

    def close(self) -> None:
        self.sdk.flush(timeout=5.0)

    def stats(self) -> dict[str, Any]:
        return {"captured": self.captured}
