"""The token bucket connectors use to stay under a vendor's limit (integrations/ratelimit.py)."""

from __future__ import annotations


import pytest
import redis

from dialwhom.integrations.ratelimit import RateLimiter
from dialwhom.sdk import Deadline, RateLimited


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@pytest.fixture
def clock():
    return Clock()


def limiter(clock, **kw) -> RateLimiter:
    return RateLimiter("crm", kw.pop("rate", 5), kw.pop("per_s", 1.0), clock=clock, sleep=clock.sleep, **kw)


def test_a_burst_goes_through_then_waits_that_fit_are_spent(clock):
    lim = limiter(clock)
    for _ in range(5):
        assert lim.acquire(Deadline(2.0, clock=clock)) == 0
    assert lim.acquire(Deadline(2.0, clock=clock)) == pytest.approx(0.2)
    assert clock.slept == [pytest.approx(0.2)]


def test_a_wait_the_deadline_cannot_afford_is_refused_at_once_with_retry_after(clock):
    lim = limiter(clock, rate=2, per_s=5.0)  # one slot every 2.5 s
    lim.acquire(Deadline(2.0, clock=clock))
    lim.acquire(Deadline(2.0, clock=clock))
    with pytest.raises(RateLimited) as err:
        lim.acquire(Deadline(2.0, clock=clock))
    assert err.value.retry_after == pytest.approx(2.5)
    assert clock.slept == [] and lim.refused == 1
    # a refused request takes nothing: once the slot is there it is ours
    clock.now += 2.5
    assert lim.acquire(Deadline(2.0, clock=clock)) == 0


def test_the_reserve_for_the_request_itself_is_kept(clock):
    lim = limiter(clock, rate=1, per_s=1.0)
    lim.acquire(Deadline(2.0, clock=clock))
    with pytest.raises(RateLimited):
        lim.acquire(Deadline(1.0, clock=clock), reserve_s=0.05)  # 1 s wait + 0.05 > 1 s left
    assert lim.acquire(Deadline(1.2, clock=clock), reserve_s=0.05) == pytest.approx(1.0)


def test_headroom_refills_over_time(clock):
    lim = limiter(clock)
    for _ in range(5):
        lim.acquire(Deadline(2.0, clock=clock))
    assert lim.headroom == pytest.approx(0)
    clock.now += 0.4
    assert lim.headroom == pytest.approx(2)


def test_two_instances_draw_from_one_bucket_in_redis(redis_client, clock):
    client, prefix = redis_client
    a = RateLimiter("hubspot-search", 4, 10.0, redis=client, key_prefix=prefix, clock=clock, sleep=clock.sleep)
    b = RateLimiter("hubspot-search", 4, 10.0, redis=client, key_prefix=prefix, clock=clock, sleep=clock.sleep)
    taken = [a.acquire(Deadline(0.5)), b.acquire(Deadline(0.5)), a.acquire(Deadline(0.5)), b.acquire(Deadline(0.5))]
    assert taken == [0, 0, 0, 0]
    with pytest.raises(RateLimited):  # the fifth, from either, would wait 2.5 s
        b.acquire(Deadline(0.5))
    with pytest.raises(RateLimited):
        a.acquire(Deadline(0.5))


def test_redis_down_falls_back_to_a_local_bucket(clock, caplog):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    lim = RateLimiter("crm", 2, 1.0, redis=dead, clock=clock, sleep=clock.sleep)
    assert lim.acquire(Deadline(1.0, clock=clock)) == 0
    assert lim.acquire(Deadline(1.0, clock=clock)) == 0
    assert lim.acquire(Deadline(1.0, clock=clock)) == pytest.approx(0.5)
    assert "limiting this process only" in caplog.text
    dead.close()
