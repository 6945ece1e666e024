"""How long the privacy inputs take to load, and the memory they hold (issue #16).

`python -m bench.privacy_load [--employees 50000] [--patients 2000000]` writes a synthetic
roster and patient index into a temporary directory, then loads both in a subprocess
(`FileDirectorySource.current()`, as the pipeline would) so peak RSS is that load's alone:
the child's VmHWM (bench/memory.py says why not `ru_maxrss`). Prints JSON. Targets: 50,000
employees and 2,000,000 patients in < 60 s and < 500 MB.

The data look like an index: surnames Zipf-distributed over 30,000 names, 8,000 streets in
3,000 postcodes, 5% of patients with a care team from 2,000 teams, 3% of them staff, 1 in 20
addresses with a unit, 1 in 10 postcodes as ZIP+4.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.memory import peak_rss_mb, rss_mb
from phiwatch.logs import configure_logging
from phiwatch.privacy.files import FileDirectorySource
from phiwatch.pseudonym import Pseudonymizer

FHIR = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.HealthcareApis/services/fhir"
TARGET_SECONDS = 60.0
TARGET_MB = 500.0


def _oid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(directory: Path, employees: int, patients: int, seed: int = 16) -> tuple[Path, Path]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, seeded to repeat
    surnames = [f"Name{i:05d}" for i in range(30_000)]
    cum: list[float] = []
    for i in range(len(surnames)):  # Zipf: the i-th name 1/(i+1) as likely as the first
        cum.append((cum[-1] if cum else 0.0) + 1 / (i + 1))
    streets = [f"{rng.choice(['Oak', 'Elm', 'Main', 'Hill'])} {i} Street" for i in range(8_000)]
    postcodes = [f"{10000 + i:05d}" for i in range(3_000)]
    street_code = [rng.choice(postcodes) for _ in streets]
    oids = [_oid(rng) for _ in range(employees)]
    teams = [";".join(rng.sample(oids, 3)) for _ in range(2_000)]

    def address() -> tuple[str, str]:
        s = rng.randrange(len(streets))
        line = f"{rng.randint(1, 999)} {streets[s]}"
        if rng.random() < 0.05:
            line += f" Apt {rng.randint(1, 40)}"
        code = street_code[s] + (f"-{rng.randint(0, 9999):04d}" if rng.random() < 0.1 else "")
        return line, code

    roster = directory / "roster.csv"
    with roster.open("w") as fh:
        fh.write("ObjectId,UserPrincipalName,EmployeeId,Surname,Address,Postcode,Department,")
        fh.write("Status,TerminationDate\n")
        for i, oid in enumerate(oids):
            line, code = address()
            status, ended = ("terminated", "2026-06-30") if i % 50 == 0 else ("active", "")
            name = rng.choices(surnames, cum_weights=cum)[0]
            fh.write(f"{oid},u{i}@contoso.org,{i:06d},{name},{line},{code},Ward {i % 40},")
            fh.write(f"{status},{ended}\n")
    index = directory / "patients.csv"
    names = rng.choices(surnames, cum_weights=cum, k=patients)
    with index.open("w") as fh:
        fh.write("FhirService,PatientId,Mrn,Surname,Address,Postcode,EmployeeId,Restricted,")
        fh.write("CareTeamObjectIds\n")
        for i in range(patients):
            line, code = address()
            employee = f"{rng.randrange(employees):06d}" if rng.random() < 0.03 else ""
            team = rng.choice(teams) if rng.random() < 0.05 else ""
            restricted = "yes" if rng.random() < 0.001 else "no"
            fh.write(f"{FHIR},{_oid(rng)},MRN{i:08d},{names[i]},{line},{code},{employee},")
            fh.write(f"{restricted},{team}\n")
    return roster, index


def load(roster: Path, patients: Path) -> dict[str, Any]:
    """The child: one load, measured."""
    before = rss_mb()
    started = time.perf_counter()
    cpu = time.process_time()
    source = FileDirectorySource(Pseudonymizer(b"\x16" * 32), roster=roster, patients=patients)
    found = source.current()
    seconds = time.perf_counter() - started
    assert found is not None and found.has_roster and found.has_patients
    reports = {r.source: (r.rows, r.loaded, len(r.errors)) for r in source.reports}
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(rss_mb(), 1),
        "rows_loaded_errors": reports,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.privacy_load")
    parser.add_argument("--employees", type=int, default=50_000)
    parser.add_argument("--patients", type=int, default=2_000_000)
    parser.add_argument("--child", nargs=2, metavar=("ROSTER", "PATIENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        # The load's log lines (counts only) go to stderr: stdout is the result.
        configure_logging("INFO", stream=sys.stderr)
        print(json.dumps(load(Path(args.child[0]), Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="phiwatch-privacy-") as tmp:
        started = time.perf_counter()
        roster, patients = generate(Path(tmp), args.employees, args.patients)
        generated = time.perf_counter() - started
        child = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.privacy_load", "--child", str(roster), str(patients)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout)
        result |= {
            "employees": args.employees,
            "patients": args.patients,
            "generate_seconds": round(generated, 1),
            "patients_mb_on_disk": round(patients.stat().st_size / 2**20, 1),
            "targets": {"seconds": TARGET_SECONDS, "peak_rss_mb": TARGET_MB},
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
