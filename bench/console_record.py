"""What the console's live list costs the answer path: `RecentDecisions.record` per answer
(tallies for the charts amortised in), printed in microseconds.

    python bench/console_record.py
"""

from __future__ import annotations

import timeit
from types import SimpleNamespace

from dialwhom.routing.plan import Plan, Step
from dialwhom.routing.recent import RecentDecisions
from dialwhom.routing.request import ExotelRequest
from dialwhom.routing.trace import Step as TraceStep
from dialwhom.routing.trace import Trace


def main(n: int = 500_000) -> None:
    recent = RecentDecisions()
    decision = SimpleNamespace(plan=Plan((Step("+919800000001", "owner"), Step("+918000000000", "fallback"))),
                               trace=Trace(path="cache", steps=[TraceStep("crm", "caller", "cache-hit", 0.1)]))
    req = ExotelRequest(caller="+919876543210")
    spent = timeit.timeit(lambda: recent.record("dial-whom", req, decision), number=n)
    empty = timeit.timeit(lambda: None, number=n)
    print(f"RecentDecisions.record: {(spent - empty) / n * 1e6:.2f} us per answer ({n} answers, chart tallies included)")


if __name__ == "__main__":
    main()
