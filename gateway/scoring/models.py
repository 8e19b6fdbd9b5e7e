"""Scoring's request and response models (they make the OpenAPI document), and the checks that
turn a rule set that does not hold together into a 422 naming each bad field (`rules[2].when`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.constants import (
    MAX_RULE_EXPRESSION,
    MAX_RULE_POINTS,
    MAX_SCORING_RULES,
    MAX_SCORING_TIERS,
    SCORING_NAME_PATTERN,
)
from gateway.dialects.engine import ExpressionError, compile_expression
from gateway.errors import InvalidRules

Name = Annotated[str, StringConstraints(pattern=SCORING_NAME_PATTERN)]
_EXAMPLE: dict[str, Any] = {
    "rules": [
        {"name": "phone_valid", "points": 10, "when": "$exists(phone)"},
        {"name": "budget_provided", "points": 10, "when": "$exists(custom_data.budget)"},
    ],
    "tiers": [{"name": "hot", "min": 20}, {"name": "warm", "min": 10}],
}


def check_when(text: str) -> str:
    try:
        compile_expression(text)
    except ExpressionError as e:
        raise PydanticCustomError(
            "jsonata", "not a JSONata expression: {reason}", {"reason": str(e)}
        ) from e
    return text


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Letters, digits, `_`, `.`, `-`; a key of `score_breakdown`.")
    points: Annotated[int, Strict()] = Field(ge=-MAX_RULE_POINTS, le=MAX_RULE_POINTS)
    when: str = Field(
        min_length=1,
        max_length=MAX_RULE_EXPRESSION,
        description="JSONata over the lead (null fields left out); the rule holds when truthy.",
    )

    _when = field_validator("when")(check_when)


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Name
    min: Annotated[float, Strict()] = Field(description="The least score in this tier.")


class ScoringIn(BaseModel):
    """A tenant's whole rule set; it replaces the one before and rescores every lead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    rules: list[RuleIn] = Field(
        max_length=MAX_SCORING_RULES,
        description=f"At most {MAX_SCORING_RULES}; none: leads carry no score.",
    )
    tiers: list[TierIn] = Field(default_factory=list, max_length=MAX_SCORING_TIERS)


class Rescore(BaseModel):
    state: Literal["pending", "running", "done"]
    done: int = Field(description="Leads read so far.")
    total: int | None = Field(description="Leads to read; null until the rescore starts.")
    changed: int = Field(description="Leads whose score changed (each got `lead.updated`).")
    started_at: datetime
    finished_at: datetime | None


class Scoring(BaseModel):
    rules: list[RuleIn]
    tiers: list[TierIn]
    version: int = Field(description="Raised by every change of the rules; 0: never set.")
    updated_at: datetime | None
    rescore: Rescore | None


class ScoringResponse(BaseModel):
    data: Scoring


def field_name(loc: tuple[int | str, ...]) -> str:
    """`("rules", 2, "when")` → `rules[2].when`."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def parse_scoring(data: Any) -> ScoringIn:
    """The rule set in `data`; InvalidRules (422) naming every field that is wrong."""
    try:
        spec = ScoringIn.model_validate(data)
    except ValidationError as e:
        fields: dict[str, str] = {}
        for item in e.errors(include_url=False):
            fields.setdefault(field_name(item["loc"]), item["msg"])
        raise InvalidRules("the scoring rules are not valid", fields=fields) from e
    fields = _duplicates("rules", [r.name for r in spec.rules], "name")
    fields |= _duplicates("tiers", [t.name for t in spec.tiers], "name")
    fields |= _duplicates("tiers", [t.min for t in spec.tiers], "min")
    if fields:
        raise InvalidRules("the scoring rules are not valid", fields=fields)
    return spec


def _duplicates(kind: str, values: list[Any], attr: str) -> dict[str, str]:
    seen: set[Any] = set()
    found = {}
    for i, value in enumerate(values):
        if value in seen:
            found[f"{kind}[{i}].{attr}"] = f"another {kind[:-1]} has this {attr}"
        seen.add(value)
    return found
