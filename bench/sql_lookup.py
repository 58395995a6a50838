"""The ``sql`` connector against a million-row table: an uncached lookup next to the database's
bare round trip.

    python bench/sql_lookup.py                          # PostgreSQL, MariaDB and SQLite, 1,000,000 rows
    python bench/sql_lookup.py --backends sqlite --rows 200000 --lookups 5000

For each backend it creates a database of its own (PostgreSQL and MariaDB on 127.0.0.1 as in the
test suite; SQLite in a temporary file), fills ``customers`` with `--rows` accounts
(generate_series / a recursive CTE, inside the database), indexes the phone column, then times:

- ``bare``: ``SELECT 1`` on a plain driver connection (the round trip nothing can beat);
- ``query``: the connector's own SELECT with the caller's bound forms, on that plain connection;
- ``lookup``: `SqlConnector.lookup` (pool checkout with pre-ping, statement timeout, read-only
  session, the SELECT, the rollback on return): what one uncached caller costs.

Target (issue 15): ``lookup`` p50 minus ``bare`` p50 under 5 ms. Prints one JSON line per
backend; the database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from dialwhom.integrations.base import ConnectorContext
from dialwhom.integrations.connectors.sql import SqlConnector, _params
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Query
from dialwhom.testing import build_connector

TARGET_MS = 5.0
QUERY = ("SELECT owner_email, owner_name, team, account_id AS record_id, account_name AS record_name"
         " FROM customers WHERE phone IN :phones LIMIT 1")
SCHEMA = ("CREATE TABLE customers (account_id VARCHAR(40) PRIMARY KEY, account_name VARCHAR(200), phone VARCHAR(40),"
          " owner_email VARCHAR(200), owner_name VARCHAR(200), team VARCHAR(40))")
FILL = {
    "postgresql": "INSERT INTO customers SELECT 'A-' || i, 'Account ' || i, '+91' || (9000000000 + i), 'rep' || (i % 50) || '@example.com',"
                  " 'Rep ' || (i % 50), 'team' || (i % 5) FROM generate_series(1, :n) AS i",
    "mariadb": "INSERT INTO customers SELECT CONCAT('A-', seq), CONCAT('Account ', seq), CONCAT('+91', 9000000000 + seq),"
               " CONCAT('rep', seq % 50, '@example.com'), CONCAT('Rep ', seq % 50), CONCAT('team', seq % 5) FROM seq_1_to_{n}",
    "sqlite": "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) INSERT INTO customers"
              " SELECT 'A-' || i, 'Account ' || i, '+91' || (9000000000 + i), 'rep' || (i % 50) || '@example.com',"
              " 'Rep ' || (i % 50), 'team' || (i % 5) FROM s",
}
ADMIN = {"postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/"}


def percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 3), "p99": round(ms[int(len(ms) * 0.99)], 3)}


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run(backend: str, rows: int, lookups: int, tmp: Path) -> dict:
    name = f"dialwhom_bench_{uuid.uuid4().hex[:8]}"
    admin = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'owners.db'}"
        fill_url = url
    else:
        admin = sa.create_engine(ADMIN[backend], isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
        url = ADMIN[backend].rsplit("/", 1)[0] + f"/{name}"
        fill_url = url
    try:
        t = time.perf_counter()
        filler = sa.create_engine(fill_url)
        with filler.begin() as c:
            c.execute(sa.text(SCHEMA))
            fill = FILL[backend].format(n=rows)
            c.execute(sa.text(fill), {"n": rows} if ":n" in fill else {})
            c.execute(sa.text("CREATE INDEX customers_phone ON customers (phone)"))
        with filler.begin() as c:
            c.execute(sa.text("ANALYZE" if backend != "mariadb" else "ANALYZE TABLE customers"))
        filler.dispose()
        fill_s = time.perf_counter() - t

        rnd = random.Random(3)
        numbers = [f"+91{9000000000 + rnd.randint(1, rows)}" for _ in range(lookups)]
        conn = build_connector(SqlConnector, {"url": url, "phone_query": QUERY, "pool_size": 2}, context=ConnectorContext(id="bench", base_dir=tmp, timeout_s=2.0))
        try:
            stmt = conn._statements["phone"][0]
            plain = sa.create_engine(url if backend != "sqlite" else url, poolclass=sa.pool.StaticPool if backend == "sqlite" else None)
            with plain.connect() as c:
                bare = timed(lambda i: c.exec_driver_sql("SELECT 1").fetchone(), lookups)
                query = timed(lambda i: c.execute(stmt, _params(Query("phone", numbers[i]), ("phones",))).fetchone(), lookups)
            plain.dispose()
            for n in numbers[:50]:  # open the pool's connections before timing
                conn.lookup(Query("phone", n), deadline=Deadline(2.0))
            found = []
            lookup = timed(lambda i: found.append(conn.lookup(Query("phone", numbers[i]), deadline=Deadline(2.0))), lookups)
            assert all(m is not None and m.owner.email for m in found), "every benchmarked caller is in the table"
            missing = timed(lambda i: conn.lookup(Query("phone", f"+9180{i:08d}"), deadline=Deadline(2.0)), lookups)
        finally:
            conn.close()
    finally:
        if admin is not None:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if backend == "postgresql" else "")))
            admin.dispose()
    b, q, lk = percentiles(bare), percentiles(query), percentiles(lookup)
    return {
        "backend": backend, "rows": rows, "lookups": lookups, "fill_s": round(fill_s, 1),
        "bare_ms": b, "query_ms": q, "lookup_ms": lk, "not_found_lookup_ms": percentiles(missing),
        "lookup_over_bare_p50_ms": round(lk["p50"] - b["p50"], 3),
        "meets_target": lk["p50"] - b["p50"] < TARGET_MS,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgresql,mariadb,sqlite")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=3000)
    args = ap.parse_args(argv)
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="dialwhom-sql-") as tmp:
            try:
                print(json.dumps(run(backend, args.rows, args.lookups, Path(tmp))), flush=True)
            except sa.exc.OperationalError as exc:
                print(json.dumps({"backend": backend, "skipped": f"not reachable: {type(exc.orig).__name__}"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
