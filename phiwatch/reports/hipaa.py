"""The HIPAA audit-readiness report: what an auditor asks of the audit trail, read from the
archive for one period.

Everything here comes from the archive (events, dead-letters, alerts, the signed chains), the
settings the deployment runs with and the detections registry; nothing from Sentinel, so the
page says what the evidence itself shows. It names resources, rules and counts, never a
patient, a user or a record's content: the page is handed to people outside the care team.

Coverage is per source (a resource's one log category, as `log-source-silent` sees it: the
same `resource_of` and the same per-category floors), on event time: first and last record,
and every silence longer than the category's floor, including the one running at the end
of the period. A silence is computed from active minutes, so it is what the archive holds,
not what the streaming rule alerted on (which also learns each source's usual rhythm).

With an inventory (phiwatch/attest: a file or Resource Graph), the attestation's coverage per
control over the same period feeds the controls: below 100% of the resources a control's
checks apply to, the control is not met, whatever the archive's own evidence says.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from detections import load_detections
from detections.log_source_silent import FLOORS, resource_of
from phiwatch.archive.archive import decode_lines
from phiwatch.archive.blob_store import BlobStore
from phiwatch.archive.signer import PublicKey
from phiwatch.archive.store import ObjectMissing, ObjectStore
from phiwatch.archive.verify import verify_archive
from phiwatch.attest.attestation import (
    CONTROLS as ATTESTED_CONTROLS,
)
from phiwatch.attest.attestation import (
    Check,
    ControlCoverage,
    attest,
    coverage_by_control,
    logging_from_archive,
)
from phiwatch.attest.inventory import Inventory, PhiResource
from phiwatch.config import Settings
from phiwatch.reports.timespec import parse_time
from phiwatch.sources import activity
from phiwatch.sources.fields import subscription_of

MINUTE = 60
DEFAULT_FLOOR_MINUTES = 60.0
# The categories that carry sign-ins (164.308(a)(5)(ii)(C), log-in monitoring).
SIGN_IN_CATEGORIES = frozenset(
    {
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
    }
)
SIGN_IN_RULES = ("password-spray", "impossible-travel", "break-glass-sign-in")
# Rules that load but stay off until a parameter names what they watch (they say so at load
# time): the parameter that turns each on.
OFF_UNTIL_SET = {"break-glass-sign-in": "object_ids"}
# HIPAA's documentation retention (164.316(b)(2)(i)): six years, infra's default period.
SIX_YEARS_DAYS = 2190
# Problems shown on the page; the rest are counted (verify lists them all).
MAX_PROBLEMS = 20

STATUS_MET = "met"
STATUS_ATTENTION = "attention"
STATUS_NOT_MET = "not met"
STATUS_NOT_CHECKED = "not checked"


class ReportError(Exception):
    """An input the report cannot use (a time)."""


# --- the report's content --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    # To the minute (silences are computed from active minutes): the last record before the
    # silence, and the first after it or the period's end when it still runs.
    start: datetime
    end: datetime
    ongoing: bool = False

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / MINUTE


@dataclass(slots=True)
class SourceCoverage:
    """One resource's one log category over the period."""

    resource: str
    category: str
    product: str
    records: int
    first: datetime
    last: datetime
    floor_minutes: float
    gaps: list[Gap]


@dataclass(slots=True)
class ProductCoverage:
    """One product's one category: how many resources, records, first and last record."""

    product: str
    category: str
    resources: int
    records: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class InventoryStatus:
    entry: PhiResource
    categories: tuple[str, ...]  # those it sent in the period; none = sending nothing
    failing: tuple[Check, ...] = ()  # the attestation checks it fails

    @property
    def sending(self) -> bool:
        return bool(self.categories)


@dataclass(slots=True)
class Integrity:
    verified: bool
    objects: int
    manifests: int
    streams: int
    problems: list[str]
    problem_count: int


@dataclass(frozen=True, slots=True)
class Retention:
    checked: bool
    state: str  # locked | unlocked | none | not checked locally
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DetectionOn:
    rule_id: str
    name: str
    severity: str
    on: bool
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RuleAlerts:
    rule_id: str
    name: str
    alerts: int
    by_severity: dict[str, int]


@dataclass(frozen=True, slots=True)
class Control:
    citation: str
    title: str
    evidence: tuple[str, ...]
    status: str


@dataclass(slots=True)
class HipaaReport:
    location: str
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    first: datetime | None  # the period's first and last event in the archive
    last: datetime | None
    events: int
    sources: list[SourceCoverage]
    products: list[ProductCoverage]
    inventory: list[InventoryStatus] | None
    integrity: Integrity
    retention: Retention
    detections: list[DetectionOn]
    alerts: list[RuleAlerts]
    dead_letters: dict[str, int]
    volume: dict[datetime, int]  # events per hour (or per day over long periods)
    volume_step: timedelta
    controls: list[Control] = field(default_factory=list)
    # Per attestation control (attest.attestation.CONTROLS), with an inventory only.
    attestation: list[ControlCoverage] | None = None
    inventory_source: str = ""  # "file:<name>" or "resource-graph"
    unreadable: list[str] = field(default_factory=list)  # objects the report could not read

    @property
    def gaps(self) -> list[tuple[SourceCoverage, Gap]]:
        return [(source, gap) for source in self.sources for gap in source.gaps]

    @property
    def missing(self) -> list[InventoryStatus]:
        return [item for item in self.inventory or [] if not item.sending]


# --- reading the archive -------------------------------------------------------------------

_HOUR = re.compile(r"^(?:events|deadletter|alerts)/(\d{4})/(\d\d)/(\d\d)/(\d\d)/")


def _objects(
    store: ObjectStore,
    kind: str,
    since: datetime | None,
    until: datetime | None,
    unreadable: list[str],
) -> Iterator[list[bytes]]:
    """The lines of every `kind` object whose hour folder can hold records of the period."""
    low = since.replace(minute=0, second=0, microsecond=0) if since else None
    for name in sorted(store.list(f"{kind}/")):
        match = _HOUR.match(name)
        if match and (low or until):
            year, month, day, hour = (int(part) for part in match.groups())
            try:
                folder = datetime(year, month, day, hour, tzinfo=UTC)
            except ValueError:
                folder = None
            if folder is not None and (
                (low is not None and folder < low) or (until is not None and folder > until)
            ):
                continue
        try:
            lines = decode_lines(store.get(name))
        except (ObjectMissing, OSError, EOFError, zlib.error, ValueError):
            # Altered or truncated: verify names it among the problems; the report reads on.
            unreadable.append(name)
            continue
        yield lines


def _records(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line that is no JSON fails verify; it is no record here
        if isinstance(record, dict):
            yield record


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _in(time: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or time >= since) and (until is None or time <= until)


def source_key(product: str, target: str | None, category: str) -> tuple[str, str] | None:
    """(resource, category) as log-source-silent's `source_of` keys a source; on the
    archived event's fields, so the report reads plain JSON instead of validating every
    event back into the model."""
    if not target:
        return None
    if product == activity.PRODUCT:
        sub = subscription_of(target)
        return (f"/subscriptions/{sub}", category) if sub else None
    return resource_of(target), category


def gaps_of(
    minutes: Iterable[int], floor: float, end_minute: int | None
) -> list[tuple[int, int, bool]]:
    """(from, to, ongoing) for every run between active minutes longer than `floor`, and the
    silence from the last active minute to `end_minute` when that is longer too."""
    ordered = sorted(set(minutes))
    found = [(a, b, False) for a, b in itertools.pairwise(ordered) if b - a > floor]
    if ordered and end_minute is not None and end_minute - ordered[-1] > floor:
        found.append((ordered[-1], end_minute, True))
    return found


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * MINUTE, UTC)


@dataclass
class _Tally:
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    minutes: set[int] = field(default_factory=set)
    product: str = ""
    resources: set[str] = field(default_factory=set)

    def add(self, time: datetime) -> None:
        self.records += 1
        self.first = time if self.first is None or time < self.first else self.first
        self.last = time if self.last is None or time > self.last else self.last


def build_report(
    store: ObjectStore,
    *,
    trusted: dict[str, PublicKey],
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    inventory: Inventory | None = None,
    now: datetime | None = None,
) -> HipaaReport:
    now = now or datetime.now(UTC)
    params = settings.detection_params.get("log-source-silent", {})
    floors = dict(FLOORS)
    configured = params.get("floor_minutes")
    if isinstance(configured, Mapping):
        floors.update(configured)
    default_floor = float(params.get("default_floor_minutes", DEFAULT_FLOOR_MINUTES))

    per_source: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    per_product: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    volume_hours: Counter[datetime] = Counter()
    first: datetime | None = None
    last: datetime | None = None
    events = 0
    unreadable: list[str] = []
    for lines in _objects(store, "events", since, until, unreadable):
        for event in _records(lines):
            time = _time(event.get("TimeGenerated"))
            if time is None or not _in(time, since, until):
                continue
            events += 1
            first = time if first is None or time < first else first
            last = time if last is None or time > last else last
            volume_hours[time.replace(minute=0, second=0, microsecond=0)] += 1
            product = str(event.get("EventProduct") or "")
            category = str(event.get("SourceCategory") or "")
            key = source_key(product, event.get("TargetResourceId"), category)
            product_tally = per_product[(product, category)]
            product_tally.add(time)
            if key is None:
                continue
            product_tally.resources.add(key[0])
            tally = per_source[key]
            tally.add(time)
            tally.product = product
            tally.minutes.add(int(time.timestamp() // MINUTE))

    # A silence still running counts up to the period's end, but never past the last record
    # the archive holds from anyone: a report run now on last month's copy blames no one.
    end = min(until, last) if until and last else last
    end_minute = int(end.timestamp() // MINUTE) if end else None
    sources: list[SourceCoverage] = []
    for (resource, category), tally in sorted(per_source.items()):
        if tally.first is None or tally.last is None:
            continue  # never: a tally exists once a record was added
        floor = floors.get(category, default_floor)
        sources.append(
            SourceCoverage(
                resource=resource,
                category=category,
                product=tally.product,
                records=tally.records,
                first=tally.first,
                last=tally.last,
                floor_minutes=float(floor),
                gaps=[
                    Gap(_at(a), _at(b) if not ongoing else end or _at(b), ongoing)
                    for a, b, ongoing in gaps_of(tally.minutes, floor, end_minute)
                ],
            )
        )
    products = [
        ProductCoverage(
            product=product or "(unknown)",
            category=category or "(none)",
            resources=len(tally.resources),
            records=tally.records,
            first=tally.first,
            last=tally.last,
        )
        for (product, category), tally in sorted(per_product.items())
        if tally.first is not None and tally.last is not None
    ]

    report = HipaaReport(
        location=store.location,
        generated_at=now,
        since=since,
        until=until,
        first=first,
        last=last,
        events=events,
        sources=sources,
        products=products,
        inventory=None,
        integrity=_integrity(store, trusted, since, until),
        retention=retention_of(store, settings),
        detections=detections_on(settings),
        alerts=_alerts(store, since, until, unreadable),
        dead_letters=_dead_letters(store, since, until, unreadable),
        volume={},
        volume_step=timedelta(hours=1),
        unreadable=unreadable,
    )
    report.volume, report.volume_step = _volume(volume_hours)
    if inventory is not None:
        states = attest(inventory, _logging(store, inventory, since, until, first, last))
        report.attestation = coverage_by_control(inventory, states)
        report.inventory_source = inventory.source
        failing = {
            rid: tuple(check for check, passing in state.items() if not passing)
            for rid, state in states.items()
        }
        report.inventory = _inventory_status(inventory, sources, failing)
    report.controls = controls_of(report)
    return report


def _volume(hours: Counter[datetime]) -> tuple[dict[datetime, int], timedelta]:
    """Per hour, or per day once the period is longer than a week (a readable chart)."""
    if not hours:
        return {}, timedelta(hours=1)
    span = max(hours) - min(hours)
    if span <= timedelta(days=7):
        step = timedelta(hours=1)
        start, stop = min(hours), max(hours)
        buckets = dict(hours)
    else:
        step = timedelta(days=1)
        days: Counter[datetime] = Counter()
        for hour, count in hours.items():
            days[hour.replace(hour=0)] += count
        start, stop = min(days), max(days)
        buckets = dict(days)
    filled: dict[datetime, int] = {}
    at = start
    while at <= stop:  # empty buckets are drawn too: a hole in the chart is the point
        filled[at] = buckets.get(at, 0)
        at += step
    return filled, step


def _logging(
    store: ObjectStore,
    inventory: Inventory,
    since: datetime | None,
    until: datetime | None,
    first: datetime | None,
    last: datetime | None,
) -> set[str]:
    """The inventory resources whose logs reached the archive in the period. An open end is
    the period's first or last event; the hours read are whole (the archive's folders), and
    the end is inclusive as the rest of the report's is."""
    low = since or first
    high = until or last
    if low is None or high is None:
        return set()  # no event in the period: nothing logged
    return logging_from_archive(store, inventory, low, high + timedelta(microseconds=1))


def _inventory_status(
    inventory: Inventory,
    sources: list[SourceCoverage],
    failing: Mapping[str, tuple[Check, ...]],
) -> list[InventoryStatus]:
    by_resource: dict[str, set[str]] = defaultdict(set)
    for source in sources:
        by_resource[source.resource].add(source.category)
    statuses = []
    for entry in inventory:
        wanted = resource_of(entry.resource_id)
        categories: set[str] = set()
        # A listed workspace or server counts what its nested services and databases send.
        for resource, cats in by_resource.items():
            if resource == wanted or resource.startswith(wanted + "/"):
                categories |= cats
        statuses.append(
            InventoryStatus(entry, tuple(sorted(categories)), failing.get(entry.resource_id, ()))
        )
    return sorted(statuses, key=lambda s: (s.sending, s.entry.kind, s.entry.resource_id.lower()))


def _integrity(
    store: ObjectStore,
    trusted: dict[str, PublicKey],
    since: datetime | None,
    until: datetime | None,
) -> Integrity:
    verified = verify_archive(store, trusted, since=since, until=until)
    return Integrity(
        verified=verified.ok and verified.objects > 0,
        objects=verified.objects,
        manifests=verified.manifests,
        streams=verified.streams,
        problems=verified.problems[:MAX_PROBLEMS],
        problem_count=len(verified.problems),
    )


def retention_of(store: ObjectStore, settings: Settings) -> Retention:
    """What the archive container is configured with. A local directory has no storage-level
    immutability to read: said so, not guessed."""
    if not isinstance(store, BlobStore):
        return Retention(
            checked=False,
            state="not checked locally",
            lines=(
                "The archive is a local directory: retention and immutability are properties "
                "of the Azure Blob container and are not checked locally.",
                f"In Azure, infrastructure sets a version-level time-based retention policy "
                f"({SIX_YEARS_DAYS} days by default, archiveImmutabilityDays).",
            ),
        )
    status = store.immutability
    state = (
        "none"
        if not status.immutable
        else ("locked" if settings.archive_immutability_locked else "unlocked")
    )
    lines = [
        "Version-level immutability (WORM): "
        + ("on" if status.version_level_immutability else "off")
        + ".",
        "Time-based retention policy: "
        + ("present" if status.has_immutability_policy else "absent")
        + f"; its period is set by infrastructure ({SIX_YEARS_DAYS} days by default) and is "
        "not readable from the data plane.",
        "Policy locked: "
        + ("yes" if settings.archive_immutability_locked else "no")
        + " (PHIWATCH_ARCHIVE_IMMUTABILITY_LOCKED, set by infrastructure).",
        f"Legal hold: {'yes' if status.has_legal_hold else 'no'}.",
        "phiwatch refuses a container without a policy: "
        + ("yes" if settings.archive_require_immutability else "NO (turned off)")
        + ".",
    ]
    return Retention(checked=True, state=state, lines=tuple(lines))


def detections_on(settings: Settings) -> list[DetectionOn]:
    found = []
    for detection in load_detections(
        settings.detection_params, lateness=settings.allowed_lateness_seconds
    ):
        params = detection.params.model_dump(mode="json")
        needed = OFF_UNTIL_SET.get(detection.rule_id)
        found.append(
            DetectionOn(
                rule_id=detection.rule_id,
                name=detection.rule_name,
                severity=detection.severity,
                on=not (needed and not params.get(needed)),
                params=params,
            )
        )
    return found


def _alerts(
    store: ObjectStore, since: datetime | None, until: datetime | None, unreadable: list[str]
) -> list[RuleAlerts]:
    # An alert is archived again when it is enriched: the last version of each AlertId counts.
    latest: dict[str, dict[str, Any]] = {}
    for lines in _objects(store, "alerts", since, until, unreadable):
        for alert in _records(lines):
            time = _time(alert.get("FirstEventTime"))
            if time is not None and _in(time, since, until):
                latest[str(alert.get("AlertId"))] = alert
    per_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in latest.values():
        per_rule[str(alert.get("RuleId"))].append(alert)
    return sorted(
        (
            RuleAlerts(
                rule_id=rule,
                name=str(alerts[0].get("RuleName") or rule),
                alerts=len(alerts),
                by_severity=dict(Counter(str(a.get("Severity")) for a in alerts)),
            )
            for rule, alerts in per_rule.items()
        ),
        key=lambda r: (-r.alerts, r.rule_id),
    )


def _dead_letters(
    store: ObjectStore, since: datetime | None, until: datetime | None, unreadable: list[str]
) -> dict[str, int]:
    # Dead-letters have no event time (many have none to read): the hour folder they were
    # archived under is their time, as `_objects` selects them.
    reasons: Counter[str] = Counter()
    for lines in _objects(store, "deadletter", since, until, unreadable):
        for dead in _records(lines):
            reasons[str(dead.get("ReasonCode") or "unknown")] += 1
    return dict(reasons.most_common())


# --- the controls --------------------------------------------------------------------------

_CHECKS_OF = {control.control_id: control.checks for control in ATTESTED_CONTROLS}
# Worst first: a control's status is the worst of what its evidence says.
_SEVERITY = {STATUS_NOT_MET: 3, STATUS_ATTENTION: 2, STATUS_NOT_CHECKED: 1, STATUS_MET: 0}


def _worst(*statuses: str | None) -> str:
    return max((s for s in statuses if s is not None), key=_SEVERITY.__getitem__)


def coverage_status(coverage: ControlCoverage | None) -> str | None:
    """What an attested coverage says of its control: met at 100% of the resources its
    checks apply to, not met below (a PHI resource outside a safeguard is a finding, not a
    matter of degree: the percentage says how far); None when it says nothing (no
    inventory, or no inventory resource the checks apply to)."""
    if coverage is None or coverage.applicable == 0:
        return None
    return STATUS_MET if coverage.passing == coverage.applicable else STATUS_NOT_MET


def _coverage_line(coverage: ControlCoverage | None) -> tuple[str, ...]:
    if coverage is None:
        return ()
    if coverage.applicable == 0:
        return ("Attested coverage: no inventory resource its checks apply to.",)
    return (
        f"Attested coverage: {coverage.percentage:g}% ({coverage.passing} of "
        f"{coverage.applicable} inventory resources pass "
        f"{', '.join(_CHECKS_OF.get(coverage.control_id, ()))}); "
        f"{len(coverage.failing)} failing.",
    )


def controls_of(report: HipaaReport) -> list[Control]:
    """Each control with the evidence the page holds for it and a status: met, attention
    (evidence with findings to review), not met, or not checked."""
    attested = {c.control_id: c for c in report.attestation or []}
    gaps = report.gaps
    missing = report.missing
    ongoing = [g for _, g in gaps if g.ongoing]
    integrity = report.integrity
    on = [d for d in report.detections if d.on]
    alerts = sum(r.alerts for r in report.alerts)

    audit_evidence = [
        f"{report.events} events from {len(report.sources)} sources "
        f"({len({s.resource for s in report.sources})} resources) in the period.",
        f"{len(gaps)} silence(s) longer than the category floor ({len(ongoing)} still running "
        "at the period's end).",
    ]
    if report.inventory is None:
        audit_evidence.append("No inventory given: resources sending nothing cannot be listed.")
    else:
        audit_evidence.append(
            f"Inventory: {len(report.inventory) - len(missing)} of {len(report.inventory)} "
            f"expected resources sent records; {len(missing)} sent nothing."
        )
    audit_evidence.extend(_coverage_line(attested.get("164.312(b)")))
    if not report.events:
        audit_status = STATUS_NOT_MET
    elif missing or gaps or report.inventory is None:
        audit_status = STATUS_ATTENTION
    else:
        audit_status = STATUS_MET
    audit_status = _worst(audit_status, coverage_status(attested.get("164.312(b)")))

    if integrity.verified:
        integrity_status = STATUS_MET
    elif integrity.problem_count:
        integrity_status = STATUS_NOT_MET
    else:
        integrity_status = STATUS_NOT_CHECKED  # no archived object in the period
    chain = (
        f"Archive verified for the period: {integrity.objects} objects, {integrity.manifests} "
        f"signed manifests, {integrity.streams} stream(s)."
        if integrity.verified
        else f"Archive NOT verified for the period: {integrity.problem_count} problem(s), "
        f"{integrity.objects} objects."
    )
    retention = report.retention
    if retention.state == "locked" and integrity.verified:
        authenticate_status = STATUS_MET
    elif integrity.verified:
        authenticate_status = STATUS_ATTENTION
    else:
        authenticate_status = integrity_status
    integrity_coverage = attested.get("164.312(c)(1)")
    authenticate_coverage = attested.get("164.312(c)(2)")
    transmission = attested.get("164.312(e)(1)")
    if not retention.checked:
        retention_status = STATUS_NOT_CHECKED
    elif retention.state == "locked":
        retention_status = STATUS_MET
    elif retention.state == "unlocked":
        retention_status = STATUS_ATTENTION
    else:
        retention_status = STATUS_NOT_MET

    sign_ins = sum(p.records for p in report.products if p.category in SIGN_IN_CATEGORIES)
    sign_in_rules = [d for d in on if d.rule_id in SIGN_IN_RULES]
    if not sign_ins:
        login_status = STATUS_NOT_MET
    elif len(sign_in_rules) < len(SIGN_IN_RULES):
        login_status = STATUS_ATTENTION
    else:
        login_status = STATUS_MET
    review_status = STATUS_MET if on and report.events else STATUS_NOT_MET
    off = [d.rule_id for d in report.detections if not d.on]

    return [
        Control(
            "164.312(b)",
            "Audit controls: record and examine activity in systems that hold ePHI",
            tuple(audit_evidence),
            audit_status,
        ),
        Control(
            "164.312(c)(1)",
            "Integrity: protect ePHI (here, its audit trail) from improper alteration or "
            "destruction",
            (
                chain,
                "Objects are written create-only; every batch is listed with its SHA-256 in a "
                "manifest chained to the previous one.",
                *_coverage_line(integrity_coverage),
            ),
            _worst(integrity_status, coverage_status(integrity_coverage)),
        ),
        Control(
            "164.312(c)(2)",
            "Mechanism to authenticate ePHI: corroborate it was not altered or destroyed",
            (
                chain,
                "Manifests are signed and verified against trusted keys only; Merkle roots "
                "prove single records (evidence bundles).",
                f"Storage immutability: {retention.state}.",
                *_coverage_line(authenticate_coverage),
            ),
            _worst(authenticate_status, coverage_status(authenticate_coverage)),
        ),
        Control(
            "164.312(e)(1)",
            "Transmission security: guard against unauthorized access to ePHI in transit",
            _coverage_line(transmission)
            or ("No inventory given: network exposure of the PHI resources is not attested.",),
            coverage_status(transmission) or STATUS_NOT_CHECKED,
        ),
        Control(
            "164.308(a)(1)(ii)(D)",
            "Information system activity review: regularly review audit records, access "
            "reports and incident tracking",
            (
                f"{len(on)} of {len(report.detections)} streaming detections on"
                + (f" (off until configured: {', '.join(off)})" if off else "")
                + ".",
                f"{alerts} alert(s) from {len(report.alerts)} rule(s) archived in the period.",
                f"{sum(report.dead_letters.values())} dead-letter(s) kept with their raw "
                "records for review.",
            ),
            review_status,
        ),
        Control(
            "164.308(a)(5)(ii)(C)",
            "Log-in monitoring: monitor log-in attempts and report discrepancies",
            (
                f"{sign_ins} sign-in events in the period.",
                "Sign-in rules on: "
                + (", ".join(d.rule_id for d in sign_in_rules) or "none")
                + "; off: "
                + (
                    ", ".join(r for r in SIGN_IN_RULES if r not in {d.rule_id for d in on})
                    or "none"
                )
                + ".",
            ),
            login_status,
        ),
        Control(
            "164.316(b)(2)",
            "Documentation: retain for 6 years, available to those responsible",
            (*retention.lines[:2], "Evidence bundles and this report can be produced offline."),
            retention_status,
        ),
    ]


__all__ = [
    "Control",
    "Gap",
    "HipaaReport",
    "ReportError",
    "build_report",
    "coverage_status",
    "gaps_of",
    "parse_time",
]
