"""Patient privacy in the scenario: the workforce roster, the patient index, and the accesses
the privacy rules are about (issue 16).

The roster holds every clinician of the population and a few staff who appear only here; the
patient index holds every patient of the population on both FHIR services (their care team:
the clinicians whose panel they are on, so ordinary charting is explained) and enough other
patients for a surname to be rare in it (12,000 rows: a surname held once is rare).

Each incident is a member of staff opening, in the EHR, a chart that is not theirs to open:
their own, a relative's (same surname and household; a rare shared surname), a colleague's,
a neighbour's, a restricted (VIP) one, any chart after their termination date, and one chart
opened by ten colleagues in an afternoon. The look-alikes: a common shared surname at another
address, a care-team member opening a colleague's chart, an allow-listed integration reading
a restricted chart, a leaver before their date, nine curious colleagues, ten care-team readers.
The charts are new patients nobody else opens, so each access raises its rule alone. Every
value is synthetic. The records come from their own generator: nothing else changes.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from phiwatch.privacy.fhir_sync import HEADER as PATIENT_INDEX_HEADER

from . import catalog
from .catalog import DOMAIN
from .emitted import Emitted
from .ground_truth import Incident, Lookalike
from .ids import new_uuid, private_ip
from .plan import ScenarioPlan
from .population import Actor, FhirService, Population
from .records_fhir import patient_read

ROSTER_FILE = "roster.csv"
# Compressed (the loaders read gzip as it comes): 12,000 rows are 3 MB of CSV.
PATIENTS_FILE = "patients.csv.gz"
INDEX_ROWS = 12_000  # a surname held by one patient in 12,000 is rare (patients.RARE_SHARE)
ROSTER_COLUMNS = (
    "ObjectId",
    "UserPrincipalName",
    "EmployeeId",
    "Surname",
    "Address",
    "Postcode",
    "Department",
    "Status",
    "TerminationDate",
)
PATIENT_COLUMNS = PATIENT_INDEX_HEADER  # as `roster sync-patients` writes it
# Patients' surnames: common ones, so no ordinary patient's surname is rare in the index.
PATIENT_SURNAMES = (
    *catalog.LAST_NAMES,
    "robinson", "wright", "thomas", "roberts", "evans", "walsh", "murphy", "kelly", "ryan",
    "obrien", "byrne", "singh", "khan", "ali", "ahmed", "begum", "lee", "chen", "wang", "li",
    "garcia", "rodriguez", "martinez", "lopez", "gonzalez", "perez", "sanchez", "rossi",
    "muller", "schmidt", "novak", "silva", "santos", "costa", "cohen", "levy", "adams",
)  # fmt: skip
# Staff live on these streets and patients on the others, so only the injected neighbour
# shares a street and postcode block with a member of staff.
STAFF_STREETS = ("Beacon", "Marlborough", "Commonwealth", "Newbury", "Dartmouth", "Clarendon")
PATIENT_STREETS = (
    "Elm", "Maple", "Oak", "Cedar", "Willow", "Harbor", "Summit", "Prospect", "Chestnut",
    "Linden", "Walnut", "Spruce", "Laurel", "Highland", "Pleasant", "Union", "Church", "Mill",
)  # fmt: skip
SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Court", "Drive")
RARE_SURNAME = "Przybyszewska"
SCENARIO_GAP = timedelta(minutes=31)
DEPARTMENTS = ("Cardiology", "Emergency", "Oncology", "Radiology", "Pharmacy", "Surgery")


@dataclass(slots=True)
class Member:
    actor: Actor
    employee_id: str
    surname: str
    address: str
    postcode: str
    department: str
    status: str = "active"
    terminated: str = ""

    def row(self) -> list[str]:
        upn = self.actor.upn or ""
        return [
            self.actor.oid,
            upn,
            self.employee_id,
            self.surname,
            self.address,
            self.postcode,
            self.department,
            self.status,
            self.terminated,
        ]


@dataclass(slots=True)
class Chart:
    service: FhirService
    patient_id: str
    surname: str
    address: str
    postcode: str
    employee_id: str = ""
    restricted: bool = False
    care_team: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        return [
            self.service.resource_id,
            self.patient_id,
            f"MRN{abs(hash_id(self.patient_id)) % 10**8:08d}",
            self.surname,
            self.address,
            self.postcode,
            self.employee_id,
            "true" if self.restricted else "false",
            ";".join(self.care_team),
        ]


def hash_id(value: str) -> int:
    # Stable across runs (str hash is salted per process): a digit sum is enough for an MRN.
    out = 0
    for ch in value:
        out = (out * 131 + ord(ch)) % (2**61 - 1)
    return out


@dataclass(slots=True)
class PrivacyScenario:
    records: list[Emitted]
    incidents: list[Incident]
    lookalikes: list[Lookalike]
    roster: list[Member]
    charts: list[Chart]
    allow_applications: list[str]

    @staticmethod
    def files(out_dir: Path) -> list[Path]:
        return [out_dir / ROSTER_FILE, out_dir / PATIENTS_FILE]

    def write(self, out_dir: Path) -> dict[str, object]:
        """The two input files beside the logs; what the ground truth says of them."""
        _write_csv(out_dir / ROSTER_FILE, ROSTER_COLUMNS, (m.row() for m in self.roster))
        _write_csv(out_dir / PATIENTS_FILE, PATIENT_COLUMNS, (c.row() for c in self.charts))
        return {
            "roster": ROSTER_FILE,
            "patients": PATIENTS_FILE,
            "allow_applications": self.allow_applications,
            "roster_rows": len(self.roster),
            "patient_rows": len(self.charts),
        }


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    # mtime 0: the same scenario gives the same bytes.
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


class _Builder:
    def __init__(self, pop: Population, plan: ScenarioPlan, rng: random.Random) -> None:
        self.pop = pop
        self.plan = plan
        self.rng = rng
        self.svc = pop.fhir[0]
        self.records: list[Emitted] = []
        self.incidents: list[Incident] = []
        self.lookalikes: list[Lookalike] = []
        self.members: list[Member] = []
        self.charts: list[Chart] = []
        self.house = 10
        # Two hours into the window, and every access within one UTC day (one alert a day):
        # the scenarios' ten hours must not cross midnight.
        first = plan.start.astimezone(UTC) + timedelta(hours=2)
        if (first + timedelta(hours=10)).date() != first.date():
            first = datetime.combine(first.date() + timedelta(days=1), time(1), UTC)
        self.clock = first
        self.day = datetime.combine(first.date(), time(0), UTC)

    def at(self) -> datetime:
        """The next access of the scenario: a couple of minutes on (none of this is a burst)."""
        self.clock += timedelta(minutes=2, seconds=self.rng.randint(0, 50))
        return self.clock

    def done(self) -> None:
        """The scenario is over: the next starts 31 minutes on, so the scenarios of one rule
        never overlap and each is judged on its own."""
        self.clock += SCENARIO_GAP

    def street_address(self, streets: tuple[str, ...]) -> tuple[str, str]:
        self.house += self.rng.randint(1, 7)
        street = f"{self.rng.choice(streets)} {self.rng.choice(SUFFIXES)}"
        return f"{self.house} {street}", f"02{self.rng.randint(100, 999)}"

    def member(self, actor: Actor, surname: str | None = None) -> Member:
        last = surname or (actor.upn or actor.name).split("@")[0].split(".")[-1].title()
        address, postcode = self.street_address(STAFF_STREETS)
        m = Member(
            actor=actor,
            employee_id=f"E{100_000 + len(self.members)}",
            surname=last,
            address=address,
            postcode=postcode,
            department=self.rng.choice(DEPARTMENTS),
        )
        self.members.append(m)
        return m

    def new_actor(self, first: str, last: str) -> Actor:
        template = self.pop.clinicians[0]
        return replace(
            template,
            name=f"{first.title()} {last.title()}",
            oid=new_uuid(self.rng),
            ip=private_ip(self.rng, "10.40"),
            upn=f"{first}.{last.lower()}@{DOMAIN}",
            panel=(),
            is_admin=False,
        )

    def chart(self, **kw: object) -> Chart:
        address, postcode = self.street_address(PATIENT_STREETS)
        values: dict[str, object] = {
            "service": self.svc,
            "patient_id": new_uuid(self.rng),
            "surname": self.rng.choice(PATIENT_SURNAMES).title(),
            "address": address,
            "postcode": postcode,
            **kw,
        }
        c = Chart(**values)  # type: ignore[arg-type]
        self.charts.append(c)
        return c

    def open(self, actor: Actor, chart: Chart, at: datetime | None = None) -> list[Emitted]:
        """Opening the chart: the Patient read and a look at its observations."""
        t = at or self.at()
        out = patient_read(self.svc, actor, t, chart.patient_id, status=200, rng=self.rng)
        self.records += out
        return out

    def incident(
        self, rule_id: str, actor: Actor | None, records: list[Emitted], text: str
    ) -> None:
        first = min(e.at for e in records).replace(microsecond=0)
        last = max(e.at for e in records).replace(microsecond=0) + timedelta(seconds=1)
        self.incidents.append(
            Incident(
                rule_id=rule_id,
                description=text,
                actor_user_id=actor.oid if actor else None,
                actor_app_id=None,
                src_ip=None,
                target_resource_id=self.svc.resource_id.lower(),
                start=first,
                end=last,
            )
        )
        self.done()

    def lookalike(
        self, kind: str, rule_id: str, actor: Actor | None, records: list[Emitted], text: str
    ) -> None:
        first = min(e.at for e in records).replace(microsecond=0)
        last = max(e.at for e in records).replace(microsecond=0) + timedelta(seconds=1)
        self.lookalikes.append(
            Lookalike(
                kind=kind,
                resembles_rule_id=rule_id,
                description=text,
                actor_user_id=actor.oid if actor else None,
                actor_app_id=actor.app_id if actor and actor.kind != "user" else None,
                src_ip=None,
                target_resource_id=self.svc.resource_id.lower(),
                start=first,
                end=last,
            )
        )
        self.done()


def privacy_scenario(pop: Population, plan: ScenarioPlan, seed: int) -> PrivacyScenario:
    rng = random.Random(f"phiwatch-samplegen/{seed}/privacy")  # noqa: S311 - test data
    b = _Builder(pop, plan, rng)
    members = {c.oid: b.member(c) for c in pop.clinicians}
    _population_charts(b, rng)
    _relationships(b, members)
    _vip_and_leavers(b, members)
    _curious(b)
    _pad_index(b)
    integrations = sorted(
        p.app_id for p in pop.principals if "fhir-search" in p.duties and p.kind == "sp"
    )
    return PrivacyScenario(b.records, b.incidents, b.lookalikes, b.members, b.charts, integrations)


def _population_charts(b: _Builder, rng: random.Random) -> None:
    teams: dict[str, list[str]] = {}
    for clinician in b.pop.clinicians:
        for pid in clinician.panel:
            teams.setdefault(pid, []).append(clinician.oid)
    for pid in b.pop.patients:
        surname = rng.choice(PATIENT_SURNAMES).title()
        address, postcode = b.street_address(PATIENT_STREETS)
        for svc in b.pop.fhir:
            b.charts.append(
                Chart(svc, pid, surname, address, postcode, care_team=teams.get(pid, []))
            )


def _relationships(b: _Builder, members: dict[str, Member]) -> None:
    staff = b.pop.clinicians
    # Self: the patient's employee id is the nurse's own.
    own = members[staff[10].oid]
    c = b.chart(
        surname=own.surname,
        address=own.address,
        postcode=own.postcode,
        employee_id=own.employee_id,
        care_team=[staff[11].oid],
    )
    b.incident(
        "self-record-access",
        own.actor,
        b.open(own.actor, c),
        "A nurse opens her own chart in the EHR: the patient's employee id is hers.",
    )
    # Family: same surname, same household (the index spells the address its own way).
    relative = members[staff[12].oid]
    number, street = relative.address.split(" ", 1)
    c = b.chart(
        surname=relative.surname.upper(),
        address=f"{number} {street.replace('Street', 'St').replace('Avenue', 'Ave')}, Apt 2",
        postcode=relative.postcode,
        care_team=[staff[13].oid],
    )
    b.incident(
        "family-record-access",
        relative.actor,
        b.open(relative.actor, c),
        "A clinician opens the chart of a relative: same surname, same household (the index "
        "abbreviates the street and adds a unit). High.",
    )
    # Family by a rare surname alone: a member of staff who appears only here.
    rare_actor = b.new_actor("ines", RARE_SURNAME)
    rare = b.member(rare_actor, RARE_SURNAME)
    c = b.chart(surname=RARE_SURNAME, care_team=[staff[13].oid])
    b.incident(
        "family-record-access",
        rare_actor,
        b.open(rare_actor, c),
        "A clinician opens the chart of a patient with her surname, held by one patient in "
        "12,000 (rare), at another address. Medium.",
    )
    assert rare.surname == RARE_SURNAME
    # Coworker: the patient is another employee.
    colleague = members[staff[14].oid]
    reader = members[staff[15].oid]
    c = b.chart(
        surname=colleague.surname,
        address=colleague.address,
        postcode=colleague.postcode,
        employee_id=colleague.employee_id,
        care_team=[staff[16].oid],
    )
    b.incident(
        "coworker-record-access",
        reader.actor,
        b.open(reader.actor, c),
        "A clinician opens a colleague's chart; they are not on the colleague's care team.",
    )
    # Look-alike: a care-team member opens a colleague's chart.
    carer = members[staff[17].oid]
    c = b.chart(
        surname=colleague.surname,
        address=colleague.address,
        postcode=colleague.postcode,
        employee_id=colleague.employee_id,
        care_team=[carer.actor.oid],
    )
    b.lookalike(
        "care-team-colleague",
        "coworker-record-access",
        carer.actor,
        b.open(carer.actor, c),
        "A colleague's chart opened by a member of their care team: explained.",
    )
    # Neighbour: same street and postcode, another house.
    neighbour = members[staff[18].oid]
    number, street = neighbour.address.split(" ", 1)
    c = b.chart(
        address=f"{int(number) + 2} {street}",
        postcode=neighbour.postcode,
        care_team=[staff[19].oid],
    )
    b.incident(
        "neighbour-record-access",
        neighbour.actor,
        b.open(neighbour.actor, c),
        "A clinician opens the chart of a patient two doors down the same street.",
    )
    # Look-alike: a common surname shared, at another address.
    smith = members[staff[20].oid]
    c = b.chart(surname=smith.surname, care_team=[staff[21].oid])
    b.lookalike(
        "common-surname",
        "family-record-access",
        smith.actor,
        b.open(smith.actor, c),
        "A clinician opens the chart of a patient who shares a common surname and lives "
        "elsewhere: no family relationship.",
    )


def _vip_and_leavers(b: _Builder, members: dict[str, Member]) -> None:
    staff = b.pop.clinicians
    vip = b.chart(restricted=True, care_team=[staff[22].oid, staff[23].oid])
    snoop = members[staff[24].oid]
    b.incident(
        "vip-record-access",
        snoop.actor,
        b.open(snoop.actor, vip),
        "A clinician off the care team opens a restricted (VIP) chart.",
    )
    integration = next(p for p in b.pop.principals if "fhir-search" in p.duties)
    b.lookalike(
        "allow-listed-integration",
        "vip-record-access",
        integration,
        b.open(integration, vip),
        "The EHR integration (an allow-listed application) reads the restricted chart.",
    )
    carer = members[staff[22].oid]
    b.lookalike(
        "care-team-vip",
        "vip-record-access",
        carer.actor,
        b.open(carer.actor, vip),
        "A member of the restricted patient's care team opens the chart.",
    )
    # A leaver whose token still works: terminated the day before.
    leaver = b.member(b.new_actor("oliver", "brennan"))
    leaver.status = "terminated"
    leaver.terminated = (b.day - timedelta(days=1)).date().isoformat()
    opened: list[Emitted] = []
    for _ in range(3):
        opened += b.open(leaver.actor, b.chart(care_team=[leaver.actor.oid]))
    b.incident(
        "terminated-user-access",
        leaver.actor,
        opened,
        "A clinician terminated the day before opens three charts (on their old care teams): "
        "one alert for the day.",
    )
    # Look-alike: HR marked a leaver terminated ahead of the date; until then they work here.
    early = b.member(b.new_actor("maya", "lindqvist"))
    early.status = "terminated"
    early.terminated = (b.day + timedelta(days=14)).date().isoformat()
    b.lookalike(
        "termination-ahead",
        "terminated-user-access",
        early.actor,
        b.open(early.actor, b.chart(care_team=[early.actor.oid])),
        "A leaver whose termination date is two weeks away opens a chart on their care team.",
    )


def _curious(b: _Builder) -> None:
    staff = b.pop.clinicians
    # Ten colleagues off the care team open one chart in an afternoon (a colleague's
    # accident in the news); none of them is related to the patient.
    news = b.chart(care_team=[staff[30].oid])
    curious: list[Emitted] = []
    for reader in staff[31:41]:
        curious += b.open(reader, news)
    b.incident(
        "curious-access",
        None,
        curious,
        "Ten clinicians off the care team open one patient's chart in an afternoon; the chart "
        "is new, so its usual is one viewer a day.",
    )
    nine = b.chart(care_team=[staff[30].oid])
    seen: list[Emitted] = []
    for reader in staff[41:50]:
        seen += b.open(reader, nine)
    b.lookalike(
        "nine-viewers",
        "curious-access",
        None,
        seen,
        "Nine clinicians off the care team open one chart: one short of the threshold.",
    )
    ward = staff[50:60]
    round_chart = b.chart(care_team=[c.oid for c in ward])
    rounds: list[Emitted] = []
    for reader in ward:
        rounds += b.open(reader, round_chart)
    b.lookalike(
        "ward-round",
        "curious-access",
        None,
        rounds,
        "Ten members of a patient's care team open the chart on a ward round: explained.",
    )


def _pad_index(b: _Builder) -> None:
    """Patients nobody opens today: the index is the hospital's, not the day's."""
    while len(b.charts) < INDEX_ROWS:
        b.chart()
