"""log-source-silent: a resource that has been logging stops sending one of its categories.

A source is one resource's one log category (a Key Vault's AuditEvent, a FHIR service's
AuditLogs, a storage account's StorageRead); the Activity Log counts per subscription and
Entra's logs per tenant. A deleted diagnostic setting, a setting redirected elsewhere or a
broken ingestion path all look the same from here: the records stop. Sentinel's "missing
data" content watches whole tables with fixed thresholds (24-72 h); one vault going quiet
while the table stays busy is invisible there.

What is normal is learned per source, on event time, from its gaps between active minutes
(minutes with at least one record): a decayed log2 histogram of those gaps (half-life 6 h),
the longest gap seen in each hour of the day over the last 7 days, and its recent rate of
active minutes. A source is overdue after the largest of
- `gap_factor` x its 99th-percentile gap (the histogram bucket's upper edge),
- the longest gap seen in the hours the silence covers, plus the floor, when that gap
  was longer than the floor (a night lull),
- the category's floor (`floor_minutes`; `default_floor_minutes` for the rest),
- the time it usually takes to log `missing_records` active minutes (a sparse source must
  miss as much as a busy one before it counts as silent).
A source is judged only once it has logged for `min_history_hours` and `min_gaps` gaps,
and never when its 99th-percentile gap is a day or more (irregular: rare deletes, a vault
read once a night). Its deadline is fixed when its last record comes, so the verdict does
not depend on how records are split into batches: the watermark passing the deadline
judges it (the pipeline kept receiving other records past it), and so does the source
resuming past its deadline when others were heard from in between (a stalled pipeline
that resumes everything at once is not blamed on one source).

A silence whose resource (or a parent) was deleted is the deletion, not a silence. It is
High when the resource's diagnostic setting was deleted or turned off within a day before
the deadline (the routine re-writes of a setting that keep it on do not count), else
Medium. One alert per silence, anchored on the source's last record.

Cost: the rule needs one record per source and minute, so normalize sends it presence
copies (`presence_of`): one per source and minute per batch, the earliest, not every
record (docs/routing.md). State: at most `max_sources` sources, each forgotten 14 days
after its last record.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import utc
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import activity
from phiwatch.sources.activity import DIAGNOSTIC_SETTINGS, diagnostic_setting_target
from phiwatch.sources.fields import subscription_of

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
BUCKETS = 16  # bucket b: gaps of [2^b, 2^(b+1)) minutes; the last one is open
HALF_LIFE = 6 * HOUR
# The decayed count of gaps spans about this much history once the source is older.
DECAY_SPAN = HALF_LIFE / math.log(2)
SEASON_MEMORY = 7 * DAY
FORGET = 14 * DAY
TURNED_OFF_LOOKBACK = DAY
IRREGULAR_MINUTES = 1440.0
# Sub-resources that log on their own (a FHIR service in a workspace, a SQL database).
NESTED = frozenset({"fhirservices", "dicomservices", "iotconnectors", "databases"})
FLOORS: tuple[tuple[str, float], ...] = (
    ("Administrative", 120),
    ("AuditEvent", 60),
    ("AuditLogs", 30),
    ("SQLSecurityAuditEvents", 60),
    ("StorageRead", 1440),
    ("StorageWrite", 1440),
    ("StorageDelete", 1440),
    ("SignInLogs", 30),
    ("NonInteractiveUserSignInLogs", 30),
    ("ServicePrincipalSignInLogs", 60),
    ("ManagedIdentitySignInLogs", 60),
)


class Params(DetectionParams):
    gap_factor: float = Field(default=3, gt=1, le=100)
    # Per category, in minutes; a mapping in configuration, pairs here (params are hashable).
    floor_minutes: tuple[tuple[str, float], ...] = FLOORS
    default_floor_minutes: float = Field(default=60, gt=0)
    missing_records: float = Field(default=30, gt=0)
    min_gaps: float = Field(default=20, ge=1)
    min_history_hours: float = Field(default=2, ge=0)
    max_sources: int = Field(default=20_000, ge=1)

    @field_validator("floor_minutes", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = tuple(value.items())
        return value

    @field_validator("floor_minutes")
    @classmethod
    def _positive(cls, value: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        bad = [category for category, minutes in value if not minutes > 0]
        if bad:
            raise ValueError(f"floor_minutes must be positive: {bad}")
        return tuple(sorted(value))


@snapshot_class
class Source:
    """One resource's one category: when it last logged and how it usually does."""

    __slots__ = (
        "alerted",
        "basis",
        "category",
        "deadline",
        "decayed_at",
        "first",
        "hist",
        "last",
        "last_minute",
        "last_uid",
        "resource",
        "season",
        "season_at",
        "total",
    )

    def __init__(self, resource: str, category: str, time: float, uid: str) -> None:
        self.resource = resource
        self.category = category
        self.first = time
        self.last = time  # the earliest record of the last active minute
        self.last_uid = uid
        self.last_minute = int(time // MINUTE)
        self.hist = [0.0] * BUCKETS
        self.total = 0.0
        self.decayed_at = time
        self.season = [0.0] * 24  # longest gap (minutes) over each hour of the day
        self.season_at = [-math.inf] * 24
        self.deadline = math.inf  # silent once event time passes it
        self.basis = ""  # which term set the deadline, for the reasons
        self.alerted = -math.inf  # `last` of the silence already alerted


@snapshot_class
@dataclass(slots=True)
class SilentState:
    sources: dict[str, Source] = field(default_factory=dict)  # least recently active first
    # Per lowercase ARM id: the latest (time, kind) of a setting turned off ("off") and of
    # the resource's deletion ("deleted").
    marks: dict[str, list[Any]] = field(default_factory=dict)
    heard: float = -math.inf  # the latest event time heard from any source (or a tick)
    due: list[tuple[float, str]] = field(default_factory=list)  # (deadline, key), lazy heap

    def __len__(self) -> int:
        return len(self.sources) + len(self.marks)


@snapshot_class
@dataclass(slots=True)
class SilentFacts:
    resource: str
    category: str
    last: float
    deadline: float
    basis: str
    p99_minutes: float
    turned_off_at: float | None = None


@lru_cache(maxsize=4096)
def resource_of(target: str) -> str:
    """The resource that logs: an ARM id cut after its type and name (and a nested service
    or database), lowercase. Cached: in-process every event asks, and a stream's targets
    repeat (the cache is bounded, and keeps nothing but the ids)."""
    parts = target.lower().split("/")
    try:
        at = parts.index("providers")
    except ValueError:
        return target.lower()
    end = at + 4  # providers / namespace / type / name
    if len(parts) > end + 1 and parts[end] in NESTED:
        end += 2
    return "/".join(parts[:end])


def source_of(event: AccessEvent) -> tuple[str, str] | None:
    """(resource, category) of the source an event came from."""
    found = found_source(event)
    return None if found is None else (found[0], found[1])


# (resource, category, source key) of an event's source: what `step` needs of it.
Found = tuple[str, str, str]
_MAX_CACHED_ID = 1024  # ARM ids are a few hundred characters; a longer one is not cached


def found_source(event: AccessEvent) -> Found | None:
    """The event's source and its key. Every event asks (in-process and on presence
    copies), and a stream's targets and categories repeat: cached, bounded."""
    target = event.target_resource_id
    if not target:
        return None
    args = (target, event.source_category, event.event_product == activity.PRODUCT)
    if len(target) > _MAX_CACHED_ID:
        return _found.__wrapped__(*args)
    return _found(*args)


@lru_cache(maxsize=4096)
def _found(target: str, category: str, control: bool) -> Found | None:
    if control:  # the Activity Log counts per subscription
        sub = subscription_of(target)
        if not sub:
            return None
        resource = f"/subscriptions/{sub}"
    else:
        resource = resource_of(target)
    return resource, category, source_key(resource, category)


def mark_of(event: AccessEvent) -> tuple[str, str] | None:
    """(resource, "off" | "deleted") when the event is a successful change that explains a
    silence or makes it High: a diagnostic setting deleted or turned off, or a resource
    deleted."""
    if event.event_product != activity.PRODUCT or event.event_result != "Success":
        return None
    target = (event.target_resource_id or "").lower()
    if event.event_sub_type == DIAGNOSTIC_SETTINGS:
        if event.event_type in {"Delete", "Disable"}:
            monitored = diagnostic_setting_target(target)
            return (monitored, "off") if monitored else None
        return None
    if event.event_type == "Delete" and target:
        return target, "deleted"
    return None


def source_key(resource: str, category: str) -> str:
    return f"{resource}|{category}"


def floor_of(params: Params, category: str) -> float:
    return _floors(params.floor_minutes).get(category, params.default_floor_minutes)


@lru_cache(maxsize=16)
def _floors(pairs: tuple[tuple[str, float], ...]) -> dict[str, float]:
    # Asked at every new active minute of a source; the pairs are the (hashable) params'.
    return dict(pairs)


def decay(source: Source, time: float) -> None:
    if time <= source.decayed_at:
        return
    factor = 0.5 ** ((time - source.decayed_at) / HALF_LIFE)
    source.hist = [w * factor for w in source.hist]
    source.total *= factor
    source.decayed_at = time


def p99_minutes(source: Source) -> float:
    """The upper edge of the bucket holding the 99th-percentile gap."""
    need = 0.99 * source.total
    seen = 0.0
    for bucket, weight in enumerate(source.hist):
        seen += weight
        if seen >= need:
            return float(2 ** (bucket + 1))
    return float(2**BUCKETS)


def seasonal_minutes(source: Source, start: float, span_minutes: float) -> float:
    """The longest gap of the last 7 days over the hours from `start` for `span_minutes`."""
    hours = min(24, int(span_minutes // 60) + 2)
    first_hour = int(start // HOUR)
    longest = 0.0
    since = start - SEASON_MEMORY
    season, season_at = source.season, source.season_at
    for hour in range(first_hour, first_hour + hours):
        slot = hour % 24
        if season_at[slot] >= since and season[slot] > longest:
            longest = season[slot]
    return longest


def set_deadline(params: Params, source: Source) -> None:
    """The deadline of the silence that starts at the source's last record."""
    source.deadline, source.basis = math.inf, ""
    history = source.last - source.first
    if source.total < params.min_gaps or history < params.min_history_hours * HOUR:
        return
    p99 = p99_minutes(source)
    if p99 >= IRREGULAR_MINUTES:
        return
    floor = floor_of(params, source.category)
    rate = source.total / (min(history, DECAY_SPAN) / MINUTE)  # active minutes per minute
    # The largest term sets the deadline; on a tie the first of p99, floor, rate, season
    # names it. Asked at every new active minute of a source: no dict of terms is built.
    basis, minutes = "p99", params.gap_factor * p99
    if floor > minutes:
        basis, minutes = "floor", floor
    by_rate = params.missing_records / rate
    if by_rate > minutes:
        basis, minutes = "rate", by_rate
    # A lull longer than the floor at these hours is usual for the source: allow it again,
    # plus the floor.
    lull = seasonal_minutes(source, source.last, minutes)
    if lull >= floor and lull + floor > minutes:
        basis, minutes = "season", lull + floor
    source.basis = basis
    source.deadline = source.last + minutes * MINUTE


def add_gap(source: Source, minutes: int, time: float) -> None:
    decay(source, time)
    source.hist[min(BUCKETS - 1, int(math.log2(minutes)))] += 1.0
    source.total += 1.0
    # The gap counts in every hour of the day it spanned (a night lull covers several).
    start = time - minutes * MINUTE
    forgotten = time - SEASON_MEMORY
    season, season_at = source.season, source.season_at
    for hour in range(int(start // HOUR), int(time // HOUR) + 1)[-24:]:
        slot = hour % 24
        if season_at[slot] < forgotten or season[slot] < minutes:
            season[slot] = float(minutes)
        season_at[slot] = max(season_at[slot], time)


def step(
    rule: RuleInfo, state: SilentState, event: AccessEvent, time: float, ctx: DetectionContext
) -> None:
    # Every event comes here (in-process) and most fall in a minute their source already
    # has: that path reads the cached source and compares, building nothing.
    if event.event_product == activity.PRODUCT:  # marks are Activity Log changes only
        mark = mark_of(event)
        if mark is not None:
            resource, kind = mark
            state.marks.pop(resource, None)  # re-inserted last: the oldest marks go first
            state.marks[resource] = [time, kind]
            if len(state.marks) > rule.params.max_sources:
                del state.marks[next(iter(state.marks))]
    found = found_source(event)
    if found is None:
        return
    key = found[2]
    heard = state.heard
    if time > heard:
        state.heard = time
    source = state.sources.get(key)
    uid = event.event_uid
    if source is None:
        if len(state.sources) >= rule.params.max_sources:
            del state.sources[next(iter(state.sources))]
        state.sources[key] = Source(found[0], found[1], time, uid)
        return
    minute = int(time // MINUTE)
    last_minute = source.last_minute
    if minute < last_minute:
        return  # late into a gap already counted: the gaps learned stay as they were
    if minute == last_minute:
        # The minute's earliest record, by (time, EventUid).
        if time < source.last or (time == source.last and uid < source.last_uid):
            source.last, source.last_uid = time, uid
        return
    # The source resumes: a silence it broke is judged as the watermark would have judged it.
    if source.deadline < time and source.deadline <= heard:
        judge(rule, state, key, source, ctx)
    add_gap(source, minute - last_minute, time)
    source.last, source.last_uid, source.last_minute = time, uid, minute
    set_deadline(rule.params, source)
    del state.sources[key]
    state.sources[key] = source  # most recently active last
    if source.deadline < math.inf:
        heapq.heappush(state.due, (source.deadline, key))


def tick(rule: RuleInfo, state: SilentState, ctx: DetectionContext) -> None:
    now = ctx.watermark
    if now == -math.inf:
        return
    state.heard = max(state.heard, now)
    due = state.due
    while due and due[0][0] < now:
        deadline, key = heapq.heappop(due)
        source = state.sources.get(key)
        if source is not None and source.deadline == deadline:
            judge(rule, state, key, source, ctx)
    forget(rule, state, now)


def forget(rule: RuleInfo, state: SilentState, now: float) -> None:
    sources = state.sources
    while sources:
        key = next(iter(sources))
        if sources[key].last >= now - FORGET:
            break
        del sources[key]
    marks = state.marks
    horizon = now - TURNED_OFF_LOOKBACK - rule.lateness
    while marks and marks[next(iter(marks))][0] < horizon:
        del marks[next(iter(marks))]
    if len(state.due) > 4 * max(len(sources), 64):
        # Superseded deadlines pile up in the heap; rebuild it from the live ones.
        state.due = [(s.deadline, k) for k, s in sources.items() if s.deadline < math.inf]
        heapq.heapify(state.due)


def mark_on(state: SilentState, resource: str, kind: str, since: float, until: float) -> float:
    """When the resource or a parent of it got a mark of `kind` in [since, until]; 0 if not."""
    parts = resource.split("/")
    for end in range(len(parts), 2, -1):
        mark = state.marks.get("/".join(parts[:end]))
        if mark is not None and mark[1] == kind and since <= mark[0] <= until:
            return float(mark[0])
    return 0.0


def judge(
    rule: RuleInfo, state: SilentState, key: str, source: Source, ctx: DetectionContext
) -> None:
    if source.alerted >= source.last:
        return
    source.alerted = source.last
    if mark_on(state, source.resource, "deleted", source.last - rule.lateness, source.deadline):
        return
    turned_off = mark_on(
        state, source.resource, "off", source.deadline - TURNED_OFF_LOOKBACK, source.deadline
    )
    alert = ctx.book.open(
        rule.rule_id,
        f"src:{key}",
        anchor=source.last_uid,
        severity="High" if turned_off else rule.severity,
        detected_at=utc(source.deadline),
        window=(source.last, source.deadline),
    )
    alert.facts = SilentFacts(
        resource=source.resource,
        category=source.category,
        last=source.last,
        deadline=source.deadline,
        basis=source.basis,
        p99_minutes=p99_minutes(source),
        turned_off_at=turned_off or None,
    )
    alert.add_entry(source.last, source.last_uid, patient=None, ip=None, target=source.resource)


BASIS_WORDS = {
    "p99": "{factor:g} times its usual longest gap (99th percentile, {p99:g} minutes)",
    "floor": "the floor for {category} records ({floor:g} minutes)",
    "rate": "the time it usually takes to log {missing:g} active minutes",
    "season": "the longest gap it had at these hours over the last 7 days, plus the floor",
}


def minutes_text(seconds: float) -> str:
    minutes = round(seconds / MINUTE)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{minutes / 60:.1f} hours"


class LogSourceSilent(Detection[Params]):
    rule_id = "log-source-silent"
    rule_name = "Log source went silent"
    severity = "Medium"
    tactics = ("DefenseEvasion",)
    techniques = ("T1562.008",)  # Impair Defenses: Disable or Modify Cloud Logs
    # A source's resource and its diagnostic settings and deletions are in one subscription.
    group_by = "subscription"
    planes = frozenset({"data", "control"})
    Params = Params
    Facts = SilentFacts

    def applies(self, event: AccessEvent) -> bool:
        return event.target_resource_id is not None

    def presence_of(self, event: AccessEvent) -> str | None:
        """What makes copies of events redundant to this rule: one per source and minute is
        all it needs, except the changes it must see in full (settings turned off,
        deletions)."""
        if mark_of(event) is not None:
            return None
        found = found_source(event)
        if found is None:
            return None
        return f"{found[2]}|{int(event.time_generated.timestamp() // MINUTE)}"

    def declare(self) -> StatefulRule:
        return StatefulRule(state=SilentState, step=step, tick=tick, name="log_source_silent")

    def render(self, state: AlertState) -> Alert:
        facts: SilentFacts = state.facts
        params = self.params
        name = facts.resource.rsplit("/", 1)[-1]
        silence = minutes_text(facts.deadline - facts.last)
        basis = BASIS_WORDS.get(facts.basis, "its learned threshold").format(
            factor=params.gap_factor,
            p99=facts.p99_minutes,
            category=facts.category,
            floor=floor_of(params, facts.category),
            missing=params.missing_records,
        )
        reasons = [
            f"{name} sent its last {facts.category} record at "
            f"{utc(facts.last):%Y-%m-%d %H:%M:%S} UTC and none for {silence} after it, while "
            "phiwatch kept receiving other sources' records.",
            f"The silence is longer than {basis}, the largest of the thresholds learned for "
            "this source from its own gaps between active minutes.",
        ]
        if facts.turned_off_at:
            reasons.append(
                f"Its diagnostic setting was deleted or turned off at "
                f"{utc(facts.turned_off_at):%H:%M} UTC, before the silence: logging was "
                "switched off, not lost."
            )
        reasons.append(
            "Check first: the resource's diagnostic settings (categories and destination), "
            "the Event Hub's incoming messages for it, and the Activity Log for changes to "
            "it; PHI access to it is unrecorded while the silence lasts."
        )
        return self.base_alert(
            state,
            title=f"{name} stopped sending {facts.category} records",
            description=(
                f"{facts.resource} has sent no {facts.category} records since "
                f"{utc(facts.last):%Y-%m-%d %H:%M} UTC (silent for more than {silence}). "
                "A log source that goes quiet leaves access to it unaudited (HIPAA "
                "164.312(b)); restore its diagnostic setting or ingestion path."
            ),
            reasons=reasons,
        )


DETECTION = LogSourceSilent
