"""Everything a connector plugin imports, from one place.

    from dialwhom.sdk import Connector, Field, Match, Owner, Query, Record, Deadline

See docs/writing-a-connector.md. Names here are the stable author surface: they keep their
meaning across minor versions.
"""

from dialwhom.integrations.base import Connector, ConnectorContext
from dialwhom.routing.errors import (
    AuthError,
    BadResponse,
    ConfigError,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    RateLimited,
)
from dialwhom.integrations.oauth import OAuthClient, SharedToken, TokenGrant, TokenRegistry
from dialwhom.integrations.ratelimit import RateLimiter
from dialwhom.integrations.http import MIN_ATTEMPT_S, HttpClient, Response, TokenProvider, retry_after_seconds
from dialwhom.routing.config import FRAMEWORK_CONNECTOR_KEYS
from dialwhom.routing.schema import Field, Secret, validate_options
from dialwhom.integrations.support import CachedToken, Candidate, KeySearch, TTLMemo, as_utc, pick_record
from dialwhom.routing.deadline import Deadline
from dialwhom.routing.model import Match, Owner, Query, Record
from dialwhom.routing.phones import digits_only, same_number, to_e164, variants
from dialwhom.routing.redact import error_code, mask, scrub

__all__ = [
    "Connector", "ConnectorContext", "Field", "Secret", "validate_options", "FRAMEWORK_CONNECTOR_KEYS",
    "Query", "Match", "Owner", "Record", "Deadline",
    "ConnectorError", "ConnectorUnavailable", "ConnectorTimeout", "RateLimited",
    "AuthError", "BadResponse", "ConfigError",
    "HttpClient", "Response", "TokenProvider", "CachedToken", "TTLMemo",
    "Candidate", "pick_record", "KeySearch", "as_utc", "retry_after_seconds", "MIN_ATTEMPT_S",
    "RateLimiter", "digits_only", "same_number", "to_e164", "variants", "mask", "scrub", "error_code",
    "OAuthClient", "SharedToken", "TokenGrant", "TokenRegistry",
]
