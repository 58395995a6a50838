"""The org's active Zoho users, cached: owner details without a users call per lookup.

Loaded with ``GET /crm/{version}/users?type=ActiveUsers`` page by page (200 a page) on a thread
of its own, the first time a lookup needs it (alongside that lookup's searches), and again in
the background once `ttl_s` has passed or an owner turns up that it does not know.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from dialwhom.sdk import AuthError, ConnectorError, Deadline

__all__ = ["UserDirectory"]

PER_PAGE = 200
MAX_PAGES = 50  # 10,000 users: beyond that the directory keeps what it read
LOAD_S = 20.0  # a load has its own time budget: it runs beside the callers, not inside one
#: after a failed load, wait this long before the next one (a refused scope waits longer)
RETRY_S = 60.0
DENIED_RETRY_S = 600.0
#: an owner the directory does not know triggers a reload at most this often
UNKNOWN_RELOAD_S = 60.0

#: one page: (users, more pages?)
PageFetch = Callable[[int, Deadline], tuple[list[dict], bool]]


class UserDirectory:
    """Active users by id; `get` never makes a call."""

    def __init__(self, fetch_page: PageFetch, *, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 name: str = "zoho", log: logging.Logger | None = None):
        self._fetch_page = fetch_page
        self.ttl_s = ttl_s
        self.clock = clock
        self.name = name
        self.log = log or logging.getLogger("dialwhom.connector.zoho")
        self._users: dict[str, dict] = {}
        self.loaded_at: float | None = None
        self.error: ConnectorError | None = None
        self._next_try = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._closed = False
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self.loaded_at is not None

    @property
    def denied(self) -> bool:
        """The last load was refused (no ZohoCRM.users.READ) and it is not time to try again."""
        return isinstance(self.error, AuthError) and self.clock() < self._next_try

    def get(self, user_id: str) -> dict | None:
        return self._users.get(user_id)

    def __len__(self) -> int:
        return len(self._users)

    def refresh_if_due(self, *, unknown: bool = False) -> bool:
        """Start a background load when none ran yet, the last is older than the TTL, or (`unknown`)
        an owner was not found in it; True when one is running."""
        now = self.clock()
        with self._lock:
            if not self._done.is_set():
                return True
            if self._closed or now < self._next_try:
                return False
            age = None if self.loaded_at is None else now - self.loaded_at
            if age is not None and age < self.ttl_s and not (unknown and age >= UNKNOWN_RELOAD_S):
                return False
            self._done.clear()
        threading.Thread(target=self._run, name=f"{self.name}-users", daemon=True).start()
        return True

    def wait(self, deadline: Deadline) -> bool:
        """Wait (until the deadline) for a running load; True when the directory is loaded."""
        self._done.wait(timeout=deadline.remaining())
        return self.loaded

    def load(self, deadline: Deadline) -> int:
        """Read every page now (raises the connector error that stopped it); the number of users."""
        users: dict[str, dict] = {}
        page, more = 1, True
        while more and page <= MAX_PAGES and not self._closed:
            batch, more = self._fetch_page(page, deadline)
            for user in batch:
                if isinstance(user, dict) and user.get("id"):
                    users[str(user["id"])] = user
            page += 1
        if more:
            self.log.warning("connector=%s more than %d active users; the directory holds the first %d",
                             self.name, MAX_PAGES * PER_PAGE, len(users))
        self._users = users  # one assignment: readers see the old or the new directory, whole
        self.loaded_at = self.clock()
        self.error = None
        self.loads += 1
        return len(users)

    def close(self, wait_s: float = 2.0) -> None:
        """No more loads; wait briefly for one in flight (it stops after its current page)."""
        self._closed = True
        self._done.wait(timeout=wait_s)

    def _run(self) -> None:
        try:
            count = self.load(Deadline(LOAD_S))
            self.log.info("connector=%s user directory loaded: %d active users", self.name, count)
        except ConnectorError as exc:
            self.error = exc
            self._next_try = self.clock() + (DENIED_RETRY_S if isinstance(exc, AuthError) else RETRY_S)
            self.log.warning("connector=%s user directory not loaded (%s): %s", self.name, exc.kind, exc)
        except Exception:  # a bug: logged, and the connector answers without the directory
            self._next_try = self.clock() + RETRY_S
            self.log.exception("connector=%s user directory load failed", self.name)
        finally:
            self._done.set()
