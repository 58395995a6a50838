"""The connector contract test kit: subclass `ConnectorContract` in your tests and it checks
your connector the way the service will use it (docs/writing-a-connector.md, "Run the kit").

The smallest use, for a connector that calls a JSON API::

    import responses
    from dialwhom.testing import ConnectorContract
    from my_connector import MyCrm

    class TestMyCrm(ConnectorContract):
        connector_class = MyCrm
        options = {"base_url": "https://crm.test", "api_key": "test-key-123456"}

        def answer_found(self, fake_http, query):
            fake_http.get("https://crm.test/v1/contacts", json={"contacts": [...]})

        def answer_not_found(self, fake_http, query):
            fake_http.get("https://crm.test/v1/contacts", json={"contacts": []})

`fake_http` is a started `responses.RequestsMock`: every request any connector makes during a
kit test goes to it, and a request it has no answer for fails like a refused connection. The
kit itself answers *every* request with each transport fault (connection refused, timeouts,
5xx, 429, 401/403, HTML and broken JSON bodies, a server that hangs) and checks the connector
turns it into the right `dialwhom.routing.errors` class, inside the deadline, with no secret and no
full phone number in its repr, its logs or its error messages. It also derives bad values from
`config_schema` and checks each is refused with a `ConfigError` naming the key.

A connector that makes no HTTP calls (a file, a database driver) sets
``makes_http_calls = False``: the transport-fault checks are skipped, and any HTTP call it does
make fails the found/not-found checks. Every check has an id (``found``, ``fault:http-503``,
``config:missing-api_key``, ...); `waive` maps ids to the reason a connector cannot meet them,
and the check is skipped with that reason.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import phonenumbers
import pytest
import requests
import responses

from dialwhom.sdk import (
    FRAMEWORK_CONNECTOR_KEYS,
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
    RateLimited,
    Record,
    Secret,
    to_e164,
    validate_options,
)

__all__ = [
    "ConnectorContract", "Fault", "FAULTS", "BadConfig", "schema_bad_configs",
    "build_connector", "assert_well_formed_match", "FOUND_PHONE", "NOT_FOUND_PHONE", "GROUP",
]

GROUP = "dialwhom.connectors"
#: the caller the kit's found/not-found checks ask about unless a subclass says otherwise
FOUND_PHONE = "+919876543210"
NOT_FOUND_PHONE = "+919811122233"
#: how late a lookup may finish after its deadline (thread start-up, slow CI machines)
DEADLINE_SLACK_S = 0.3
#: the kit's hanging store gives up after this long even if a connector set no timeout
HANG_CAP_S = 5.0
PREFIX = "connectors[0]"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_ANY_URL = re.compile(r".*")
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


# --- building connectors as the service does ------------------------------------------------------


def build_connector(
    cls: type[Connector],
    options: Mapping[str, Any],
    *,
    context: ConnectorContext | None = None,
    prefix: str = PREFIX,
) -> Connector:
    """Validate `options` against the class's schema and build it, as the registry does.

    A `ConfigError` raised by the connector's ``__init__`` gets its key prefixed the same way
    (``url`` becomes ``connectors[0].url``), so tests see the key an admin would.
    """
    validated = validate_options(cls.config_schema, options, prefix)
    try:
        return cls(validated, context or ConnectorContext(id="contract"))
    except ConfigError as exc:
        if exc.key.startswith("connectors["):
            raise
        raise ConfigError(f"{prefix}.{exc.key}", exc.message) from None


def assert_well_formed_match(match: Any, *, region: str = "IN") -> Match:
    """Fail unless `match` is a `Match` the routing service can use; return it."""
    assert isinstance(match, Match), f"lookup returned {type(match).__name__}, not a Match or None"
    owner = match.owner
    assert isinstance(owner, Owner), f"Match.owner is {type(owner).__name__}, not an Owner"
    for name in ("id", "email", "name", "phone", "team"):
        value = getattr(owner, name)
        assert value is None or (isinstance(value, str) and value.strip() == value and value), (
            f"Owner.{name} must be a non-empty stripped str or None, got {value!r}"
        )
    assert owner.id or owner.email or owner.phone, (
        "a found customer needs an owner the service can ring: set Owner.id or Owner.email "
        "(matched against reps[].owner) or Owner.phone; if the record has no owner, return None"
    )
    if owner.email is not None:
        assert "@" in owner.email, f"Owner.email {owner.email!r} is not an email address"
    if owner.phone is not None:
        assert to_e164(owner.phone, region) is not None, f"Owner.phone {owner.phone!r} is not a phone number"
    assert match.team is None or (isinstance(match.team, str) and match.team), f"Match.team must be a str or None, got {match.team!r}"
    if match.record is not None:
        assert isinstance(match.record, Record), f"Match.record is {type(match.record).__name__}, not a Record"
        for name in ("type", "id", "name"):
            value = getattr(match.record, name)
            assert value is None or isinstance(value, str), f"Record.{name} must be a str or None, got {value!r}"
    assert isinstance(match.notes, tuple) and all(isinstance(n, str) for n in match.notes), (
        f"Match.notes must be a tuple of str, got {match.notes!r}"
    )
    return match


# --- transport faults ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One way a store can fail, and the connector error it must become."""

    name: str
    expect: type[ConnectorError]
    status: int = 200
    body: Any = ""  # bytes/str, or an exception raised instead of answering
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None

    def install(self, fake_http: responses.RequestsMock) -> None:
        """Answer every request, whatever its method and URL, with this fault."""
        for method in _METHODS:
            fake_http.add(method, _ANY_URL, status=self.status, body=self.body,
                          content_type=self.content_type, headers=dict(self.headers or {}))


FAULTS: tuple[Fault, ...] = (
    Fault("connect-refused", ConnectorUnavailable, body=requests.exceptions.ConnectionError("[Errno 111] Connection refused")),
    Fault("connect-timeout", ConnectorTimeout, body=requests.exceptions.ConnectTimeout("connect timed out")),
    Fault("read-timeout", ConnectorTimeout, body=requests.exceptions.ReadTimeout("read timed out")),
    Fault("http-500", ConnectorUnavailable, status=500, body='{"error": "internal"}'),
    Fault("http-502", ConnectorUnavailable, status=502, body="<html><body>Bad Gateway</body></html>", content_type="text/html"),
    Fault("http-503", ConnectorUnavailable, status=503, body=""),
    Fault("http-429", RateLimited, status=429, body='{"error": "slow down"}', headers={"Retry-After": "30"}),
    Fault("http-401", AuthError, status=401, body='{"error": "invalid token"}'),
    Fault("http-403", AuthError, status=403, body='{"error": "forbidden"}'),
    Fault("http-400", BadResponse, status=400, body='{"error": "bad request"}'),
    Fault("html-body", BadResponse, body="<!DOCTYPE html><html><body>Please log in</body></html>", content_type="text/html"),
    Fault("truncated-json", BadResponse, body='{"results": [{"id": '),
    Fault("empty-body", BadResponse, body=""),
    Fault("json-scalar", BadResponse, body='"ok"'),
    Fault("json-list-of-numbers", BadResponse, body="[1, 2, 3]"),
)


#: the faults whose error messages the masking check reads
_MASKING_FAULTS = ("connect-refused", "http-500", "http-429", "http-401", "html-body", "truncated-json")


def _hang(request: requests.PreparedRequest):
    """A store that never answers: wait out the read timeout the client set, then time out."""
    timeout = getattr(request, "req_kwargs", {}).get("timeout")
    read = timeout[1] if isinstance(timeout, tuple) else timeout
    time.sleep(HANG_CAP_S if read is None else min(float(read), HANG_CAP_S))
    return requests.exceptions.ReadTimeout("read timed out (the kit's store hangs)")


def _install_hang(fake_http: responses.RequestsMock) -> None:
    for method in _METHODS:
        fake_http.add_callback(method, _ANY_URL, callback=_hang)


# --- bad config derived from the schema ------------------------------------------------------------


@dataclass(frozen=True)
class BadConfig:
    """Options that must be refused: `changes` merged into valid options (None removes a key)."""

    id: str
    changes: Mapping[str, Any]
    key: str  # the connector key the ConfigError must name


_WRONG_TYPE: dict[type, Any] = {str: ["not", "text"], int: "seven", float: "fast", bool: "yes", list: 42, dict: "not-a-mapping"}


def schema_bad_configs(schema: Sequence[Field]) -> list[BadConfig]:
    """Bad values for every declared key: missing when required, wrong type, not a choice, out of range."""
    cases = [BadConfig("unknown-key", {"no_such_key_for_this_connector": 1}, "no_such_key_for_this_connector")]
    for f in schema:
        if f.required:
            cases.append(BadConfig(f"missing-{f.name}", {f.name: None}, f.name))
        if f.type in _WRONG_TYPE:
            cases.append(BadConfig(f"wrong-type-{f.name}", {f.name: _WRONG_TYPE[f.type]}, f.name))
        if f.choices and f.type is str:
            cases.append(BadConfig(f"not-a-choice-{f.name}", {f.name: "not-one-of-" + "-".join(map(str, f.choices))}, f.name))
        if f.min is not None and f.type in (int, float):
            cases.append(BadConfig(f"below-min-{f.name}", {f.name: f.type(f.min - 1)}, f.name))
        if f.max is not None and f.type in (int, float):
            cases.append(BadConfig(f"above-max-{f.name}", {f.name: f.type(f.max + 1)}, f.name))
    return cases


def _merge(options: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# --- the contract suite ----------------------------------------------------------------------------


class ConnectorContract:
    """Base test class: subclass it (name the subclass ``Test...``) and pytest runs the contract.

    Set `connector_class` and `options`, and for an HTTP connector override `answer_found` and
    `answer_not_found`. Everything else has a default.
    """

    #: the class under test
    connector_class: ClassVar[type[Connector] | None] = None
    #: valid options: the connector's own keys, as in its config entry (without id/type)
    options: ClassVar[Mapping[str, Any]] = {}
    #: a query the faked store knows, and one it does not
    found_query: ClassVar[Query] = Query("phone", FOUND_PHONE)
    not_found_query: ClassVar[Query] = Query("phone", NOT_FOUND_PHONE)
    #: fields the found match's owner must have (None: only well-formedness is checked)
    expected_owner: ClassVar[Owner | None] = None
    #: False for connectors that never call HTTP (fault checks skipped, any call is a failure)
    makes_http_calls: ClassVar[bool] = True
    #: check that the type is installed under the ``dialwhom.connectors`` entry-point group
    check_entry_point: ClassVar[bool] = True
    #: extra bad options your ``__init__`` must refuse: (changes, key the ConfigError names)
    bad_options: ClassVar[Sequence[tuple[Mapping[str, Any], str]]] = ()
    #: JSON documents of the wrong shape for your API; answered to every request, each must be BadResponse
    wrong_shapes: ClassVar[Sequence[Any]] = ()
    #: calls a lookup may make against a store failing with 5xx when retries=0 (the framework retries)
    max_calls_on_failure: ClassVar[int] = 1
    #: check id -> why this connector cannot meet it (the check is skipped with that reason)
    waive: ClassVar[Mapping[str, str]] = {}
    #: phonenumbers region for the connector's context
    region: ClassVar[str] = "IN"
    #: deadline of one lookup in the kit's checks
    deadline_s: ClassVar[float] = 2.0

    # -- hooks a subclass overrides -------------------------------------------------------------

    def make_options(self, tmp_path: Path) -> dict[str, Any]:
        """Valid options; override to create files under `tmp_path` (the context's base_dir)."""
        return dict(self.options)

    def answer_found(self, fake_http: responses.RequestsMock, query: Query) -> None:
        """Make the faked store know the customer of `query` (register `responses` answers)."""
        if self.makes_http_calls:
            pytest.fail(f"{type(self).__name__}: override answer_found(fake_http, query) to register the store's 'found' answer")

    def answer_not_found(self, fake_http: responses.RequestsMock, query: Query) -> None:
        """Make the faked store not know the customer of `query`."""
        if self.makes_http_calls:
            pytest.fail(f"{type(self).__name__}: override answer_not_found(fake_http, query) to register the store's 'not found' answer")

    def make_context(self, tmp_path: Path, **changes: Any) -> ConnectorContext:
        """The context the kit builds connectors with; `changes` override timeout_s/retries."""
        fields = {"id": "contract", "region": self.region, "timeout_s": 1.0, "retries": 1, "base_dir": tmp_path}
        fields.update(changes)
        return ConnectorContext(**fields)

    # -- fixtures --------------------------------------------------------------------------------

    @pytest.fixture
    def fake_http(self):
        """A started `responses.RequestsMock`; unmatched requests fail as refused connections."""
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            yield mock

    @pytest.fixture
    def contract_options(self, tmp_path) -> dict[str, Any]:
        return self.make_options(tmp_path)

    @pytest.fixture
    def make_connector(self, tmp_path, contract_options):
        """Factory: ``make_connector(retries=0, timeout_s=5.0)``; built connectors are closed after."""
        built: list[Connector] = []

        def make(options: Mapping[str, Any] | None = None, **context: Any) -> Connector:
            conn = build_connector(self._cls(), contract_options if options is None else options,
                                   context=self.make_context(tmp_path, **context))
            built.append(conn)
            return conn

        yield make
        for conn in built:
            conn.close()

    @pytest.fixture
    def connector(self, make_connector) -> Connector:
        return make_connector()

    def pytest_generate_tests(self, metafunc) -> None:
        """Parametrize the schema and wrong-shape checks from the subclass's declarations."""
        cls = metafunc.cls
        if cls is None or getattr(cls, "connector_class", None) is None:
            return
        if "bad_config" in metafunc.fixturenames:
            cases = schema_bad_configs(cls.connector_class.config_schema)
            cases += [BadConfig(f"custom-{i}-{key}", dict(changes), key) for i, (changes, key) in enumerate(cls.bad_options)]
            metafunc.parametrize("bad_config", cases, ids=[c.id for c in cases])
        if "wrong_shape" in metafunc.fixturenames:
            shapes = [pytest.param(s, id=f"shape-{i}") for i, s in enumerate(cls.wrong_shapes)]
            if not shapes:
                reason = "no wrong_shapes declared" if cls.makes_http_calls else "makes_http_calls = False"
                shapes = [pytest.param(None, id="none", marks=pytest.mark.skip(reason=reason))]
            metafunc.parametrize("wrong_shape", shapes)

    # -- helpers ---------------------------------------------------------------------------------

    def _cls(self) -> type[Connector]:
        if self.connector_class is None:
            pytest.fail(f"{type(self).__name__}: set connector_class = YourConnector")
        return self.connector_class

    def _check(self, check_id: str) -> None:
        reason = self.waive.get(check_id)
        if reason:
            pytest.skip(f"waived by {type(self).__name__}: {reason}")

    def _needs_http(self, check_id: str) -> None:
        self._check(check_id)
        if not self.makes_http_calls:
            pytest.skip(f"{type(self).__name__} declares makes_http_calls = False")

    def _secrets(self, options: Mapping[str, Any]) -> list[str]:
        names = {f.name for f in self._cls().config_schema if f.secret}
        return [str(v) for k, v in options.items() if k in names and isinstance(v, str) and v]

    def _phone_digits(self) -> list[str]:
        """The national digits of each caller the kit asks about: never to appear in full."""
        out = []
        for q in (self.found_query, self.not_found_query):
            if q.kind == "phone":
                out.append(str(phonenumbers.parse(q.value, None).national_number))
        return out

    def _lookup(self, connector: Connector, query: Query, fake_http: responses.RequestsMock) -> Match | None:
        try:
            return connector.lookup(query, deadline=Deadline(self.deadline_s))
        except ConnectorError as exc:
            calls = "\n".join(f"  {c.request.method} {c.request.url}" for c in fake_http.calls) or "  (none)"
            pytest.fail(
                f"lookup({query.kind}) raised {type(exc).__name__}: {exc}\nHTTP calls made:\n{calls}\n"
                "Does answer_found/answer_not_found register the URL (and parameters) your connector calls?"
            )

    def _fault_lookup(self, connector: Connector, fault_expect: type[ConnectorError], fake_http, what: str) -> ConnectorError:
        started = time.monotonic()
        try:
            result = connector.lookup(self.found_query, deadline=Deadline(self.deadline_s))
        except ConnectorError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the point is to name it
            pytest.fail(f"{what}: lookup raised {type(exc).__name__}: {exc}; a connector may raise only dialwhom.routing.errors")
        else:
            pytest.fail(f"{what}: lookup returned {result!r} instead of raising {fault_expect.__name__} "
                        "(None means 'not found' and is cached as such; a failure must raise)")
        elapsed = time.monotonic() - started
        assert isinstance(error, fault_expect), (
            f"{what}: expected {fault_expect.__name__}, got {type(error).__name__}: {error}"
        )
        assert elapsed <= self.deadline_s + DEADLINE_SLACK_S, f"{what}: took {elapsed:.2f}s with a {self.deadline_s}s deadline"
        assert len(fake_http.calls) >= 1, f"{what}: the connector made no HTTP call"
        return error

    # -- the checks ------------------------------------------------------------------------------

    def test_declaration(self):
        """type_name, config_schema and supports are declared the way the service reads them."""
        self._check("declaration")
        cls = self._cls()
        assert issubclass(cls, Connector), f"{cls.__name__} must subclass dialwhom.sdk.Connector"
        assert _TYPE_NAME.match(cls.type_name or ""), (
            f"type_name {cls.type_name!r}: use a short lowercase name (letters, digits, '_', '-'); "
            "it is the 'type' in config and the entry-point name"
        )
        assert cls.lookup is not Connector.lookup, f"{cls.__name__} must implement lookup(self, query, *, deadline)"
        assert isinstance(cls.config_schema, tuple), "config_schema must be a tuple of Field"
        names = [f.name for f in cls.config_schema]
        assert all(isinstance(f, Field) for f in cls.config_schema), "config_schema must hold only Field objects"
        assert len(names) == len(set(names)), f"config_schema declares a key twice: {names}"
        clash = set(names) & FRAMEWORK_CONNECTOR_KEYS
        assert not clash, f"config_schema keys {sorted(clash)} are read by the framework, never passed to the connector"
        for f in cls.config_schema:
            assert f.help.strip(), f"Field {f.name!r} needs help=... (shown by 'dialwhom check' and the docs)"
            if f.secret:
                assert f.type is str, f"secret Field {f.name!r} must be a str"
            if f.default is not None:
                ok_type = isinstance(f.default, f.type) or (f.type is float and isinstance(f.default, int))
                assert ok_type, f"default of {f.name!r} ({f.default!r}) is not a {f.type.__name__}"
                assert f.choices is None or f.default in f.choices, f"default of {f.name!r} is not one of its choices"
        assert cls.supports and set(cls.supports) <= {"phone", "account"}, f"supports must list 'phone' and/or 'account', got {cls.supports!r}"

    def test_registered_entry_point(self):
        """The installed package registers the class under ``dialwhom.connectors``."""
        self._check("entry-point")
        if not self.check_entry_point:
            pytest.skip("check_entry_point = False")
        cls = self._cls()
        found = [ep for ep in entry_points(group=GROUP) if ep.name == cls.type_name]
        snippet = (f'[project.entry-points."{GROUP}"]\n{cls.type_name} = "{cls.__module__}:{cls.__qualname__}"')
        assert found, (f"no '{cls.type_name}' entry point in group {GROUP}; add to your pyproject.toml\n{snippet}\n"
                       "and reinstall the package (pip install -e .)")
        assert len(found) == 1, f"'{cls.type_name}' is registered {len(found)} times: {[ep.value for ep in found]}; the service refuses duplicates"
        loaded = found[0].load()
        assert loaded is cls, f"entry point '{cls.type_name}' loads {found[0].value}, not {cls.__module__}:{cls.__qualname__}"

    def test_valid_options_build(self, connector):
        """The valid options build a connector; its repr names it and masks secrets."""
        self._check("build")
        assert set(connector.supports) <= {"phone", "account"} and connector.supports
        assert self.found_query.kind in connector.supports, f"found_query is a {self.found_query.kind} query but the connector supports {connector.supports}"
        for name, value in connector.options.items():
            field = next((f for f in self._cls().config_schema if f.name == name), None)
            if field is not None and field.secret and value is not None:
                assert isinstance(value, Secret), f"secret option {name!r} lost its Secret wrapper"
        assert "contract" in repr(connector)

    def test_bad_config_is_refused(self, bad_config: BadConfig, make_connector, contract_options):
        """Each bad value is refused at startup with a ConfigError naming its key, secrets masked."""
        self._check(f"config:{bad_config.id}")
        options = _merge(contract_options, bad_config.changes)
        with pytest.raises(ConfigError) as info:
            make_connector(options)
        expected = f"{PREFIX}.{bad_config.key}"
        assert info.value.key == expected, f"ConfigError names {info.value.key!r}, expected {expected!r}: {info.value}"
        for secret in self._secrets(contract_options):
            assert secret not in str(info.value), f"the ConfigError message shows a secret: {info.value}"

    def test_not_found_gives_none(self, connector, fake_http):
        """A customer the store does not know is None (not an error, not an empty Match)."""
        self._check("not-found")
        self.answer_not_found(fake_http, self.not_found_query)
        result = self._lookup(connector, self.not_found_query, fake_http)
        assert result is None, f"expected None for a customer the store does not know, got {result!r}"
        if not self.makes_http_calls:
            assert not fake_http.calls, "the connector declares makes_http_calls = False but called HTTP"

    def test_found_gives_a_well_formed_match(self, connector, fake_http):
        """A known customer gives a Match the routing service can use."""
        self._check("found")
        self.answer_found(fake_http, self.found_query)
        match = self._lookup(connector, self.found_query, fake_http)
        assert match is not None, "lookup returned None for the customer answer_found made known"
        assert_well_formed_match(match, region=self.region)
        if self.expected_owner is not None:
            for name in ("id", "email", "name", "phone", "team"):
                want = getattr(self.expected_owner, name)
                if want is not None:
                    assert getattr(match.owner, name) == want, f"Owner.{name}: expected {want!r}, got {getattr(match.owner, name)!r}"
        if not self.makes_http_calls:
            assert not fake_http.calls, "the connector declares makes_http_calls = False but called HTTP"

    def test_concurrent_lookups_agree(self, connector, fake_http):
        """One instance serves concurrent callers: the same question gets the same answer."""
        self._check("concurrent")
        self.answer_found(fake_http, self.found_query)
        first = self._lookup(connector, self.found_query, fake_http)
        results: list[Any] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                results.append(connector.lookup(self.found_query, deadline=Deadline(self.deadline_s)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.deadline_s + 5)
        assert not errors, f"concurrent lookups raised: {errors[:3]!r}"
        # Notes may differ (an owner from the connector's cache says so); the answer may not.
        answers = {(m.owner, m.team, m.record) if isinstance(m, Match) else m for m in results}
        want = (first.owner, first.team, first.record) if isinstance(first, Match) else first
        assert answers == {want}, f"concurrent lookups of one customer disagree: {answers} vs {want}"

    @pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
    def test_transport_fault_maps_to_connector_error(self, fault: Fault, connector, fake_http):
        """Every way the store can fail becomes the right dialwhom.routing.errors class, in time."""
        self._needs_http(f"fault:{fault.name}")
        fault.install(fake_http)
        error = self._fault_lookup(connector, fault.expect, fake_http, fault.name)
        if fault.expect is RateLimited:
            assert error.retry_after == pytest.approx(30, abs=1), f"Retry-After: 30 should give retry_after=30, got {error.retry_after!r}"

    def test_wrong_shape_is_bad_response(self, wrong_shape: Any, connector, fake_http):
        """Well-formed JSON of the wrong shape for this API is BadResponse, never a crash."""
        self._needs_http("wrong-shape")
        for method in _METHODS:
            fake_http.add(method, _ANY_URL, json=wrong_shape)
        self._fault_lookup(connector, BadResponse, fake_http, f"wrong shape {wrong_shape!r}")

    def test_no_retries_of_its_own(self, make_connector, fake_http):
        """Retries belong to the framework: with retries=0 a failing store is not asked again."""
        self._needs_http("own-retries")
        connector = make_connector(retries=0)
        Fault("http-503", ConnectorUnavailable, status=503).install(fake_http)
        self._fault_lookup(connector, ConnectorUnavailable, fake_http, "http-503 with retries=0")
        assert len(fake_http.calls) <= self.max_calls_on_failure, (
            f"{len(fake_http.calls)} calls against a failing store with retries=0 (at most {self.max_calls_on_failure}); "
            "raise the first connector error instead of trying again"
        )

    def test_expired_deadline(self, connector, fake_http):
        """With no time left an HTTP connector raises ConnectorTimeout and calls nobody."""
        self._check("deadline-expired")
        self.answer_found(fake_http, self.found_query)
        started = time.monotonic()
        if not self.makes_http_calls:
            try:
                connector.lookup(self.found_query, deadline=Deadline(0))
            except ConnectorTimeout:
                pass
            assert time.monotonic() - started < DEADLINE_SLACK_S
            return
        with pytest.raises(ConnectorTimeout):
            connector.lookup(self.found_query, deadline=Deadline(0))
        assert time.monotonic() - started < DEADLINE_SLACK_S
        assert not fake_http.calls, f"{len(fake_http.calls)} HTTP call(s) made with an expired deadline"

    def test_deadline_bounds_a_hanging_store(self, make_connector, fake_http):
        """A store that never answers costs the caller the deadline, not the connector's timeout."""
        self._needs_http("deadline-hang")
        connector = make_connector(timeout_s=HANG_CAP_S, retries=2)
        _install_hang(fake_http)
        deadline_s = 0.4
        started = time.monotonic()
        with pytest.raises(ConnectorTimeout):
            connector.lookup(self.found_query, deadline=Deadline(deadline_s))
        elapsed = time.monotonic() - started
        assert elapsed <= deadline_s + DEADLINE_SLACK_S, (
            f"a hanging store held the lookup {elapsed:.2f}s with a {deadline_s}s deadline: pass the "
            "lookup's deadline to every self.http call and never make your own Deadline"
        )

    def test_secrets_and_numbers_are_masked(self, connector, fake_http, contract_options, caplog):
        """No secret and no full caller number in repr, logs, error messages or match notes."""
        self._check("masking")
        caplog.set_level(logging.DEBUG)
        texts = [repr(connector), str(connector), repr(connector.options)]
        self.answer_found(fake_http, self.found_query)
        self.answer_not_found(fake_http, self.not_found_query)
        for q in (self.found_query, self.not_found_query):
            match = self._lookup(connector, q, fake_http)
            if match is not None:
                texts.extend(match.notes)
        if self.makes_http_calls:
            for fault in (f for f in FAULTS if f.name in _MASKING_FAULTS):
                fake_http.reset()
                fault.install(fake_http)
                try:
                    connector.lookup(self.found_query, deadline=Deadline(self.deadline_s))
                except ConnectorError as exc:  # error messages reach the trace header and the decision log
                    texts.append(f"{fault.name}: {exc}")
        try:
            texts.append(connector.check(deadline=Deadline(self.deadline_s)))
        except ConnectorError as exc:
            texts.append(f"check: {exc}")
        texts.extend(r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "") for r in caplog.records
                     if not r.name.startswith("urllib3"))
        secrets = self._secrets(contract_options)
        digits = self._phone_digits()
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret appears in full: {text[:300]}"
            for d in digits:
                assert d not in text, f"a caller's number appears in full (mask it with dialwhom.sdk.mask): {text[:300]}"

    def test_check_raises_only_connector_errors(self, connector, fake_http):
        """`check()` (``dialwhom check``) answers a short note or raises a connector error."""
        self._check("check")
        if self.makes_http_calls:
            Fault("http-503", ConnectorUnavailable, status=503).install(fake_http)
        try:
            note = connector.check(deadline=Deadline(self.deadline_s))
        except ConnectorError:
            return
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"check() raised {type(exc).__name__}: {exc}; raise a connector error instead")
        assert isinstance(note, str) and note.strip(), f"check() must return a short note, got {note!r}"
