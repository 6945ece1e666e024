"""Azure SQL server-level audit (``SQLSecurityAuditEvents``) as a master-database diagnostic
setting streams it: batch/RPC completions with sensitivity XML, logins and their failures.

Statements carry synthetic MRNs in their literals on purpose: the statement text is exactly
what the normaliser must never copy out of the archive.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import iso7, sample_time
from .emitted import Emitted
from .ids import new_uuid, private_ip
from .plan import ScenarioPlan
from .population import Population

# Built-in information types (ids as public samples show them) and the labels they carry.
_INFO = {
    "Health": ("6e2c5b18-97d2-46db-a220-da43b90cb117", "Highly Confidential - PHI", 40),
    "Name": ("57845286-7598-22f5-3422-15b24aeb125e", "Confidential - PHI", 20),
    "National ID": ("6f5a11a7-08b1-19c3-59e5-8c89cf4f8444", "Highly Confidential - PHI", 40),
    "Date Of Birth": ("3de7cc52-710d-4e96-7e20-4d5188d2590c", "Confidential - PHI", 20),
    "Contact Info": ("5c503e21-22c6-81fa-620b-f369b8ec38d1", "Confidential", 20),
    "Financial": ("c44fb23d-9b54-4f5e-9cc0-b6b8b0f5bf33", "Confidential - Financial", 30),
}
_LABEL_IDS = {
    "Highly Confidential - PHI": "d2b3c6f1-44a1-4b7e-9d1e-0c6f2a7c9e11",
    "Confidential - PHI": "bf91e08c-f4f0-478a-b016-23422b2a65ff",
    "Confidential": "331f0b13-76b5-2f1b-a77b-def5a73c73c2",
    "Confidential - Financial": "8a6c1f2e-3d4b-4c5a-9e7f-1b2c3d4e5f60",
}
_RANK_DESC = {10: "Low", 20: "Medium", 30: "High", 40: "Critical"}

# (statement template, information types the result set touches, rows range)
Query = tuple[str, tuple[str, ...], tuple[int, int]]
_EHR_QUERIES: tuple[Query, ...] = (
    (
        "SELECT p.mrn, p.family_name, p.given_name, p.birth_date FROM dbo.patients p "
        "WHERE p.mrn = N'{mrn}'",
        ("Name", "Date Of Birth"),
        (1, 1),
    ),
    (
        "SELECT e.encounter_id, e.admit_dt, e.discharge_dt, d.icd10_code FROM dbo.encounters e "
        "JOIN dbo.diagnoses d ON d.encounter_id = e.encounter_id WHERE e.mrn = N'{mrn}'",
        ("Health",),
        (1, 40),
    ),
    (
        "SELECT o.loinc_code, o.value, o.unit, o.observed_at FROM dbo.observations o "
        "WHERE o.mrn = N'{mrn}' AND o.observed_at > DATEADD(day, -30, SYSUTCDATETIME())",
        ("Health",),
        (5, 120),
    ),
    (
        "SELECT p.mrn, p.ssn, p.phone, p.address_line1 FROM dbo.patients p WHERE p.mrn = N'{mrn}'",
        ("National ID", "Contact Info", "Name"),
        (1, 1),
    ),
    (
        "SELECT c.claim_id, c.amount, c.payer_id FROM billing.claims c WHERE c.mrn = N'{mrn}'",
        ("Financial",),
        (1, 12),
    ),
)
_RPC = (
    "exec sp_executesql N'SELECT m.drug_code, m.dose, m.route FROM dbo.medication_orders m "
    "WHERE m.mrn = @p0 AND m.status = @p1',N'@p0 nvarchar(12),@p1 nvarchar(10)',"
    "@p0=N'{mrn}',@p1=N'active'"
)
_REPORTS: tuple[Query, ...] = (
    (
        "SELECT ward, COUNT(*) AS census FROM dbo.encounters WHERE discharge_dt IS NULL "
        "GROUP BY ward",
        (),
        (8, 24),
    ),
    (
        "SELECT e.mrn, e.ward, e.admit_dt FROM dbo.encounters e WHERE e.discharge_dt IS NULL "
        "AND e.ward = N'{ward}'",
        ("Name",),
        (10, 60),
    ),
    (
        "SELECT d.icd10_code, COUNT(*) FROM dbo.diagnoses d GROUP BY d.icd10_code",
        ("Health",),
        (100, 450),
    ),
)
_DDL = (
    "ALTER TABLE dbo.observations ADD device_id nvarchar(64) NULL",
    "CREATE INDEX ix_obs_mrn_time ON dbo.observations (mrn, observed_at)",
    "GRANT SELECT ON SCHEMA::reporting TO [svc_reporting]",
    "ALTER ROLE db_datareader ADD MEMBER [svc_reporting]",
)
_DML = (
    "UPDATE dbo.encounters SET discharge_dt = SYSUTCDATETIME() WHERE mrn = N'{mrn}' "
    "AND discharge_dt IS NULL",
    "INSERT INTO dbo.observations (mrn, loinc_code, value, unit, observed_at) VALUES "
    "(N'{mrn}', N'8867-4', 72, N'/min', SYSUTCDATETIME())",
)
_WARDS = ("4 North", "ICU", "Oncology", "Maternity", "ED")


@dataclass(frozen=True, slots=True)
class SqlLogin:
    principal: str  # server principal name as SQL logs it
    database_principal: str
    app_name: str
    host: str
    ip: str
    oid: str | None  # Entra logins: the actor behind the principal


def sensitivity_xml(types: tuple[str, ...], rng: random.Random) -> str:
    """The documented full form most of the time, the short form (no ranks or ids) otherwise."""
    if not types:
        return ""
    if rng.random() < 0.3:
        inner = "".join(
            f'<sensitivity_attribute label="{_INFO[t][1]}" information_type="{t}"/>' for t in types
        )
        return f"<sensitivity_attributes>{inner}</sensitivity_attributes>"
    top = max(_INFO[t][2] for t in types)
    parts = []
    for t in types:
        info_id, label, rank = _INFO[t]
        parts.append(
            f'<sensitivity_attribute label="{label}" label_id="{_LABEL_IDS[label]}" '
            f'information_type="{t}" information_type_id="{info_id}" rank="{rank}" '
            f'rank_desc="{_RANK_DESC[rank]}"/>'
        )
    return (
        f'<sensitivity_attributes max_rank="{top}" max_rank_desc="{_RANK_DESC[top]}">'
        + "".join(parts)
        + "</sensitivity_attributes>"
    )


def _mrn(pid: str) -> str:
    return f"MRN{int(pid):08d}"


def sql_record(
    server: str,
    resource_id: str,
    database: str,
    login: SqlLogin,
    t: datetime,
    rng: random.Random,
    *,
    action: str,
    statement: str = "",
    rows: int = 0,
    affected: int = 0,
    sensitivity: str = "",
    succeeded: bool = True,
    additional: str = "",
    session: int = 0,
) -> dict[str, object]:
    names = {
        "BCM": ("BATCH COMPLETED", "BA", "BATCH"),
        "RCM": ("RPC COMPLETED", "BA", "BATCH"),
        "DBAS": ("DATABASE AUTHENTICATION SUCCEEDED", "DB", "DATABASE"),
        "DBAF": ("DATABASE AUTHENTICATION FAILED", "DB", "DATABASE"),
        "LGIF": ("LOGIN FAILED", "SL", "SERVER"),
    }
    name, class_type, class_desc = names[action]
    ok: object = "true" if succeeded else "false"
    if rng.random() < 0.03:  # some agents ship the bit itself
        ok = succeeded
    numbers: dict[str, object] = {
        "duration_milliseconds": rng.randint(0, 40) if not statement else rng.randint(1, 900),
        "response_rows": rows,
        "affected_rows": affected or rows,
        "session_id": session or rng.randint(51, 400),
    }
    if rng.random() < 0.04:  # numbers as strings, as some exports re-type them
        numbers = {k: str(v) for k, v in numbers.items()}
    props: dict[str, object] = {
        "event_time": iso7(t),
        "sequence_number": 1,
        "action_id": action,
        "action_name": name,
        "succeeded": ok,
        "is_column_permission": False,
        **numbers,
        "server_principal_id": 0,
        "database_principal_id": 1 if login.database_principal == "dbo" else 5,
        "class_type": class_type,
        "class_type_description": class_desc,
        "securable_class_type": "DATABASE",
        "permission_bitmask": "00000000000000000000000000000000",
        "sequence_group_id": new_uuid(rng).upper(),
        "session_server_principal_name": login.principal,
        "server_principal_name": login.principal,
        "server_principal_sid": "0x" + f"{rng.getrandbits(128):032X}",
        "database_principal_name": login.database_principal,
        "target_server_principal_name": "",
        "target_database_principal_name": "",
        "server_instance_name": server,
        "database_name": database,
        "schema_name": "",
        "object_name": "",
        "statement": statement,
        "additional_information": additional,
        "user_defined_information": "",
        "application_name": login.app_name,
        "connection_id": new_uuid(rng).upper(),
        "data_sensitivity_information": sensitivity,
        "host_name": login.host,
        "client_ip": login.ip,
        "session_context": "",
        "client_tls_version": 0,
        "client_tls_version_name": "",
        "is_server_level_audit": "true",
        "event_id": new_uuid(rng),
    }
    return {
        "originalEventTimestamp": iso7(t),
        "time": iso7(t + timedelta(milliseconds=rng.randint(200, 4000))),
        "resourceId": resource_id,
        "category": "SQLSecurityAuditEvents",
        "operationName": "AuditEvent",
        "properties": json.dumps(props, separators=(",", ":")) if rng.random() < 0.02 else props,
    }


def _logins(pop: Population, rng: random.Random) -> tuple[list[SqlLogin], list[SqlLogin]]:
    ehr = pop.principal("app-ehr-portal-backend")
    hl7 = pop.principal("app-hl7-interface")
    apps = [
        SqlLogin(
            "svc_ehr_portal",
            "svc_ehr_portal",
            "Core .Net SqlClient Data Provider",
            "ehr-app-01",
            ehr.ip,
            None,
        ),
        SqlLogin(
            "svc_ehr_portal",
            "svc_ehr_portal",
            "Core .Net SqlClient Data Provider",
            "ehr-app-02",
            private_ip(rng, "10.20"),
            None,
        ),
        SqlLogin(
            "svc_hl7_engine", "svc_hl7_engine", "Mirth Connect", "hl7-engine-01", hl7.ip, None
        ),
    ]
    analysts = [
        SqlLogin(
            a.upn or a.name,
            "dbo" if a.is_admin else "analysts",
            "Azure Data Studio" if i % 2 else "Microsoft SQL Server Management Studio - Query",
            f"WKS-{a.name.split()[1].upper()[:6]}-{i:02d}",
            a.ip,
            a.oid,
        )
        for i, a in enumerate(pop.clinicians[:10])
    ]
    return apps, analysts


def sql_traffic(
    pop: Population, plan: ScenarioPlan, rng: random.Random, budget: int
) -> list[Emitted]:
    servers = [r for r in pop.arm if r.kind == "sql"]
    mrns = [_mrn(p) for p in pop.patients if p.isdigit()]
    apps, analysts = _logins(pop, rng)
    reporter = SqlLogin(
        "svc_reporting", "svc_reporting", "Report Server", "ssrs-01", private_ip(rng, "10.20"), None
    )
    out: list[Emitted] = []

    def emit(res_kind: int, login: SqlLogin, t: datetime, db: str, **kw: object) -> None:
        server = servers[res_kind]
        name = server.camel_id.rsplit("/", 1)[-1]
        rid = f"{server.camel_id}/databases/master".upper()
        rec = sql_record(name, rid, db, login, t, rng, **kw)  # type: ignore[arg-type]
        out.append(Emitted(t, rid.lower(), "sql", rec, login.oid))

    for _ in range(budget * 10):
        if len(out) >= budget:
            break
        roll = rng.random()
        t = sample_time(rng, plan.start, flat=0.3, tail=timedelta(minutes=10))
        if roll < 0.62:  # the EHR backend: one patient per query, pooled connections
            login = rng.choice(apps[:2])
            if rng.random() < 0.75:
                sql, types, (lo, hi) = rng.choice(_EHR_QUERIES)
                stmt, action = sql.format(mrn=rng.choice(mrns)), "BCM"
            else:
                stmt, types, (lo, hi), action = (
                    _RPC.format(mrn=rng.choice(mrns)),
                    ("Health",),
                    (1, 15),
                    "RCM",
                )
            emit(
                0,
                login,
                t,
                "clinicaldb",
                action=action,
                statement=stmt,
                rows=rng.randint(lo, hi),
                sensitivity=sensitivity_xml(types, rng),
            )
        elif roll < 0.74:  # the interface engine writes results as they arrive
            stmt = rng.choice(_DML).format(mrn=rng.choice(mrns))
            emit(0, apps[2], t, "clinicaldb", action="BCM", statement=stmt, rows=0, affected=1)
        elif roll < 0.84:  # reporting: census and aggregate queries
            sql, types, (lo, hi) = rng.choice(_REPORTS)
            emit(
                1,
                reporter,
                t,
                "reportingdb",
                action="BCM",
                statement=sql.format(ward=rng.choice(_WARDS)),
                rows=rng.randint(lo, hi),
                sensitivity=sensitivity_xml(types, rng),
            )
        elif roll < 0.93:  # analysts and DBAs: a login, then a few queries
            who = rng.choice(analysts)
            if who.oid and plan.busy(who.oid, t, timedelta(minutes=30)):
                continue
            session = rng.randint(51, 400)
            emit(0, who, t, "clinicaldb", action="DBAS", session=session)
            for _ in range(rng.randint(1, 4)):
                t += timedelta(seconds=rng.uniform(5, 240))
                if who.database_principal == "dbo" and rng.random() < 0.15:
                    emit(
                        0,
                        who,
                        t,
                        "clinicaldb",
                        action="BCM",
                        statement=rng.choice(_DDL),
                        session=session,
                    )
                    continue
                sql, types, (lo, hi) = rng.choice(_EHR_QUERIES[:3])
                emit(
                    0,
                    who,
                    t,
                    "clinicaldb",
                    action="BCM",
                    statement=sql.format(mrn=rng.choice(mrns)),
                    rows=rng.randint(lo, hi),
                    sensitivity=sensitivity_xml(types, rng),
                    session=session,
                )
        else:  # failures: a stale password on a workstation, a typo at login
            who = rng.choice(analysts + apps[:1])
            if who.oid and plan.busy(who.oid, t, timedelta(minutes=30)):
                continue
            state = rng.choice((5, 8, 38))
            info = (
                "<login_information><error_code>18456</error_code>"
                f"<error_state>{state}</error_state></login_information>"
            )
            action = "DBAF" if rng.random() < 0.6 else "LGIF"
            for _ in range(rng.randint(1, 2)):
                emit(
                    0,
                    who,
                    t,
                    "clinicaldb" if action == "DBAF" else "master",
                    action=action,
                    succeeded=False,
                    additional=info,
                )
                t += timedelta(seconds=rng.uniform(2, 30))
    return out
