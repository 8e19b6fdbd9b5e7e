"""A tenant's rule set, and the score it gives a lead: pure functions, no database.

A rule holds when its `when` (JSONata, the engine of payload templates) is truthy on the lead as
the API shows it, without its score and with its null fields left out (so `estimated_value > 1000`
is false for a lead without a value, rather than an error). The score is the sum of the points of
the rules that hold; the tier is the one with the highest `min` the score reaches. A rule that
fails to evaluate on a lead does not hold; the failure is logged once per rule set and rule.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from gateway.dialects.engine import EvaluationError, Expression, compiled

log = structlog.get_logger("leadgate.scoring")

# What a lead carries of its score; recomputed, never sent.
SCORE_FIELDS = ("score", "score_tier", "score_breakdown")
# Fields a rule does not see: its own outcome, and what changes on every write.
_HIDDEN = {*SCORE_FIELDS, "updated_at"}
# (tenant, version, rule) whose failure was logged; bounded, like the engine's cache.
_LOGGED: set[tuple[str, int, str]] = set()
_LOGGED_MAX = 10_000

# Rule sets' compiled expressions per thread, by (tenant, version); bounded like the engine's.
_COMPILED = threading.local()
_COMPILED_MAX = 1024

Score = tuple[int | None, str | None, dict[str, int] | None]
UNSCORED: Score = (None, None, None)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    points: int
    when: str


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    min: float


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One version of a tenant's rules; tiers highest `min` first."""

    tenant_id: str
    version: int
    rules: tuple[Rule, ...]
    tiers: tuple[Tier, ...]

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier_of(self, score: int) -> str | None:
        return next((t.name for t in self.tiers if score >= t.min), None)

    def score(self, lead: dict[str, Any]) -> Score:
        """The lead's score, tier and breakdown ({rule: points} of the rules that held)."""
        data = scoring_input(lead)
        breakdown = {
            r.name: r.points
            for r, expression in zip(self.rules, self._compiled(), strict=True)
            if self._holds(r, expression, data)
        }
        total = sum(breakdown.values())
        return total, self.tier_of(total), breakdown

    def _compiled(self) -> list[Expression]:
        """The rules' compiled expressions, kept per thread as the engine's are (its compiled
        forms are bound to the thread that made them)."""
        cache: dict[tuple[str, int], tuple[tuple[Rule, ...], list[Expression]]] | None
        cache = getattr(_COMPILED, "sets", None)
        if cache is None:
            cache = _COMPILED.sets = {}
        key = (self.tenant_id, self.version)
        found = cache.get(key)
        if found is None or (found[0] is not self.rules and found[0] != self.rules):
            if len(cache) >= _COMPILED_MAX:
                cache.clear()
            found = cache[key] = (self.rules, [compiled(r.when) for r in self.rules])
        return found[1]

    def _holds(self, rule: Rule, expression: Expression, data: dict[str, Any]) -> bool:
        try:
            return _truthy(expression.evaluate_once(data))
        except EvaluationError as e:
            key = (self.tenant_id, self.version, rule.name)
            if key not in _LOGGED:
                if len(_LOGGED) >= _LOGGED_MAX:
                    _LOGGED.clear()
                _LOGGED.add(key)
                log.warning("scoring_rule_failed", tenant_id=self.tenant_id, rule=rule.name,
                            version=self.version, error=str(e))  # fmt: skip
            return False


def score_of(rules: RuleSet | None, lead: dict[str, Any]) -> Score:
    """The lead's score under `rules`; null throughout when the tenant has none."""
    return UNSCORED if rules is None else rules.score(lead)


def apply_score(rules: RuleSet | None, lead: dict[str, Any]) -> None:
    """Set the lead's score fields in place."""
    lead["score"], lead["score_tier"], lead["score_breakdown"] = score_of(rules, lead)


def scoring_input(lead: dict[str, Any]) -> dict[str, Any]:
    """The lead as a rule sees it: its non-null fields, times as RFC 3339 text."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in lead.items()
        if v is not None and k not in _HIDDEN
    }


def _truthy(value: Any) -> bool:
    """JSONata's `$boolean`: empty strings, zero, empty arrays and objects are false."""
    if isinstance(value, list):
        return any(_truthy(v) for v in value)
    return bool(value)


def ruleset_of(tenant_id: str, config: dict[str, Any] | None) -> RuleSet | None:
    """The rule set stored on the tenant (`tenants.scoring`); None without rules."""
    if not config or not config.get("rules"):
        return None
    rules = tuple(Rule(r["name"], int(r["points"]), r["when"]) for r in config["rules"])
    tiers = sorted(
        (Tier(t["name"], float(t["min"])) for t in config.get("tiers", ())),
        key=lambda t: -t.min,
    )
    return RuleSet(tenant_id, int(config.get("version", 0)), rules, tuple(tiers))
