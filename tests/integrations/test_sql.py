"""The ``sql`` connector against the real PostgreSQL and MariaDB servers on this machine, and SQLite.

Each backend gets its own uniquely named database (a temporary file for SQLite), created and
seeded once for the module and dropped afterwards. A server that is not running skips its
tests with the reason; CI runs both.
"""

from __future__ import annotations

import sample
import threading
import time
import uuid

import pytest

sa = pytest.importorskip("sqlalchemy", reason="the sql connector's extra is not installed: pip install -e '.[test]'")

from dialwhom.integrations.base import ConnectorContext  # noqa: E402
from dialwhom.integrations.connectors.sql import SqlConnector  # noqa: E402
from dialwhom.integrations.registry import registry_from_classes  # noqa: E402
from dialwhom.routing.deadline import Deadline  # noqa: E402
from dialwhom.routing.errors import AuthError, BadResponse, ConfigError, ConnectorTimeout, ConnectorUnavailable  # noqa: E402
from dialwhom.routing.model import Owner, Query  # noqa: E402
from dialwhom.testing import DEADLINE_SLACK_S, ConnectorContract, build_connector  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MY_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
CALLER = "+919876543210"

SCHEMA = (
    "CREATE TABLE customers (account_id VARCHAR(40) PRIMARY KEY, account_name VARCHAR(200), phone VARCHAR(40),"
    " owner_email VARCHAR(200), owner_name VARCHAR(200), team VARCHAR(40), active INTEGER)",
    "CREATE INDEX customers_phone ON customers (phone)",
)
# numbers stored as people type them: the connector binds the caller's forms, the database matches one
ROWS = [
    {"account_id": "A-1", "account_name": "Acme", "phone": "098765 43210", "owner_email": "asha@example.com", "owner_name": "Asha Rao", "team": "north", "active": 1},
    {"account_id": "B-7", "account_name": "Globex", "phone": "+91 98000 00555", "owner_email": "vikram@example.com", "owner_name": "Vikram", "team": None, "active": 0},
    {"account_id": "C-3", "account_name": "No owner", "phone": "+919811100000", "owner_email": None, "owner_name": None, "team": None, "active": None},
]
COLUMNS = ("owner_email, owner_name, team, active AS owner_active, 'account' AS record_type, account_id AS record_id,"
           " account_name AS record_name FROM customers")
PHONE_QUERY = f"SELECT {COLUMNS} WHERE phone IN :phones ORDER BY account_id"
ACCOUNT_QUERY = f"SELECT {COLUMNS} WHERE account_id = :account"
SLOW = {  # the same lookup, made to take 2 s
    "postgresql": "SELECT c.owner_email FROM customers c, pg_sleep(2) WHERE c.phone IN :phones",
    "mariadb": "SELECT owner_email FROM customers WHERE phone IN :phones AND SLEEP(2) = 0",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000)"
              " SELECT owner_email FROM customers, (SELECT max(i) FROM n) WHERE phone IN :phones",
}


def _seed(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for ddl in SCHEMA:
                conn.execute(sa.text(ddl))
            conn.execute(sa.text("INSERT INTO customers VALUES (:account_id, :account_name, :phone, :owner_email, :owner_name, :team, :active)"), ROWS)
    finally:
        engine.dispose()


def _admin(url: str):
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError:
        engine.dispose()
        return None
    return engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def db(request, tmp_path_factory):
    """(backend, URL of a freshly seeded database); dropped after the module."""
    name = f"dialwhom_t_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sql") / "owners.db"
        _seed(f"sqlite:///{path}")
        yield "sqlite", f"sqlite:///{path}"
        return
    admin = _admin(PG_ADMIN if request.param == "postgresql" else MY_ADMIN)
    if admin is None:
        pytest.skip(f"{request.param} is not reachable on 127.0.0.1 (CI runs it)")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        url = f"postgresql://postgres@127.0.0.1:5432/{name}" if request.param == "postgresql" else f"mariadb://root@127.0.0.1:3306/{name}"
        _seed(url.replace("postgresql://", "postgresql+psycopg://").replace("mariadb://", "mariadb+pymysql://"))
        yield request.param, url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if request.param == "postgresql" else "")))
        admin.dispose()


@pytest.fixture
def make(db, tmp_path):
    """Factory: a connector on the module's database (options override); closed afterwards."""
    built = []

    def build(**options):
        opts = {"url": db[1], "phone_query": PHONE_QUERY, "account_query": ACCOUNT_QUERY, **options}
        conn = build_connector(SqlConnector, opts, context=ConnectorContext(id="db", base_dir=tmp_path, timeout_s=2.0))
        built.append(conn)
        return conn

    yield build
    for conn in built:
        conn.close()


def phone(conn, number=CALLER, seconds=2.0):
    return conn.lookup(Query("phone", number), deadline=Deadline(seconds))


def account(conn, value, seconds=2.0):
    return conn.lookup(Query("account", value, "custom_field"), deadline=Deadline(seconds))


# --- answers ----------------------------------------------------------------------------------------


def test_caller_stored_in_another_form_is_found_with_its_owner_columns(make):
    match = phone(make())
    assert match.owner == Owner(email="asha@example.com", name="Asha Rao", active=True)
    assert match.team == "north"
    assert (match.record.type, match.record.id, match.record.name) == ("account", "A-1", "Acme")
    other = phone(make(), "+919800000555")
    assert other.owner.email == "vikram@example.com" and other.owner.active is False and other.team is None


def test_unknown_caller_and_a_row_without_owner_are_not_found(make):
    conn = make()
    assert phone(conn, "+919811122233") is None
    assert phone(conn, "+919811100000") is None  # C-3 has no owner: nobody to ring


def test_account_lookup(make):
    assert account(make(), " B-7 ").owner.email == "vikram@example.com"


@pytest.mark.parametrize("attempt", ["x' OR '1'='1", "A-1' --", "'; DROP TABLE customers; --", "A-1\\' OR 1=1 #"])
def test_sql_in_a_custom_field_stays_a_bound_value(make, attempt):
    conn = make()
    assert account(conn, attempt) is None
    assert phone(conn).record.id == "A-1", "the table is still there, untouched"


def test_the_callers_number_is_bound_never_written_into_the_sql(make):
    conn = make()
    seen = []
    sa.event.listen(conn.engine, "before_cursor_execute", lambda c, cur, statement, params, ctx, many: seen.append((statement, params)))
    phone(conn)
    statement, params = next((s, p) for s, p in seen if "customers" in s)
    assert "9876543210" not in statement and "43210" not in statement
    flat = str(params)
    assert "+919876543210" in flat and "098765 43210" in flat, "the E.164 form and the stored forms are bound"


def test_without_account_query_the_connector_answers_phones_only(make):
    conn = make(account_query=None)
    assert conn.supports == ("phone",)
    assert account(conn, "A-1") is None


# --- the deadline, the pool, read-only --------------------------------------------------------------


def test_a_slow_query_is_cut_at_the_deadline_and_the_connection_is_reused(db, make):
    conn = make(phone_query=SLOW[db[0]], pool_size=1)
    started = time.monotonic()
    with pytest.raises(ConnectorTimeout) as info:
        phone(conn, seconds=0.3)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + DEADLINE_SLACK_S, f"the statement ran {elapsed:.2f}s past a 0.3s deadline"
    assert "owner_email" not in str(info.value) and "9876543210" not in str(info.value)
    # the server (or SQLite) stopped the statement itself: not just the caller giving up
    assert {"postgresql": "sqlstate 57014", "mariadb": "error 1969", "sqlite": "SQLITE_INTERRUPT"}[db[0]] in str(info.value)
    fast = make(pool_size=1)
    assert phone(fast).owner.email == "asha@example.com"
    # the one pooled connection of the slow connector is still usable: its next statement runs
    with pytest.raises(ConnectorTimeout):
        phone(conn, seconds=0.1)


def test_a_full_pool_costs_the_caller_the_deadline_not_more(tmp_path, db, make):
    if db[0] != "sqlite":
        pytest.skip("the bulkhead is the same code on every backend")
    slow = make(phone_query=SLOW["sqlite"], pool_size=1)
    busy = threading.Thread(target=lambda: pytest.raises(ConnectorTimeout, phone, slow, seconds=0.5))
    busy.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(ConnectorTimeout) as info:
        phone(slow, seconds=0.2)
    assert time.monotonic() - started < 0.2 + DEADLINE_SLACK_S
    assert "connections busy" in str(info.value)
    busy.join(5)


def test_sessions_are_read_only(make, db):
    conn = make(phone_query="DELETE FROM customers WHERE phone IN :phones RETURNING owner_email")
    with pytest.raises(BadResponse) as info:
        phone(conn)
    assert "read-only" in str(info.value)
    assert phone(make()).owner.email == "asha@example.com", "nothing was deleted"


# --- errors: translated, nothing secret ---------------------------------------------------------------


def test_a_wrong_password_is_an_auth_error_that_shows_no_secret(db, tmp_path):
    """MariaDB checks passwords; PostgreSQL here trusts 127.0.0.1, so an unknown role is its credential failure."""
    if db[0] == "sqlite":
        pytest.skip("SQLite has no credentials")
    secret = "wrong-Pa55word-xyzzy"
    user = f"dwt_{uuid.uuid4().hex[:8]}"
    if db[0] == "mariadb":
        admin = _admin(MY_ADMIN)
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'the-right-one'"))
        url = db[1].replace("root@", f"{user}:{secret}@")
    else:
        admin = None
        url = db[1].replace("postgres@", f"{user}:{secret}@")
    conn = build_connector(SqlConnector, {"url": url, "phone_query": PHONE_QUERY}, context=ConnectorContext(id="db", base_dir=tmp_path))
    try:
        with pytest.raises(AuthError) as info:
            phone(conn)
        with pytest.raises(AuthError) as checked:
            conn.check(deadline=Deadline(2.0))
        for text in (str(info.value), str(checked.value), repr(conn), str(conn.options)):
            assert secret not in text and user not in text, text
        assert "credentials" in str(info.value)
    finally:
        conn.close()
        if admin is not None:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP USER '{user}'@'127.0.0.1'"))
            admin.dispose()


def test_an_unreachable_server_is_unavailable(db, tmp_path):
    if db[0] == "sqlite":
        pytest.skip("SQLite has no server")
    url = db[1].replace(":5432/", ":1/").replace(":3306/", ":1/").replace("@", ":s3cret-pass@")
    conn = build_connector(SqlConnector, {"url": url, "phone_query": PHONE_QUERY}, context=ConnectorContext(id="db", base_dir=tmp_path))
    try:
        with pytest.raises(ConnectorUnavailable) as info:
            phone(conn)
        assert "s3cret-pass" not in str(info.value) and "127.0.0.1:1/" in str(info.value)
    finally:
        conn.close()


def test_a_broken_query_is_a_bad_response_without_the_sql(make):
    conn = make(phone_query="SELECT owner_email FROM no_such_table WHERE phone IN :phones")
    with pytest.raises(BadResponse) as info:
        phone(conn)
    assert "no_such_table" not in str(info.value) and "SELECT" not in str(info.value)
    with pytest.raises(BadResponse):
        conn.check(deadline=Deadline(2.0))


def test_a_query_without_owner_columns_is_a_bad_response(make):
    with pytest.raises(BadResponse) as info:
        phone(make(phone_query="SELECT account_id FROM customers WHERE phone IN :phones"))
    assert "owner_email" in str(info.value)


def test_check_runs_the_queries_for_values_that_match_nothing(make, db):
    note = make().check(deadline=Deadline(2.0))
    assert "phone_query ran in" in note and "account_query ran in" in note and "no row for the test value" in note
    assert "read-only" in note
    assert "root" not in note and "postgres@" not in note


# --- config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, key, words", [
    ({"phone_query": "SELECT owner_email FROM customers WHERE phone = '+919876543210'"}, "phone_query", ":phones"),
    ({"phone_query": "SELECT owner_email FROM customers WHERE phone IN :phones AND team = :team"}, "phone_query", "nothing else"),
    ({"phone_query": None, "account_query": "SELECT owner_email FROM customers WHERE account_id = :id"}, "account_query", ":account"),
    ({"phone_query": None}, "phone_query", "and/or account_query"),
    ({"url": "oracle://scott:tiger@db/orcl"}, "url", "not supported"),
    ({"url": "postgresql://user:pw@host:notaport/db"}, "url", "not a database URL"),
    ({"url": "sqlite:///missing.db"}, "url", "SQLite file not found"),
    ({"url": "sqlite://"}, "url", "give SQLite a file"),
])
def test_config_errors_name_the_key_and_never_the_url(tmp_path, options, key, words):
    opts = {"url": "sqlite:///x.db", "phone_query": PHONE_QUERY, **options}
    (tmp_path / "x.db").touch()
    with pytest.raises(ConfigError) as info:
        build_connector(SqlConnector, {k: v for k, v in opts.items() if v is not None}, context=ConnectorContext(id="db", base_dir=tmp_path))
    assert info.value.key == f"connectors[0].{key}"
    assert words in info.value.message
    assert "tiger" not in str(info.value) and "pw@" not in str(info.value)


# --- the contract kit (SQLite), and end to end through the app -------------------------------------------


class TestSqlContract(ConnectorContract):
    connector_class = SqlConnector
    makes_http_calls = False
    expected_owner = Owner(email="asha@example.com", name="Asha Rao")
    bad_options = [({"phone_query": "SELECT owner_email FROM customers"}, "phone_query"), ({"url": "sqlite:///nope.db"}, "url")]

    def make_options(self, tmp_path):
        _seed(f"sqlite:///{tmp_path / 'owners.db'}")
        return {"url": "sqlite:///owners.db", "phone_query": PHONE_QUERY, "account_query": ACCOUNT_QUERY}


def test_e2e_a_seeded_caller_rings_its_owner_then_the_team(db):
    from dialwhom.app import create_app

    config = {
        "default_region": "IN",
        "budget_ms": 2000,
        "connectors": [{"id": "crm", "type": "sql", "url": db[1], "phone_query": PHONE_QUERY, "account_query": ACCOUNT_QUERY}],
        "reps": [{"owner": "asha@example.com", "phone": sample.ASHA, "team": "north"},
                 {"owner": "vikram@example.com", "phone": sample.MEERA}],
        "teams": {"north": {"backup": [sample.VIKRAM]}},
        "fallback": [sample.FALLBACK],
    }
    app = create_app(config, registry=registry_from_classes([SqlConnector]))
    try:
        client = app.test_client()
        known = client.get("/exotel/dial-whom", query_string={"CallSid": "c1", "From": "09876543210"})
        assert known.get_data(as_text=True).split(",")[:2] == [sample.ASHA, sample.VIKRAM]
        by_field = client.get("/exotel/dial-whom", query_string={"CallSid": "c2", "From": "09811122233", "CustomField": "B-7"})
        # B-7's owner is inactive in the database (active = 0): found, and left out of the plan
        assert by_field.get_data(as_text=True) == sample.FALLBACK
        assert "via=crm" in by_field.headers["X-Dialwhom-Trace"] and "skipped=owner inactive in the CRM" in by_field.headers["X-Dialwhom-Trace"]
        injected = client.get("/exotel/dial-whom", query_string={"CallSid": "c3", "From": "09811122233", "CustomField": "x' OR '1'='1"})
        assert injected.get_data(as_text=True) == sample.FALLBACK
    finally:
        app.extensions["dialwhom"].close()
