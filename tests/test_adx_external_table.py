"""infra/adx/archive-external-table.kql stays in step with the archive it reads.

(a) each external table's path format names exactly the folders the archive writer uses
(`archive.object_name`), checked on a real archive a replay wrote; (b) the events and alerts
columns are the models' wire names and types (`phiwatch schema`'s source), and every key of
every archived line is a declared column, so nothing in the archive is invisible to ADX; (c) the
connection strings carry an authentication method and no secret; (d) Kusto.Language parses the
commands and analyses the sample query against the table's columns.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phiwatch.archive.archive import object_name
from phiwatch.config import Settings
from phiwatch.hosts.replay import replay
from phiwatch.rules.kql_check import analyze
from phiwatch.schema.tables import TABLES, archive_columns, by_table

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "infra" / "adx" / "archive-external-table.kql"
SAMPLES = ROOT / "samples" / "logs"
# The .NET datetime pattern letters the definition may use, as strftime directives.
_DOTNET = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}
_TABLE = re.compile(
    r"^\.create-or-alter external table (?P<name>\w+) \((?P<columns>.*?)\n\)\n(?P<rest>.*?)\n\n",
    re.MULTILINE | re.DOTALL,
)
# Log Analytics' type names (the schema module's) where ADX spells them otherwise.
_ADX_TYPE = {"boolean": "bool"}
KIND_OF = {"PhiArchiveEvents": "events", "PhiArchiveAlerts": "alerts", "PhiArchiveRaw": "raw"}
MODEL_OF = {"PhiArchiveEvents": "PhiAccessEvents_CL", "PhiArchiveAlerts": "PhiAlerts_CL"}


def _tables() -> dict[str, dict[str, object]]:
    text = DEFINITION.read_text(encoding="utf-8")
    found: dict[str, dict[str, object]] = {}
    for match in _TABLE.finditer(text + "\n\n"):
        columns = [
            tuple(part.strip() for part in line.strip().rstrip(",").split(":"))
            for line in match["columns"].strip().splitlines()
        ]
        rest = match["rest"]
        path = re.search(
            r'pathformat = \("(?P<prefix>[^"]*)" datetime_pattern\("(?P<pattern>[^"]+)", '
            r"(?P<column>\w+)\)\)",
            rest,
        )
        partition = re.search(r"partition by \((?P<column>\w+): datetime\)", rest)
        extension = re.search(r'fileExtension = "(?P<ext>[^"]+)"', rest)
        urls = re.findall(r"h@'([^']+)'", rest)
        assert path and partition and extension and urls, match["name"]
        found[match["name"]] = {
            "columns": columns,
            "prefix": path["prefix"],
            "pattern": path["pattern"],
            "path_column": path["column"],
            "partition": partition["column"],
            "extension": extension["ext"],
            "urls": urls,
            "format": re.search(r"dataformat = (\w+)", rest)[1],  # type: ignore[index]
        }
    return found


def _strftime(pattern: str) -> str:
    out = pattern
    for dotnet, directive in _DOTNET.items():
        out = out.replace(dotnet, directive)
    assert not re.search(
        r"[A-Za-z]", out.replace("%Y", "").replace("%m", "").replace("%d", "").replace("%H", "")
    ), f"unsupported datetime_pattern {pattern!r}"
    return out


def _regex(table: dict[str, object]) -> re.Pattern[str]:
    """The object names the table's path format reads (any batch name below the hour)."""
    folder = str(table["pattern"])
    for dotnet, digits in (
        ("yyyy", r"\d{4}"),
        ("MM", r"\d{2}"),
        ("dd", r"\d{2}"),
        ("HH", r"\d{2}"),
    ):
        folder = folder.replace(dotnet, digits)
    return re.compile(
        re.escape(str(table["prefix"]))
        + folder
        + r"/[^/]+"
        + re.escape(str(table["extension"]))
        + "$"
    )


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, object]]:
    found = _tables()
    assert set(found) == set(KIND_OF), found.keys()
    return found


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real archive: two hours of the shipped samples through the pipeline."""
    out = tmp_path_factory.mktemp("replay")
    files = sorted(SAMPLES.glob("*.jsonl.gz"))[:2]
    replay(files, out, Settings())
    return out / "archive"


def test_each_table_is_partitioned_by_the_archive_hour(tables):
    for name, table in tables.items():
        assert table["partition"] == table["path_column"] == "ArchiveHour", name
        assert table["format"] == "json", name  # JSON Lines; compression from the .gz name
        # A virtual column: read from the path, so it must not also be a data column.
        assert "ArchiveHour" not in {c[0] for c in table["columns"]}, name  # type: ignore[union-attr]


def test_the_path_format_is_the_archive_writers(tables):
    hour = datetime(2026, 1, 5, 7, tzinfo=UTC)
    for name, table in tables.items():
        kind = KIND_OF[name]
        written = object_name(kind, hour, "diagnostics-3-100-200")
        folder = str(table["prefix"]) + hour.strftime(_strftime(str(table["pattern"])))
        assert written.startswith(folder + "/"), (name, written, folder)
        assert written.endswith(str(table["extension"])), (name, written)
        assert _regex(table).match(written), (name, written)
        # Another kind's objects are not read by this table.
        other = object_name("deadletter", hour, "diagnostics-3-100-200")
        assert not _regex(table).match(other), name


def test_every_object_of_a_real_archive_is_read_by_its_table(tables, archive):
    names = [p.relative_to(archive).as_posix() for p in archive.rglob("*.jsonl.gz")]
    for name, table in tables.items():
        kind = KIND_OF[name]
        mine = [n for n in names if n.startswith(f"{kind}/")]
        assert mine, f"the replay archived no {kind}"
        unread = [n for n in mine if not _regex(table).match(n)]
        assert unread == [], (name, unread[:3])


def test_columns_are_the_models_wire_names_and_types(tables):
    for name, table_name in MODEL_OF.items():
        expected = [
            (c["name"], _ADX_TYPE.get(c["type"], c["type"]))
            for c in archive_columns(by_table(table_name))
        ]
        declared = [tuple(c) for c in tables[name]["columns"]]  # type: ignore[union-attr]
        block = ",\n".join(f"    {n}: {t}" for n, t in expected)
        assert declared == expected, (
            f"{name} drifted from the model; its column list in {DEFINITION.name} should be:\n"
            f"{block}"
        )
    assert {spec.table for spec in TABLES} >= set(MODEL_OF.values())


def test_every_archived_key_is_a_declared_column(tables, archive):
    for name, table in tables.items():
        declared = {c[0] for c in table["columns"]}  # type: ignore[union-attr]
        seen: set[str] = set()
        for path in archive.glob(f"{KIND_OF[name]}/*/*/*/*/*.jsonl.gz"):
            for line in gzip.decompress(path.read_bytes()).splitlines():
                seen |= set(json.loads(line))
        assert seen, name
        assert seen <= declared, (name, sorted(seen - declared))


def test_connection_strings_authenticate_without_a_secret(tables):
    for name, table in tables.items():
        for url in table["urls"]:  # type: ignore[union-attr]
            assert url.startswith("https://<account>.blob.core.windows.net/phiwatch-archive;")
            assert url.endswith((";managed_identity=system", ";impersonate")), url
            assert "sig=" not in url and "AccountKey" not in url, name


def test_the_sample_query_filters_on_the_partition_first():
    text = DEFINITION.read_text(encoding="utf-8")
    sample = text[text.index('external_table("PhiArchiveEvents")') :]
    steps = [line for line in sample.splitlines() if line.startswith("| where")]
    assert "ArchiveHour between" in steps[0]
    assert any("PatientRef == patient" in s for s in steps)


def _commands_and_sample() -> tuple[dict[str, str], str]:
    text = DEFINITION.read_text(encoding="utf-8")
    commands = {
        match["name"]: text[match.start() : match.end()].strip()
        for match in _TABLE.finditer(text + "\n\n")
    }
    return commands, text[text.index('let patient = "<PatientRef>";') :]


def test_the_commands_and_the_sample_query_parse_with_kusto_language(tables):
    """Kusto.Language (as `rules lint` runs it) parses the control commands; the sample query is
    analysed against exactly the external table's columns (a datatable in its place)."""
    commands, sample = _commands_and_sample()
    events = tables["PhiArchiveEvents"]
    columns = ", ".join(f"{n}: {t}" for n, t in events["columns"])  # type: ignore[union-attr]
    as_table = f"datatable({columns}, ArchiveHour: datetime) []"
    queries = {
        **commands,
        "sample": sample.replace('external_table("PhiArchiveEvents")', as_table),
        "broken-command": commands["PhiArchiveRaw"].replace("kind = storage", "kind = stor age"),
        "broken-sample": sample.replace("PatientRef ==", "PatientRefs ==").replace(
            'external_table("PhiArchiveEvents")', as_table
        ),
    }
    analyses = analyze(queries)
    found = {
        name: [f"{d.code} {d.message}" for d in a.diagnostics if d.severity in ("Error", "Warning")]
        for name, a in analyses.items()
    }
    assert found.pop("broken-command") and found.pop("broken-sample")
    assert {name: problems for name, problems in found.items() if problems} == {}
