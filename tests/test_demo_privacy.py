"""The demo with its privacy inputs, as `make demo` runs it: each privacy incident of the
shipped scenario is raised, and no identifying value of the roster or the patient index
reaches the archive, the outputs or the log lines."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phiwatch.commands.app import app
from phiwatch.logs import configure_logging
from phiwatch.model import Alert
from tests.scenario_inputs import privacy_files

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
PRIVACY_RULES = {
    "self-record-access",
    "family-record-access",
    "coworker-record-access",
    "neighbour-record-access",
    "vip-record-access",
    "terminated-user-access",
    "curious-access",
}
# The columns whose values identify a person (object ids and UPNs are in every record
# already; patient ids are in the FHIR URIs the archive keeps byte for byte).
IDENTIFYING = ("Surname", "Address", "Mrn", "EmployeeId")
# Words as the values' words are compared: letters and digits, lowercase.
TOKEN = re.compile(r"[a-z0-9]+")


def _text(path: Path) -> str:
    data = path.read_bytes()
    # Binary objects too (the hour index's digests): any text in them still reads as text.
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode(
        "utf-8", errors="replace"
    )


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def _identifying_values(files: dict[str, Path]) -> set[tuple[str, ...]]:
    """Each identifying value as its words (lowercase, punctuation dropped)."""
    values: set[tuple[str, ...]] = set()
    for path in files.values():
        for row in csv.DictReader(io.StringIO(_text(path))):
            for column in IDENTIFYING:
                if words := _tokens(row.get(column, "")):
                    values.add(tuple(words))
    return values


class Seen:
    """The words of a text, and its house-number-then-word pairs: enough to find a name,
    an MRN, an employee id or an address ("12 elm ...") in it without a regex of twenty
    thousand alternatives."""

    def __init__(self) -> None:
        self.words: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()

    def add(self, text: str) -> None:
        previous = ""
        for match in TOKEN.finditer(text.lower()):
            word = match.group(0)
            self.words.add(word)
            if previous.isdigit() and word.isalpha():
                self.pairs.add((previous, word))
            previous = word

    def holds(self, value: tuple[str, ...]) -> bool:
        if len(value) >= 2 and value[0].isdigit():  # an address: its number and street
            return (value[0], value[1]) in self.pairs
        return all(word in self.words for word in value)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    truth = json.loads((SAMPLES / "ground_truth.json").read_text(encoding="utf-8"))
    files = privacy_files(SAMPLES, truth)
    out = tmp_path_factory.mktemp("demo") / "out"
    logs = io.StringIO()
    configure_logging("DEBUG", stream=logs)
    args = ["replay", str(SAMPLES / "logs"), "--out", str(out), "--quiet"]
    for rule, values in truth["detection_params"].items():
        for name, value in values.items():
            args += ["--param", f"{rule}.{name}={json.dumps(value)}"]
    args += ["--roster", str(files["roster"]), "--patients", str(files["patients"])]
    for app_id in truth["privacy"]["allow_applications"]:
        args += ["--allow-application", app_id]
    try:
        result = CliRunner().invoke(app, args)
    finally:
        configure_logging("WARNING", stream=io.StringIO())
    assert result.exit_code == 0, result.output
    return out, logs.getvalue() + result.output, truth


def test_each_privacy_incident_raises_its_rule_once(demo: tuple[Path, str, dict]) -> None:
    out, _, truth = demo
    alerts = [
        Alert.model_validate_json(line)
        for line in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    raised = Counter(a.rule_id for a in alerts if a.rule_id in PRIVACY_RULES)
    wanted = Counter(i["rule_id"] for i in truth["incidents"] if i["rule_id"] in PRIVACY_RULES)
    assert set(wanted) == PRIVACY_RULES  # otherwise the check below would hold for nothing
    assert raised == wanted


def test_no_identifying_input_value_leaves_the_inputs(demo: tuple[Path, str, dict]) -> None:
    out, logs, truth = demo
    values = _identifying_values(privacy_files(SAMPLES, truth))
    # A value the Azure records themselves carry (a surname in a UPN) is no leak.
    in_records = Seen()
    for path in sorted((SAMPLES / "logs").glob("*.gz")):
        in_records.add(_text(path))
    private = [v for v in values if not in_records.holds(v)]
    assert len(private) > 10_000  # addresses, MRNs, employee ids, most surnames
    outputs = [p for p in sorted(out.rglob("*")) if p.is_file()]
    assert len(outputs) > 100
    leaks = []
    for name, text in [*((str(p), _text(p)) for p in outputs), ("<logs>", logs)]:
        seen = Seen()
        seen.add(text)
        leaks += [(name, " ".join(v)) for v in private if seen.holds(v)]
    assert leaks == []
