"""The sample team the tests speak of: the embedded default's reps, teams, lines and fallback
(examples/dialwhom.yaml), read from that file so the two cannot drift apart."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from dialwhom.routing.config import EXAMPLE_CONFIG

_RAW: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
_REPS = {r["owner"]: r for r in _RAW["reps"]}

ASHA = _REPS["asha@example.com"]["phone"]  # north
VIKRAM = _REPS["vikram@example.com"]["phone"]  # north, also north's first backup
MEERA = _REPS["meera@example.com"]["phone"][0]  # south (mobile, then desk)
RAHUL = _REPS["rahul@example.com"]["phone"]  # south, also south's first backup
NORTH2, NORTH3 = _RAW["teams"]["north"]["backup"]
SOUTH2, SOUTH3 = _RAW["teams"]["south"]["backup"]
FALLBACK = _RAW["fallback"][0]
LINE_NORTH, LINE_SOUTH = list(_RAW["lines"])
#: Asha's customer in the sample CSV, and what Dial Whom answers for them
ASHA_CUSTOMER = "09876543210"
ASHA_PLAN = [ASHA, NORTH2, NORTH3, FALLBACK]


def sample_config(**overrides: Any) -> dict[str, Any]:
    """The sample team as a config mapping, without its connectors; keys in `overrides` win."""
    config = {k: copy.deepcopy(v) for k, v in _RAW.items() if k not in ("connectors", "token")}
    config.update(overrides)
    return config
