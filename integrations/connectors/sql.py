"""The ``sql`` connector: the caller's owner from the team's own database (docs/crm/sql.md).

One parameterised query per kind of key, through SQLAlchemy 2 (PostgreSQL with psycopg 3,
MySQL/MariaDB with PyMySQL, SQLite): https://docs.sqlalchemy.org/en/20/core/connections.html.
The caller's number is bound as ``:phones`` (its E.164 form and the other forms people store,
an expanding IN list) or ``:phone`` (E.164 alone); an account id as ``:account``. Values are
never formatted into SQL.

Each lookup checks a connection out of a small pool (pre-pinged), caps the statement at what is
left of the request's deadline (PostgreSQL ``statement_timeout`` local to the transaction,
MariaDB ``max_statement_time``, MySQL ``MAX_EXECUTION_TIME``, SQLite a progress handler),
runs one SELECT and takes its first row. Sessions are read-only unless ``read_only: false``.
Driver errors become connector errors by their codes alone: no SQL, value or password is ever
quoted.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from dialwhom.sdk import (
    AuthError,
    BadResponse,
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    Deadline,
    Field,
    Match,
    Owner,
    Query,
    Record,
    to_e164,
    variants,
)

#: columns a query may return (matched case-insensitively); at least one of OWNER_KEYS
COLUMNS = ("owner_id", "owner_email", "owner_name", "owner_phone", "owner_team", "owner_active",
           "team", "record_type", "record_id", "record_name")
OWNER_KEYS = ("owner_id", "owner_email", "owner_phone")
#: the binds each query may use
BINDS = {"phone": ("phones", "phone"), "account": ("account",)}
#: what `check` asks for: a number reserved for fiction (NANP 555-0100..0199) and an id nobody uses
CHECK_PHONE = "+12025550100"
CHECK_ACCOUNT = "dialwhom-check-no-such-account"
#: less time than this left: give up before touching the database
MIN_STATEMENT_S = 0.005
#: the drivers used when a URL names none (SQLAlchemy's own defaults, psycopg2 and mysqlclient, are not installed)
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}

_TRUE = {"1", "t", "true", "y", "yes", "on", "active"}
_FALSE = {"0", "f", "false", "n", "no", "off", "inactive"}


class SqlConnector(Connector):
    """Owners from a SQL database: one SELECT per lookup."""

    type_name = "sql"
    config_schema = (
        Field("url", str, required=True, secret=True,
              help="SQLAlchemy database URL: postgresql://user:pass@host/db, mysql://..., mariadb://..., sqlite:///file.db"),
        Field("phone_query", str, help="SELECT returning the owner columns for a caller; bind :phones (IN :phones) or :phone"),
        Field("account_query", str, help="SELECT returning the owner columns for an account id (CustomField, digits); bind :account"),
        Field("read_only", bool, default=True, help="open read-only sessions, so a query can never write"),
        Field("pool_size", int, default=4, min=1, max=32, help="connections kept open; also the most lookups in flight at once"),
    )

    def __init__(self, options, context: ConnectorContext):
        super().__init__(options, context)
        try:
            import sqlalchemy
        except ImportError:
            raise ConfigError("url", "the sql connector needs SQLAlchemy and a driver: pip install 'dialwhom[sql]'") from None
        self._sa = sqlalchemy
        self._statements = {kind: self._statement(kind, self.options.get(f"{kind}_query")) for kind in BINDS}
        self._statements = {k: v for k, v in self._statements.items() if v is not None}
        if not self._statements:
            raise ConfigError("phone_query", "set phone_query (bind :phones) and/or account_query (bind :account)")
        self.supports = tuple(self._statements)
        self.url = self._url(str(self.options["url"]))
        self.backend = self.url.get_backend_name()
        self.where = _where(self.url)
        self._local = threading.local()  # the deadline of the lookup running on this thread (for connect timeouts)
        self._slots = threading.BoundedSemaphore(self.options["pool_size"])
        self.engine = self._engine()

    # -- building ---------------------------------------------------------------------------------

    def _statement(self, kind: str, sql: str | None):
        if not sql or not sql.strip():
            return None
        allowed = BINDS[kind]
        try:
            binds = set(self._sa.text(sql).compile().params)
        except Exception:  # noqa: BLE001 - a text() that cannot compile is a config error, whatever the reason
            raise ConfigError(f"{kind}_query", "not a SQL statement SQLAlchemy can read") from None
        if not binds & set(allowed) or binds - set(allowed):
            raise ConfigError(f"{kind}_query", f"bind the caller with {' or '.join(':' + b for b in allowed)} and nothing else"
                              + (" (e.g. WHERE phone IN :phones)" if kind == "phone" else " (e.g. WHERE account_id = :account)"))
        stmt = self._sa.text(sql)
        if "phones" in binds:
            stmt = stmt.bindparams(self._sa.bindparam("phones", expanding=True))
        return stmt, tuple(sorted(binds))

    def _url(self, raw: str):
        from sqlalchemy.engine import make_url

        try:
            url = make_url(raw)
        except Exception:  # noqa: BLE001 - never echo the value: it holds the password
            raise ConfigError("url", "not a database URL; e.g. postgresql://dialwhom:${DB_PASSWORD}@db.internal/crm") from None
        backend = url.get_backend_name()
        if backend not in ("postgresql", "mysql", "mariadb", "sqlite"):
            raise ConfigError("url", f"'{backend}' is not supported; use postgresql://, mysql://, mariadb:// or sqlite:///")
        if url.drivername in DEFAULT_DRIVERS:
            url = url.set(drivername=DEFAULT_DRIVERS[url.drivername])
        if backend == "sqlite":
            if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
                raise ConfigError("url", "give SQLite a file: sqlite:///path/to/owners.db (relative to the config file's folder)")
            path = self.context.resolve_path(url.database)
            if not path.is_file():
                raise ConfigError("url", f"SQLite file not found: {path}")
            if self.options["read_only"]:  # mode=ro: SQLite opens it read-only, and never creates it
                url = url.set(database=f"file:{path}", query={"mode": "ro", "uri": "true"})
            else:
                url = url.set(database=str(path))
        return url

    def _engine(self):
        sa = self._sa
        timeout = self.context.timeout_s
        if self.backend == "postgresql":
            connect_args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(timeout))}  # libpq's floor is 2 s
        elif self.backend == "sqlite":
            connect_args = {"timeout": timeout, "check_same_thread": False}
        else:
            connect_args = {"connect_timeout": timeout, "read_timeout": timeout + 1, "write_timeout": timeout + 1}
        try:
            engine = sa.create_engine(
                self.url, connect_args=connect_args, pool_size=self.options["pool_size"], max_overflow=0,
                pool_timeout=timeout, pool_pre_ping=True, pool_recycle=1800, hide_parameters=True,
            )
        except Exception as exc:  # noqa: BLE001 - a missing driver, a bad option: say which, never the URL
            raise ConfigError("url", f"cannot use {self.url.drivername}: {type(exc).__name__} (pip install 'dialwhom[sql]')") from None
        sa.event.listen(engine, "do_connect", self._clip_connect)
        sa.event.listen(engine, "connect", self._session_setup)
        return engine

    def _clip_connect(self, dialect, conn_rec, cargs, cparams) -> None:
        """A new connection may take only what is left of the lookup that asked for it."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return
        left = deadline.clip(self.context.timeout_s)
        if self.backend == "postgresql":
            cparams["connect_timeout"] = max(2, math.ceil(left))
        elif self.backend in ("mysql", "mariadb"):
            cparams["connect_timeout"] = max(0.05, left)

    def _session_setup(self, dbapi_conn, conn_rec) -> None:
        """Make every session read-only (unless configured otherwise), once per connection."""
        if not self.options["read_only"]:
            return
        statement = {
            "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "sqlite": "PRAGMA query_only = ON",
        }.get(self.backend, "SET SESSION TRANSACTION READ ONLY")
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        if self.backend != "sqlite":
            dbapi_conn.commit()

    # -- lookups ----------------------------------------------------------------------------------

    def lookup(self, query: Query, *, deadline: Deadline) -> Match | None:
        entry = self._statements.get(query.kind)
        if entry is None:
            return None
        row, keys = self._run(entry, _params(query, entry[1]), deadline)
        return self._match(row, keys)

    def check(self, *, deadline: Deadline) -> str:
        notes = []
        for kind, entry in self._statements.items():
            probe = Query("phone", CHECK_PHONE) if kind == "phone" else Query("account", CHECK_ACCOUNT, "custom_field")
            started = time.monotonic()
            row, keys = self._run(entry, _params(probe, entry[1]), deadline)
            _owner_columns(keys)
            ms = (time.monotonic() - started) * 1000
            found = "no row for the test value" if row is None else "a row for the test value, which should match nothing"
            notes.append(f"{kind}_query ran in {ms:.0f} ms ({found})")
        return f"{self.where}{', read-only' if self.options['read_only'] else ''}: " + "; ".join(notes)

    def close(self) -> None:
        self.engine.dispose()
        super().close()

    def _run(self, entry, params: dict[str, Any], deadline: Deadline) -> tuple[Any, tuple[str, ...]]:
        """Run one statement inside the deadline; the first row (or None) and the column names."""
        stmt, _ = entry
        seconds = deadline.clip(self.context.timeout_s)
        if seconds < MIN_STATEMENT_S:
            raise ConnectorTimeout(f"{self.id}: no time left for the query", connector=self.id)
        if not self._slots.acquire(timeout=seconds):
            raise ConnectorTimeout(f"{self.id}: all {self.options['pool_size']} connections busy until the deadline", connector=self.id)
        self._local.deadline = deadline
        try:
            with self.engine.connect() as conn:
                cancel = self._limit(conn, deadline)
                try:
                    result = conn.execute(stmt, params)
                    if not result.returns_rows:
                        raise BadResponse(f"{self.id}: the query returns no rows; it must be a SELECT", connector=self.id)
                    keys = tuple(result.keys())
                    row = result.fetchone()
                    result.close()
                finally:
                    cancel()
            return row, keys
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver failure becomes a connector error, by its code alone
            raise self._translate(exc, deadline) from None
        finally:
            self._local.deadline = None
            self._slots.release()

    def _limit(self, conn, deadline: Deadline):
        """Cap this statement at the time left; return what undoes the cap (if anything must)."""
        left = max(MIN_STATEMENT_S, deadline.clip(self.context.timeout_s))
        if self.backend == "postgresql":  # local to the transaction the pool rolls back on return
            conn.execute(self._sa.text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(max(1, int(left * 1000)))})
        elif self.backend == "sqlite":
            raw = conn.connection.driver_connection
            ends = time.monotonic() + left
            raw.set_progress_handler(lambda: time.monotonic() > ends, 1000)  # non-zero: SQLite interrupts the statement
            return lambda: raw.set_progress_handler(None, 0)
        elif conn.dialect.is_mariadb:
            conn.execute(self._sa.text("SET SESSION max_statement_time = :s"), {"s": round(left, 6)})
        else:
            conn.execute(self._sa.text("SET SESSION MAX_EXECUTION_TIME = :ms"), {"ms": max(1, int(left * 1000))})
        return _nothing

    def _translate(self, exc: Exception, deadline: Deadline) -> ConnectorError:
        """The connector error for a driver or pool failure: codes and our own words only."""
        kind, what = _classify(self.backend, exc)
        if kind is ConnectorUnavailable and deadline.expired:
            kind, what = ConnectorTimeout, f"{what} at the deadline"
        return kind(f"{self.id}: {self.where}: {what}", connector=self.id)

    def _match(self, row, keys: tuple[str, ...]) -> Match | None:
        if row is None:
            return None
        names = _owner_columns(keys)
        cols = {name: _text(value) for name, value in zip(names, row) if name}
        notes = []
        email = cols.get("owner_email")
        if email and "@" not in email:
            notes.append("owner_email is not an email address: ignored")
            email = None
        phone = cols.get("owner_phone")
        e164 = to_e164(phone, self.context.region) if phone else None
        if phone and e164 is None:
            notes.append("owner_phone is not a phone number: ignored")
        owner = Owner(id=cols.get("owner_id"), email=email, name=cols.get("owner_name"), phone=e164,
                      team=cols.get("owner_team"), active=_flag(row[names.index("owner_active")]) if "owner_active" in names else None)
        if not (owner.id or owner.email or owner.phone):
            return None  # a record without an owner: nobody to ring
        record = None
        if any(cols.get(k) for k in ("record_type", "record_id", "record_name")):
            record = Record(cols.get("record_type"), cols.get("record_id"), cols.get("record_name"))
        return Match(owner=owner, team=cols.get("team"), record=record, notes=tuple(notes))


def _nothing() -> None:
    """Nothing to undo."""


def _params(query: Query, binds: tuple[str, ...]) -> dict[str, Any]:
    values = {"account": query.value.strip()} if query.kind == "account" else {"phone": query.value, "phones": variants(query.value)}
    return {b: values[b] for b in binds}


def _owner_columns(keys: tuple[str, ...]) -> list[str | None]:
    """The result's columns by contract name (None for others); BadResponse if no owner column."""
    names = [k.lower() if k.lower() in COLUMNS else None for k in keys]
    if not set(names) & set(OWNER_KEYS):
        raise BadResponse("the query returns none of owner_id, owner_email, owner_phone: name its columns, e.g. SELECT u.email AS owner_email")
    return names


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _flag(value: Any) -> bool | None:
    """owner_active as a boolean, from a boolean, 0/1 or a word; None when it says neither."""
    if value is None:
        return None
    if isinstance(value, (bool, int)):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _where(url) -> str:
    """Which database, for messages: backend, host and database name; never the user or password."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite {str(url.database).removeprefix('file:').rsplit('/', 1)[-1]}"
    port = f":{url.port}" if url.port else ""
    return f"{url.get_backend_name()} {url.host or 'localhost'}{port}/{url.database or ''}"


# Driver error codes (PostgreSQL SQLSTATE, MySQL/MariaDB error numbers, SQLite result codes)
# and what they mean to the caller.
_PG_AUTH = ("28", "42501")          # invalid authorization (bad password, unknown role); insufficient privilege
_PG_AUTH_SAID = ("password authentication failed", "no pg_hba.conf entry", "authentication failed", "permission denied")
_PG_TIMEOUT = ("57014",)            # query_canceled: our statement_timeout
_PG_UNAVAILABLE = ("08", "53", "57P", "3D000", "58")  # connection, resources, shutdown, no such database, system
_PG_READ_ONLY = ("25006",)
_MY_AUTH = {1044, 1045, 1142, 1143, 1227, 1370, 1698}
_MY_TIMEOUT = {1969, 3024, 1317}    # MariaDB max_statement_time, MySQL MAX_EXECUTION_TIME, interrupted
_MY_UNAVAILABLE = {1040, 1049, 1053, 1205, 2002, 2003, 2006, 2013, 2055}
_MY_READ_ONLY = {1792, 1290}
_LITE_TIMEOUT = {"SQLITE_INTERRUPT"}
_LITE_UNAVAILABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_FULL"}
_LITE_READ_ONLY = {"SQLITE_READONLY"}
_LITE_AUTH = {"SQLITE_AUTH"}


#: what each kind of failure becomes, and the words for it
_OUTCOMES: dict[str, tuple[type[ConnectorError], str]] = {
    "timeout": (ConnectorTimeout, "the database did not answer in time"),
    "auth": (AuthError, "credentials or permissions refused; check the user, password and GRANT SELECT"),
    "unavailable": (ConnectorUnavailable, "the database is unreachable, busy or refused the connection"),
    "read_only": (BadResponse, "the query tried to write in a read-only session"),
    "failed": (BadResponse, "the query failed"),
}


def _classify(backend: str, exc: Exception) -> tuple[type[ConnectorError], str]:
    """(error class, short reason) for `exc`, from codes only (driver messages may hold values)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):
        return ConnectorTimeout, "no free connection in the pool"
    orig = getattr(exc, "orig", None)
    if orig is None:
        outcome, tag = "failed", type(exc).__name__
    else:
        outcome, tag = {"postgresql": _postgresql, "sqlite": _sqlite}.get(backend, _mysql)(orig)
    kind, words = _OUTCOMES[outcome]
    return kind, f"{words} ({tag})"


def _postgresql(orig: Exception) -> tuple[str, str]:
    state = getattr(orig, "sqlstate", None) or ""
    tag = f"sqlstate {state}" if state else type(orig).__name__
    # A failed connect carries no SQLSTATE, only libpq's text: read it to choose the class, never to show it.
    said = "" if state else str(orig).lower()
    if type(orig).__name__ == "ConnectionTimeout" or state in _PG_TIMEOUT or "timeout expired" in said:
        return "timeout", tag
    if state.startswith(_PG_AUTH) or any(w in said for w in _PG_AUTH_SAID) or ("role" in said and "does not exist" in said):
        return "auth", tag
    if not state or state.startswith(_PG_UNAVAILABLE):
        return "unavailable", tag
    return ("read_only" if state in _PG_READ_ONLY else "failed"), tag


def _sqlite(orig: Exception) -> tuple[str, str]:
    name = getattr(orig, "sqlite_errorname", "") or ""
    family = "_".join(name.split("_", 2)[:2])  # SQLITE_IOERR_READ -> SQLITE_IOERR
    tag = name or type(orig).__name__
    for outcome, names in (("timeout", _LITE_TIMEOUT), ("unavailable", _LITE_UNAVAILABLE), ("read_only", _LITE_READ_ONLY), ("auth", _LITE_AUTH)):
        if family in names:
            return outcome, tag
    return "failed", tag


def _mysql(orig: Exception) -> tuple[str, str]:
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    tag = f"error {code}" if code is not None else type(orig).__name__
    if code in _MY_TIMEOUT or (code == 2003 and "timed out" in str(orig.args[1:2])):
        return "timeout", tag
    if code in _MY_AUTH:
        return "auth", tag
    if code is None or code in _MY_UNAVAILABLE:
        return "unavailable", tag
    return ("read_only" if code in _MY_READ_ONLY else "failed"), tag
