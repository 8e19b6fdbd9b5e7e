"""Ingestion's rules, as pure functions: match each postback to a lead, merge, move its stage.

A batch of postbacks (see `gateway.batcher`) is resolved here in arrival order against the
leads that could match any of them, fetched and locked beforehand (`gateway.leads.store`). The
result is a `Plan`: the leads to insert and to update (each in its final state), the stage
history rows and the events to write, and one outcome per postback. Nothing here touches the
database, so every rule of the contract can be read, and tested, in one place:

- matching, first hit wins: `lead_id` (unknown → 404), `external_id`, normalised email,
  E.164 phone (only where the tenant matches on phone), otherwise a new lead;
- two postbacks of one batch that share a key meet the same lead: the first creates it, the
  second matches it;
- merge: non-empty values overwrite, `custom_data` merges by key, completion never drops; a
  postback that changes nothing writes nothing and emits no event;
- stages move forward only unless forced; a change that would give a lead another lead's email
  or external id is a 409 for that postback alone;
- every lead is scored (`gateway.scoring.rules`) in the state each postback leaves it, and a
  change of score is a change; the first time it reaches a converted stage it is counted;
- past its tenant's monthly quota (`remaining`, known once the batch has locked the month's
  counter) a postback that would create a lead is a 429, while matches still update.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.constants import LEAD_PREFIX
from gateway.errors import ApiError, Conflict, InvalidRequest, NotFound, QuotaExceeded
from gateway.events import Event
from gateway.ids import new_id
from gateway.keys import Principal
from gateway.leads.models import NUMBER_FIELDS, TEXT_FIELDS, LeadFields, PostbackIn
from gateway.leads.normalize import InvalidValue, normalize_email, normalize_phone
from gateway.scoring.rules import SCORE_FIELDS, RuleSet, apply_score
from gateway.tenants import Pipeline

LeadDict = dict[str, Any]

# The columns a postback or PATCH writes, in the order every query binds them.
WRITABLE = (*TEXT_FIELDS, "stage", *NUMBER_FIELDS, "custom_data")
# What is stored of a lead and shown by the API: what is written, and its score.
STORED = (*WRITABLE, *SCORE_FIELDS)
# The keys a lead is matched by and locked on; the first two are unique per tenant.
UNIQUE_KEYS = ("external_id", "email")


@dataclass(frozen=True, slots=True)
class IngestResult:
    lead: LeadDict
    created: bool
    stage_ignored: bool


@dataclass(frozen=True, slots=True)
class StageMove:
    from_stage: str | None
    to_stage: str
    forced: bool


@dataclass(frozen=True, slots=True)
class Postback:
    """A validated and normalised postback, ready to be applied in a batch."""

    tenant_id: str
    key_id: str | None
    pipeline: Pipeline
    match_phone: bool
    lead_id: str | None
    values: dict[str, Any]
    target: str | None
    force: bool
    scoring: RuleSet | None = None
    conversions: frozenset[str] = frozenset()
    quota: int | None = None

    @property
    def phone(self) -> str | None:
        """The phone this postback is matched by: none where the tenant does not match on it."""
        return self.values.get("phone") if self.match_phone else None

    def lock_ids(self) -> list[int]:
        """Advisory-lock ids of its matching keys: postbacks sharing a key serialise on it."""
        keys = [(k, self.values.get(k)) for k in UNIQUE_KEYS] + [("phone", self.phone)]
        return [key_lock_id(self.tenant_id, kind, value) for kind, value in keys if value]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    tenant_id: str
    lead_id: str
    move: StageMove
    key_id: str | None


@dataclass(slots=True)
class Plan:
    """What a batch of postbacks writes, and what each postback is answered."""

    inserts: list[LeadDict] = field(default_factory=list)
    updates: list[LeadDict] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    # Each event with the index of the postback that made it (whose tenant and trace it has).
    events: list[tuple[int, Event]] = field(default_factory=list)
    outcomes: list[IngestResult | ApiError] = field(default_factory=list)
    # Per tenant: leads created, and leads that reached a converted stage for the first time.
    created: dict[str, int] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)


def key_lock_id(tenant_id: str, kind: str, value: str) -> int:
    digest = hashlib.blake2b(f"{tenant_id}\0{kind}\0{value}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def lead_json(row: Any) -> LeadDict:
    """A lead as the API shows it (and as lead events carry it)."""
    lead = {"id": row["id"]}
    lead.update({col: row[col] for col in STORED})
    lead["opted_out_at"] = row["opted_out_at"]
    lead["created_at"] = row["created_at"]
    lead["updated_at"] = row["updated_at"]
    return lead


def normalized_values(fields: LeadFields, default_region: str | None) -> dict[str, Any]:
    """The values a request sets, keys normalised; a 400 names every field that cannot be."""
    values = fields.model_dump(include={*TEXT_FIELDS, *NUMBER_FIELDS}, exclude_none=True)
    errors = {}
    if "email" in values:
        try:
            values["email"] = normalize_email(values["email"])
        except InvalidValue as e:
            errors["email"] = str(e)
    if "phone" in values:
        try:
            values["phone"] = normalize_phone(values["phone"], default_region)
        except InvalidValue as e:
            errors["phone"] = str(e)
    if errors:
        raise InvalidRequest("some fields have invalid values", fields=errors)
    return values


def resolve_stage(pipeline: Pipeline, name: str) -> str:
    stage = pipeline.canonical(name)
    if stage is None:
        allowed = ", ".join(pipeline.all)
        raise InvalidRequest(
            f"unknown stage {name!r}; allowed: {allowed}",
            fields={"stage": f"must be one of: {allowed}"},
        )
    return stage


def prepare(who: Principal, postback: PostbackIn, default_region: str | None) -> Postback:
    """Normalise a validated postback; a 400 for what cannot be normalised or is unknown."""
    values = normalized_values(postback, default_region)
    custom = {**(postback.custom_data or {}), **(postback.model_extra or {})}
    if custom:
        values["custom_data"] = custom
    target = resolve_stage(who.pipeline, postback.stage) if postback.stage else None
    return Postback(
        tenant_id=who.tenant_id,
        key_id=who.key_id,
        pipeline=who.pipeline,
        match_phone=who.match_phone,
        lead_id=postback.lead_id,
        values=values,
        target=target,
        force=postback.force_stage,
        scoring=who.scoring,
        conversions=who.conversions,
        quota=who.monthly_quota,
    )


def merge(current: LeadDict, values: dict[str, Any]) -> LeadDict:
    """Non-empty incoming values overwrite; custom_data merges by key; completion never drops."""
    merged = dict(current)
    for name, value in values.items():
        if name == "custom_data":
            merged[name] = {**current[name], **value}
        elif name == "form_completion_percent" and current[name] is not None:
            merged[name] = max(current[name], value)
        else:
            merged[name] = value
    return merged


def furthest(pipeline: Pipeline, reached: str | None, stage: str) -> str | None:
    """The furthest pipeline stage a lead has reached, once it is at `stage`."""
    rank = {s: i for i, s in enumerate(pipeline.stages, start=1)}
    return stage if rank.get(stage, 0) > rank.get(reached or "", 0) else reached


def quota_exceeded(quota: int, now: datetime) -> QuotaExceeded:
    """429 for a new lead past the quota; Retry-After runs to the next month (UTC)."""
    month = now.astimezone(UTC)
    following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    wait = max(int((following - now).total_seconds()) + 1, 1)
    return QuotaExceeded(
        f"this account's quota of {quota} new leads this month (UTC) is reached; postbacks "
        "that match an existing lead still update it",
        headers={"Retry-After": str(wait)},
    )


def change_events(
    lead: LeadDict, changed: set[str], move: StageMove | None, at: datetime
) -> list[Event]:
    """`lead.updated` for a change of fields, `lead.stage_changed` for a move (or both)."""
    events = []
    if changed - {"stage"}:
        events.append(Event("lead.updated", dict(lead), at, lead["id"]))
    if move is not None:
        data = {**lead, "previous_stage": move.from_stage}
        events.append(Event("lead.stage_changed", data, at, lead["id"]))
    return events


class Batch:
    """Resolves postbacks in arrival order against the leads known to the batch.

    `candidates` are the current rows (with `tenant_id` and `furthest_stage`) of every lead that
    any postback's keys could match, locked by the caller. Leads created or changed by earlier
    postbacks of the batch are matched by later ones, by their keys as they now are.
    """

    def __init__(
        self, candidates: list[Any], now: datetime, remaining: dict[str, int] | None = None
    ) -> None:
        self.now = now
        self.plan = Plan()
        self.source = 0  # the index of the postback being applied
        # New leads each quota-bound tenant may still create this month (absent: no limit).
        self._remaining = dict(remaining or {})
        self._leads: dict[str, LeadDict] = {}
        self._meta: dict[str, dict[str, Any]] = {}  # tenant_id, furthest_stage, new, dirty
        self._unique: dict[tuple[str, str, str], str] = {}
        self._phones: dict[tuple[str, str], list[str]] = {}
        for row in sorted(candidates, key=lambda r: (r["created_at"], r["id"])):
            lead = lead_json(row)
            self._add(lead, row["tenant_id"], row["furthest_stage"], new=False)
            self._meta[lead["id"]]["converted_at"] = row["converted_at"]

    def _add(self, lead: LeadDict, tenant_id: str, reached: str | None, *, new: bool) -> None:
        self._leads[lead["id"]] = lead
        self._meta[lead["id"]] = {
            "tenant_id": tenant_id, "furthest": reached, "new": new, "converted_at": None,
        }  # fmt: skip
        self._index(lead, tenant_id)

    def _convert(self, p: Postback, lead: LeadDict) -> None:
        """Count the lead once, the first time it is at one of its tenant's converted stages."""
        meta = self._meta[lead["id"]]
        if meta["converted_at"] is None and lead["stage"] in p.conversions:
            meta["converted_at"] = self.now
            self.plan.converted[p.tenant_id] = self.plan.converted.get(p.tenant_id, 0) + 1

    def _index(self, lead: LeadDict, tenant_id: str) -> None:
        for kind in UNIQUE_KEYS:
            if lead[kind] is not None:
                self._unique[(tenant_id, kind, lead[kind])] = lead["id"]
        if lead["phone"] is not None:
            self._phones.setdefault((tenant_id, lead["phone"]), []).append(lead["id"])

    def _unindex(self, lead: LeadDict, tenant_id: str) -> None:
        for kind in UNIQUE_KEYS:
            if lead[kind] is not None:
                self._unique.pop((tenant_id, kind, lead[kind]), None)
        if lead["phone"] is not None:
            self._phones[(tenant_id, lead["phone"])].remove(lead["id"])

    def match(self, p: Postback) -> LeadDict | None:
        if p.lead_id is not None:
            lead = self._leads.get(p.lead_id)
            if lead is None or self._meta[p.lead_id]["tenant_id"] != p.tenant_id:
                raise NotFound(f"no lead with id {p.lead_id!r}")
            return lead
        for kind in UNIQUE_KEYS:
            value = p.values.get(kind)
            if value and (found := self._unique.get((p.tenant_id, kind, value))):
                return self._leads[found]
        if p.phone and (same := self._phones.get((p.tenant_id, p.phone))):
            return self._leads[same[0]]  # the oldest lead with this phone
        return None

    def apply(self, p: Postback) -> None:
        """Resolve one postback; its outcome (or its 4xx) is appended to the plan."""
        outcome: IngestResult | ApiError
        try:
            lead = self.match(p)
            outcome = self._create(p) if lead is None else self._update(p, lead)
        except ApiError as e:
            outcome = e
        self.plan.outcomes.append(outcome)

    def _create(self, p: Postback) -> IngestResult:
        left = self._remaining.get(p.tenant_id)
        if left is not None:
            if left <= 0:
                raise quota_exceeded(p.quota or 0, self.now)
            self._remaining[p.tenant_id] = left - 1
        stage = p.target or p.pipeline.stages[0]
        lead: LeadDict = {"id": new_id(LEAD_PREFIX)}
        lead.update({col: p.values.get(col) for col in WRITABLE})
        lead["stage"] = stage
        lead["custom_data"] = p.values.get("custom_data", {})
        lead["opted_out_at"] = None
        lead["created_at"] = lead["updated_at"] = self.now
        apply_score(p.scoring, lead)
        reached = stage if stage in p.pipeline.stages else p.pipeline.stages[0]
        self._add(lead, p.tenant_id, reached, new=True)
        self._convert(p, lead)
        self.plan.created[p.tenant_id] = self.plan.created.get(p.tenant_id, 0) + 1
        self.plan.history.append(
            HistoryRow(p.tenant_id, lead["id"], StageMove(None, stage, False), p.key_id)
        )
        self.plan.events.append(
            (self.source, Event("lead.created", dict(lead), self.now, lead["id"]))
        )
        return IngestResult(dict(lead), created=True, stage_ignored=False)

    def _update(self, p: Postback, current: LeadDict) -> IngestResult:
        merged = merge(current, p.values)
        move, stage_ignored = None, False
        if p.target is not None and p.target != current["stage"]:
            forward = p.pipeline.is_forward(current["stage"], p.target)
            if forward or p.force:
                merged["stage"] = p.target
                move = StageMove(current["stage"], p.target, forced=not forward)
            else:
                stage_ignored = True
        apply_score(p.scoring, merged)
        changed = {col for col in STORED if merged[col] != current[col]}
        if not changed:
            return IngestResult(dict(current), created=False, stage_ignored=stage_ignored)
        self._refuse_taken_keys(p.tenant_id, current, merged)
        meta = self._meta[current["id"]]
        self._unindex(current, p.tenant_id)
        merged["updated_at"] = self.now
        current.clear()
        current.update(merged)
        self._index(current, p.tenant_id)
        meta["dirty"] = True
        if move is not None:
            meta["furthest"] = furthest(p.pipeline, meta["furthest"], move.to_stage)
            self.plan.history.append(HistoryRow(p.tenant_id, current["id"], move, p.key_id))
            self._convert(p, current)
        for event in change_events(current, changed, move, self.now):
            self.plan.events.append((self.source, event))
        return IngestResult(dict(current), created=False, stage_ignored=stage_ignored)

    def _refuse_taken_keys(self, tenant_id: str, current: LeadDict, merged: LeadDict) -> None:
        for kind in UNIQUE_KEYS:
            if merged[kind] == current[kind] or merged[kind] is None:
                continue
            holder = self._unique.get((tenant_id, kind, merged[kind]))
            if holder is not None and holder != current["id"]:
                raise Conflict(
                    f"another lead of this tenant already has this {kind}",
                    fields={kind: "already used by another lead"},
                )

    def finish(self) -> Plan:
        """The plan: each lead written once, in its final state."""
        for lead_id, lead in self._leads.items():
            meta = self._meta[lead_id]
            row = {**lead, "tenant_id": meta["tenant_id"], "furthest_stage": meta["furthest"],
                   "converted_at": meta["converted_at"]}  # fmt: skip
            if meta["new"]:
                self.plan.inserts.append(row)
            elif meta.get("dirty"):
                self.plan.updates.append(row)
        return self.plan


def plan(
    candidates: list[Any],
    postbacks: list[Postback],
    now: datetime,
    remaining: dict[str, int] | None = None,
) -> Plan:
    """Resolve `postbacks` in arrival order against `candidates` (see `Batch`); `remaining`:
    the new leads each quota-bound tenant may still create."""
    batch = Batch(candidates, now, remaining)
    for index, p in enumerate(postbacks):
        batch.source = index
        batch.apply(p)
    return batch.finish()
