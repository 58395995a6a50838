"""Issue #13's benchmark: an uncached caller's answer time per CRM, against one vendor round trip.

Every CRM's fake (tests/integrations/fake_{hubspot,salesforce,zoho}.py) serves on 127.0.0.1 and
waits `--latency-ms` (100) before answering each request, like a vendor across the internet. The
real app (`create_app` + Flask's test client) answers Dial Whom requests for a caller whose answer
is not cached (the service cache is cleared before each one); the connector itself stays warm
(token minted, owner directory loaded by a first lookup, which is reported as "cold").

Per CRM it prints the median answer time, its excess over one round trip (target: under 5 ms
once the owner directory is warm), the vendor requests per uncached lookup, and how many of them
were serial (the critical path, from the fake's own request timings; target: 1)::

    python bench/crm_round_trip.py                 # 5 uncached lookups per CRM
    python bench/crm_round_trip.py --rounds 20 --latency-ms 50 --crm zoho
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
# The fakes live with the tests; only this script puts them on the path.
sys.path.insert(0, str(ROOT / "tests" / "integrations"))

import fake_hubspot  # noqa: E402
import fake_salesforce  # noqa: E402
import fake_zoho  # noqa: E402
import fake_leadsquared  # noqa: E402
import fake_freshsales  # noqa: E402

from dialwhom.app import create_app  # noqa: E402
from dialwhom.integrations.connectors.hubspot import HubSpotConnector  # noqa: E402
from dialwhom.integrations.connectors.salesforce import SalesforceConnector  # noqa: E402
from dialwhom.integrations.connectors.zoho import ZohoConnector  # noqa: E402
from dialwhom.integrations.connectors.leadsquared import LeadSquaredConnector  # noqa: E402
from dialwhom.integrations.connectors.freshsales import FreshsalesConnector  # noqa: E402
from dialwhom.integrations.registry import registry_from_classes  # noqa: E402

CALLER = "09876543210"  # in every fake's sample data
FALLBACK = "+918000000000"


def slow(fake_class: type, latency_s: float) -> type:
    """The fake, answering each request `latency_s` late and recording when each was served."""

    class Slow(fake_class):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            self.timings: list[tuple[float, float, str]] = []
            super().__init__(*a, **kw)

        def _listen(self, host: str, port: int) -> None:
            super()._listen(host, port)
            self._server.socket.listen(128)
            # One write per answer: without it Nagle and delayed ACK add 40 ms a request, which is
            # the fake's cost, not the connector's.
            self._server.RequestHandlerClass.wbufsize = 64 * 1024

        def _handle(self, h: Any) -> None:
            start = time.monotonic()
            time.sleep(latency_s)
            try:
                super()._handle(h)
            finally:
                self.timings.append((start, time.monotonic(), h.command + " " + h.path.split("?", 1)[0]))

    Slow.__name__ = f"Slow{fake_class.__name__}"
    return Slow


@dataclass
class Case:
    name: str
    connector: type
    start: Callable[[float], Any]  # latency -> a started fake
    options: Callable[[Any], dict]  # fake -> connector options
    env: Callable[[Any], dict] = field(default=lambda fake: {})


def _hubspot(latency: float) -> Any:
    return slow(fake_hubspot.FakeHubSpot, latency)(**fake_hubspot.sample_data()).start()


def _salesforce(latency: float) -> Any:
    return slow(fake_salesforce.FakeSalesforce, latency)().start()


def _zoho(latency: float) -> Any:
    return slow(fake_zoho.FakeZoho, latency)(**fake_zoho.sample_data()).start()


def _leadsquared(latency: float) -> Any:
    return slow(fake_leadsquared.FakeLeadSquared, latency)(**fake_leadsquared.sample_data()).start()


def _freshsales(latency: float) -> Any:
    return slow(fake_freshsales.FakeFreshsales, latency)(**fake_freshsales.sample_data()).start()


CASES = [
    Case("hubspot", HubSpotConnector, _hubspot,
         lambda f: {"base_url": f.url, "access_token": fake_hubspot.PRIVATE_APP_TOKEN}),
    Case("salesforce", SalesforceConnector, _salesforce,
         lambda f: {"login_url": f.url, "auth": "client_credentials", "client_id": f.client_id, "client_secret": f.client_secret}),
    Case("zoho", ZohoConnector, _zoho, lambda f: f.connector_options()),
    Case("leadsquared", LeadSquaredConnector, _leadsquared,
         lambda f: {"host": f.url, "access_key": fake_leadsquared.ACCESS_KEY, "secret_key": fake_leadsquared.SECRET_KEY, "plan": "enterprise"}),
    Case("freshsales", FreshsalesConnector, _freshsales,
         lambda f: {"base_url": f"{f.url}/crm/sales", "api_key": fake_freshsales.API_KEY}),
]


def quiet() -> None:
    for name in ("dialwhom", *[n for n in logging.root.manager.loggerDict if n.startswith("dialwhom")]):
        logging.getLogger(name).setLevel(logging.WARNING)


def serial_depth(timings: list[tuple[float, float, str]]) -> int:
    """The longest chain of requests where each started after the previous one was answered."""
    spans = sorted(timings)
    depth = [1] * len(spans)
    for i, (start, _, _) in enumerate(spans):
        depth[i] = 1 + max((depth[j] for j in range(i) if spans[j][1] <= start), default=0)
    return max(depth, default=0)


@dataclass
class Result:
    name: str
    cold_ms: float = 0.0
    cold_requests: int = 0
    cold_serial: int = 0
    warm_ms: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    serial: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    answer: str = ""
    error: str = ""
    round_trip_ms: float = 0.0


def measure(case: Case, rounds: int, latency_s: float) -> Result:
    result = Result(case.name)
    fake = case.start(latency_s)
    try:
        config = {
            "default_region": "IN",
            "budget_ms": 4000,
            "connectors": [{"id": "crm", "type": case.name, "timeout_ms": 3000, **case.options(fake)}],
            "fallback": [FALLBACK],
        }
        app = create_app(config, registry=registry_from_classes([case.connector]))
        quiet()  # create_app sets up logging: one decision line per lookup would bury the table
        runtime = app.extensions["dialwhom"]
        client = app.test_client()
        try:
            for n in range(rounds + 1):
                runtime.service.cache.clear()
                fake.reset_requests()
                fake.timings.clear()
                started = time.perf_counter()
                resp = client.get("/exotel/dial-whom", query_string={"CallSid": f"bench-{case.name}-{n}", "From": CALLER,
                                                                      "To": "08039513882"})
                elapsed = (time.perf_counter() - started) * 1000.0
                time.sleep(latency_s * 2)  # background work (directory loads) lands before the next round
                answer = resp.get_data(as_text=True).strip()
                if n == 0:
                    result.cold_ms, result.cold_requests, result.cold_serial = elapsed, len(fake.requests), serial_depth(fake.timings)
                    continue
                result.warm_ms.append(elapsed)
                result.requests.append(len(fake.requests))
                result.serial.append(serial_depth(fake.timings))
                result.paths = sorted(f"{r.method} {r.path}" for r in fake.requests)
                result.answer = answer
        finally:
            runtime.close()
        result.round_trip_ms = round_trip(fake.url, rounds)
    except Exception as exc:  # report and go on with the other CRMs
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        fake.stop()
    return result


def round_trip(url: str, rounds: int) -> float:
    """Median time of one bare request to the fake (its latency plus its own overhead): the yardstick."""
    import requests

    times = []
    with requests.Session() as http:
        for _ in range(rounds + 1):
            started = time.perf_counter()
            http.get(f"{url}/bench-round-trip", timeout=5)
            times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times[1:])


def table(results: list[Result], latency_ms: float) -> str:
    head = (f"{'CRM':<11} {'cold ms':>8} {'cold req':>8} {'1 RT ms':>8} {'warm ms':>8} {'over 1 RT':>9} {'req/lookup':>10} "
            f"{'serial':>6}  {'targets':<22} answer")
    lines = [head, "-" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"{r.name:<11} failed: {r.error}")
            continue
        warm = statistics.median(r.warm_ms)
        requests, serial = statistics.median(r.requests), max(r.serial)
        over = warm - r.round_trip_ms
        met = [("<5ms" if over < 5 else "NOT <5ms"), ("1 serial" if serial <= 1 else "NOT 1 serial")]
        lines.append(f"{r.name:<11} {r.cold_ms:8.1f} {r.cold_requests:8d} {r.round_trip_ms:8.1f} {warm:8.1f} {over:+9.1f} {requests:10.0f} "
                     f"{serial:6d}  {', '.join(met):<22} {r.answer}")
    lines.append("")
    lines.append(f"each fake request waits {latency_ms:.0f} ms; 1 RT = median bare request to the fake (that wait plus the "
                 "fake's own time); warm = median uncached lookup through the app after the first (cold) one; "
                 "serial = longest chain of vendor requests each waiting for the one before")
    for r in results:
        if not r.error:
            lines.append(f"  {r.name}: {', '.join(r.paths)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="uncached lookups per CRM after the first (default 5)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="added to every fake request (default 100)")
    parser.add_argument("--crm", action="append", choices=[c.name for c in CASES], help="only these CRMs (repeatable)")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.crm or c.name in args.crm]
    results = [measure(c, max(1, args.rounds), args.latency_ms / 1000.0) for c in chosen]
    print(table(results, args.latency_ms))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
