"""Everything a connector plugin imports, from one place.

    from integrations.sdk import Connector, Field, Match, Owner, Query, Record, Deadline

See docs/writing-a-connector.md. Names here are the stable author surface: they keep their
meaning across minor versions.
"""

from integrations.base import Connector, ConnectorContext
from integrations.errors import (
    AuthError,
    BadResponse,
    ConfigError,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    RateLimited,
)
from integrations.http import HttpClient, Response, TokenProvider
from integrations.schema import Field, Secret
from integrations.support import CachedToken, Candidate, TTLMemo, pick_record
from routing.deadline import Deadline
from routing.model import Match, Owner, Query, Record
from routing.phones import digits_only, same_number, to_e164, variants

__all__ = [
    "Connector", "ConnectorContext", "Field", "Secret",
    "Query", "Match", "Owner", "Record", "Deadline",
    "ConnectorError", "ConnectorUnavailable", "ConnectorTimeout", "RateLimited",
    "AuthError", "BadResponse", "ConfigError",
    "HttpClient", "Response", "TokenProvider", "CachedToken", "TTLMemo",
    "Candidate", "pick_record", "digits_only", "same_number", "to_e164", "variants",
]
