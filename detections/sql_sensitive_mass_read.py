"""sql-sensitive-mass-read: a principal reads many rows of PHI-labelled data from Azure SQL.

Two tiers over successful SQL reads whose result set touched a column classified with a
PHI information type (`PhiCategory` other than none, from `data_sensitivity_information`):

- one statement returning at least `statement_rows` rows (High, whatever the principal's
  usual volume: Sentinel's volume anomaly needs 14 days of training, this does not);
- at least `hourly_rows` such rows per principal within any hour across statements
  (Medium: exfiltration spread over many small queries).

One incident is one alert: while it is open, further labelled reads of the principal
enrich it, the hourly tier after a statement tier adds to it, and a statement tier after
the hourly one raises it to High. Unlabelled reads never count here (the volume rule's
business), nor do allow-listed principals or client applications (ETL, backup). A
stateful rule: the engine holds, expires and snapshots the per-principal hour of reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field, field_validator

from phiwatch.detect.alert_book import AlertState
from phiwatch.detect.context import DetectionContext, RuleInfo
from phiwatch.detect.detection import Detection, DetectionParams, actor_label
from phiwatch.detect.grouping import key_of
from phiwatch.detect.kinds import StatefulRule
from phiwatch.detect.kinds.base import count_in, enrich, open_alert
from phiwatch.detect.snapshot import snapshot_class
from phiwatch.detect.times import hhmm, window_anchor
from phiwatch.detect.windows import KeyedWindows
from phiwatch.model import AccessEvent, Alert
from phiwatch.sources import sql

HOUR = 3600.0
MAX_NAMES = 8  # labels and client applications named in an alert


class Params(DetectionParams):
    statement_rows: int = Field(
        default=1_000, ge=1, le=10_000_000, description="one statement returning this many"
    )
    hourly_rows: int = Field(
        default=10_000, ge=1, le=100_000_000, description="labelled rows per principal per hour"
    )
    allow_principals: tuple[str, ...] = Field(
        default=(),
        description="SQL principals never alerted on: a login name, a UPN or a sql:… key",
    )
    allow_applications: tuple[str, ...] = Field(
        default=(), description="client application names (application_name)"
    )

    @field_validator("allow_principals", "allow_applications")
    @classmethod
    def _case_blind(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Lowered once here, not per event: names match whatever case the audit writes.
        return tuple(v.lower() for v in value)


@snapshot_class
@dataclass(slots=True)
class SqlReadFacts:
    statement_rows: int  # thresholds in force when the alert opened
    hourly_rows: int
    largest: int = 0  # the most rows one counted statement returned
    largest_time: float | None = None
    statement_tier: bool = False  # a statement reached statement_rows
    hourly_tier: bool = False  # the hour's labelled rows reached hourly_rows
    hourly_peak: int = 0  # the most labelled rows seen within one hour
    total_rows: int = 0  # labelled rows of the alert's statements
    categories: dict[str, int] = field(default_factory=dict)  # clinical → statements
    labels: list[str] = field(default_factory=list)
    applications: list[str] = field(default_factory=list)


def _rows(event: AccessEvent) -> int:
    return event.record_count or 0


def is_labelled_read(event: AccessEvent) -> bool:
    return (
        event.event_product == sql.PRODUCT
        and event.event_type == "Read"
        and event.event_result == "Success"
        and _rows(event) > 0
        and event.phi_category != "none"
    )


def _principal_names(event: AccessEvent) -> set[str]:
    names = set()
    for value in (event.actor_user_id, event.actor_username):
        if value:
            lowered = value.lower()
            names.add(lowered)
            bare = lowered.removeprefix("sql:")
            names.add(bare)
            names.add(bare.rsplit("/", 1)[-1])  # the login, without its server
    return names


def _note(facts: SqlReadFacts, event: AccessEvent, rows: int, time: float) -> None:
    facts.total_rows += rows
    if rows > facts.largest:
        facts.largest, facts.largest_time = rows, time
    facts.categories[event.phi_category] = facts.categories.get(event.phi_category, 0) + 1
    for label in event.sensitivity_labels or ():
        if label not in facts.labels and len(facts.labels) < MAX_NAMES:
            facts.labels.append(label)
    app = event.acting_app_name
    if app and app not in facts.applications and len(facts.applications) < MAX_NAMES:
        facts.applications.append(app)


class SqlSensitiveMassRead(Detection[Params]):
    rule_id = "sql-sensitive-mass-read"
    rule_name = "Mass read of PHI-labelled SQL data"
    severity = "High"
    tactics = ("Collection", "Exfiltration")
    techniques = ("T1213",)
    group_by = "actor"
    planes = frozenset({"data"})
    products = frozenset({sql.PRODUCT})
    Params = Params
    Facts = SqlReadFacts

    def applies(self, event: AccessEvent) -> bool:
        if not is_labelled_read(event):
            return False
        params = self.params
        app = event.acting_app_name
        if app and app.lower() in params.allow_applications:
            return False
        allowed = params.allow_principals
        return not (allowed and not _principal_names(event).isdisjoint(allowed))

    def declare(self) -> StatefulRule:
        return StatefulRule(
            state=lambda: KeyedWindows(HOUR),
            step=self._step,
            drop_before=lambda state, before: state.expire(before),
        )

    def _step(
        self,
        rule: RuleInfo,
        state: KeyedWindows,
        event: AccessEvent,
        time: float,
        ctx: DetectionContext,
    ) -> None:
        key = key_of(rule.group_by, event)
        if key is None:
            return
        rows = _rows(event)
        window = count_in(state, key, event, time, rows, ctx.watermark - rule.lateness)
        if window is None:
            return  # redelivered: already counted
        params = self.params
        # The hour ending with this read, and (for a late read) the hour starting with it.
        hourly = max(
            sum(kept[0] for _, _, kept in window.span(start, start + HOUR))
            for start in (time - HOUR, time - 1e-6)
        )
        statement = rows >= params.statement_rows
        hourly_hit = hourly >= params.hourly_rows
        alert = ctx.book.open_for(rule.rule_id, key, time, HOUR)
        if alert is not None:
            enrich(rule, ctx, key, event, time, HOUR)
            facts: SqlReadFacts = alert.facts
            _note(facts, event, rows, time)
            facts.hourly_peak = max(facts.hourly_peak, hourly)
            facts.hourly_tier = facts.hourly_tier or hourly_hit
            if statement and not facts.statement_tier:
                facts.statement_tier = True
                alert.severity = "High"
            return
        if not (statement or hourly_hit):
            return
        # A statement tier's evidence is the statement; an hourly tier's, the hour's reads.
        earlier = (
            []
            if statement
            else [e for e in window.span(time - HOUR, time) if e[1] != event.event_uid]
        )
        facts = SqlReadFacts(params.statement_rows, params.hourly_rows)
        facts.statement_tier, facts.hourly_tier, facts.hourly_peak = statement, hourly_hit, hourly
        for entry_time, _, (entry_rows, *_) in earlier:
            facts.total_rows += entry_rows
            if entry_rows > facts.largest:
                facts.largest, facts.largest_time = entry_rows, entry_time
        _note(facts, event, rows, time)
        opened = open_alert(
            rule,
            ctx,
            key,
            event,
            time,
            anchor=window_anchor(time, HOUR),
            facts=facts,
            entries=earlier,
            window=(earlier[0][0] if earlier else time, time),
        )
        opened.severity = "High" if statement else "Medium"

    def render(self, state: AlertState) -> Alert:
        facts: SqlReadFacts = state.facts
        who = actor_label(state)
        database = (state.top_target or "").lower()
        server = database.split("/servers/", 1)[-1].split("/", 1)[0] if database else ""
        where = f" on {server}" if server else ""
        kinds = ", ".join(
            f"{name} x{n}" for name, n in sorted(facts.categories.items(), key=lambda i: -i[1])
        )
        labels = ", ".join(facts.labels) or "a PHI information type"
        reasons: list[str] = []
        if facts.statement_tier and facts.largest_time is not None:
            reasons.append(
                f"One statement at {hhmm(facts.largest_time)} returned {facts.largest:,} rows "
                f"of data labelled {labels}; the threshold is {facts.statement_rows:,} rows "
                "per statement, whatever the principal's usual volume."
            )
        if facts.hourly_tier:
            reasons.append(
                f"{facts.hourly_peak:,} PHI-labelled rows were read within one hour; the "
                f"threshold is {facts.hourly_rows:,} rows per principal per hour across "
                "statements."
            )
        reasons.append(
            f"{state.event_count} labelled read{'s' if state.event_count != 1 else ''} "
            f"between {hhmm(state.first_time)} and "
            f"{hhmm(state.last_time)} returned {facts.total_rows:,} rows in all "
            f"(PHI categories: {kinds}). Reads without a PHI sensitivity label and "
            "allow-listed principals and applications are not counted."
        )
        apps = ", ".join(facts.applications) or "not reported"
        reasons.append(
            f"Client application: {apps}. Check first whether {who} runs an approved "
            "report, extract or backup of this size; an interactive tool rather than the "
            "EHR's own service suggests copying PHI out."
        )
        if len(state.src_ips) == 1:
            reasons.append(f"Every read came from one client address, {state.top_ip}.")
        elif state.src_ips:
            reasons.append(f"Reads came from {len(state.src_ips)} client addresses.")
        if facts.statement_tier:
            title = (
                f"Mass read of PHI-labelled SQL data by {who}{where}: "
                f"{facts.largest:,} rows in one statement"
            )
        else:
            title = (
                f"Mass read of PHI-labelled SQL data by {who}{where}: "
                f"{facts.hourly_peak:,} rows within an hour"
            )
        return self.base_alert(
            state,
            title=title,
            description=(
                f"{who} read {facts.total_rows:,} rows of data classified as PHI from Azure "
                f"SQL{where}. Bulk reads of labelled columns outside the EHR's normal "
                "one-patient queries are how a database is copied out; confirm the purpose "
                "with the data owner and review the session's other statements in the SQL "
                "audit."
            ),
            reasons=reasons,
        )


DETECTION = SqlSensitiveMassRead
