"""sql-sensitive-mass-read in the scenario: one incident and its look-alikes, on the SQL audit.

Drawn from a generator of its own (seeded from the seed and the rule id), so the original
scenario and every other added source stay byte-for-byte what they were. Injected only when
the SQL audit source is generated (added_sources.ADDED), like the traffic it sits in.

- Incident: a SQL login (`dba_maint`) from an address outside the hospital runs `sqlcmd`
  and pulls 4,850 rows of labelled patient and diagnosis data in one statement, then two
  smaller labelled reads: one alert, High.
- Look-alikes: a quality report returning 999 labelled rows (one below the statement
  threshold), and a 60,000-row read of an unlabelled reference table (no PHI label).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import added_sources
from .added_sources import source_rng
from .emitted import Emitted
from .ground_truth import Incident, Lookalike, span
from .ids import private_ip, public_ip
from .plan import ScenarioPlan
from .population import Population
from .traffic_sql import SqlLogin, sensitivity_xml, sql_record

RULE_ID = "sql-sensitive-mass-read"
# Minutes after the window start: clear of the original scenario's slots.
OFFSETS_MIN = {"incident": 1000, "near_limit": 1045, "unlabelled": 1090}
INCIDENT_LOGIN = "dba_maint"
NEAR_LIMIT_LOGIN = "svc_quality"
UNLABELLED_LOGIN = "svc_terminology"
INCIDENT_ROWS = 4_850
NEAR_LIMIT_ROWS = 999
UNLABELLED_ROWS = 60_000

_EXPORT = (
    "SELECT p.mrn, p.family_name, p.given_name, p.birth_date, d.icd10_code, d.recorded_at "
    "FROM dbo.patients p JOIN dbo.diagnoses d ON d.mrn = p.mrn WHERE d.recorded_at > "
    "DATEADD(year, -2, SYSUTCDATETIME())"
)
_FOLLOW_UPS = (
    "SELECT m.mrn, m.drug_code, m.dose FROM dbo.medication_orders m WHERE m.status = N'active'",
    "SELECT o.mrn, o.loinc_code, o.value FROM dbo.observations o WHERE o.loinc_code = N'4548-4'",
)
_QUALITY = (
    "SELECT e.mrn, e.ward, d.icd10_code FROM dbo.encounters e JOIN dbo.diagnoses d ON "
    "d.encounter_id = e.encounter_id WHERE d.icd10_code LIKE N'I21%' AND e.admit_dt > "
    "DATEADD(day, -90, SYSUTCDATETIME())"
)
_TERMINOLOGY = "SELECT code, display, system_uri FROM ref.terminology_concepts"


def sql_incidents(
    pop: Population,
    plan: ScenarioPlan,
    seed: int,
    incidents: list[Incident],
    lookalikes: list[Lookalike],
) -> list[Emitted]:
    """The records; the incident and look-alikes are appended to the ground truth lists."""
    if "sql" not in added_sources.ADDED:  # looked up now: a test may switch sources off
        return []
    rng = source_rng(seed, RULE_ID)
    server = next(r for r in pop.arm if r.kind == "sql")
    name = server.camel_id.rsplit("/", 1)[-1]
    rid = f"{server.camel_id}/databases/master".upper()
    actor_key = f"sql:{name.lower()}/"

    def at(key: str) -> datetime:
        return plan.start + timedelta(minutes=OFFSETS_MIN[key], seconds=rng.uniform(3, 50))

    def record(login: SqlLogin, t: datetime, **kw: object) -> Emitted:
        rec = sql_record(name, rid, "clinicaldb", login, t, rng, **kw)  # type: ignore[arg-type]
        return Emitted(t, rid.lower(), "sql", rec, None, scenario=True)

    out: list[Emitted] = []
    # The incident: a maintenance login used from outside, with sqlcmd.
    dba = SqlLogin(INCIDENT_LOGIN, "dbo", "SQLCMD", "LAPTOP-7Q2M", public_ip(rng), None)
    t = at("incident")
    session = rng.randint(51, 400)
    mine = [record(dba, t, action="DBAS", session=session)]
    t += timedelta(seconds=rng.uniform(20, 60))
    mine.append(
        record(
            dba,
            t,
            action="BCM",
            statement=_EXPORT,
            rows=INCIDENT_ROWS,
            sensitivity=sensitivity_xml(("Name", "Date Of Birth", "Health"), rng),
            session=session,
        )
    )
    for stmt in _FOLLOW_UPS:
        t += timedelta(seconds=rng.uniform(40, 120))
        mine.append(
            record(
                dba,
                t,
                action="BCM",
                statement=stmt,
                rows=rng.randint(300, 700),
                sensitivity=sensitivity_xml(("Health",), rng),
                session=session,
            )
        )
    first, last = span(mine)
    incidents.append(
        Incident(
            rule_id=RULE_ID,
            description=f"SQL login {INCIDENT_LOGIN} signed in from outside the hospital with "
            f"sqlcmd and read {INCIDENT_ROWS:,} rows of labelled patient and diagnosis data in "
            "one statement, then two more labelled reads.",
            actor_user_id=actor_key + INCIDENT_LOGIN,
            actor_app_id=None,
            src_ip=dba.ip,
            target_resource_id=rid.lower(),
            start=first,
            end=last,
        )
    )
    out += mine

    # Look-alike: a quality report one row below the statement threshold.
    quality = SqlLogin(
        NEAR_LIMIT_LOGIN,
        NEAR_LIMIT_LOGIN,
        "Report Server",
        "ssrs-02",
        private_ip(rng, "10.20"),
        None,
    )
    t = at("near_limit")
    near = [
        record(
            quality,
            t,
            action="BCM",
            statement=_QUALITY,
            rows=NEAR_LIMIT_ROWS,
            sensitivity=sensitivity_xml(("Health", "Name"), rng),
        )
    ]
    first, last = span(near)
    lookalikes.append(
        Lookalike(
            kind="sql-labelled-read-below-threshold",
            resembles_rule_id=RULE_ID,
            description=f"The quality report read {NEAR_LIMIT_ROWS} labelled rows in one "
            "statement (the rule fires from 1,000).",
            actor_user_id=actor_key + NEAR_LIMIT_LOGIN,
            actor_app_id=None,
            src_ip=quality.ip,
            target_resource_id=rid.lower(),
            start=first,
            end=last,
            details={"response_rows": NEAR_LIMIT_ROWS},
        )
    )
    out += near

    # Look-alike: a big read of an unlabelled reference table.
    terms = SqlLogin(
        UNLABELLED_LOGIN,
        UNLABELLED_LOGIN,
        "Core .Net SqlClient Data Provider",
        "fhir-term-01",
        private_ip(rng, "10.20"),
        None,
    )
    t = at("unlabelled")
    big = [record(terms, t, action="BCM", statement=_TERMINOLOGY, rows=UNLABELLED_ROWS)]
    first, last = span(big)
    lookalikes.append(
        Lookalike(
            kind="sql-big-unlabelled-read",
            resembles_rule_id=RULE_ID,
            description=f"The terminology service read {UNLABELLED_ROWS:,} rows of an "
            "unlabelled reference table (no PHI sensitivity label).",
            actor_user_id=actor_key + UNLABELLED_LOGIN,
            actor_app_id=None,
            src_ip=terms.ip,
            target_resource_id=rid.lower(),
            start=first,
            end=last,
            details={"response_rows": UNLABELLED_ROWS},
        )
    )
    out += big
    return out
