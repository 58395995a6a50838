"""The one error that stops startup: a config value that cannot work."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad config value; the message names the key and says how to fix it."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"config error at '{key}': {message}" if key else f"config error: {message}")
