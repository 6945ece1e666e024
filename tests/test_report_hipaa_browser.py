"""The HIPAA report in a real browser: Debian's Chromium, headless (installed by `make
chromium`, which `make test` runs first). On the report of a replayed generated scenario:
the page renders with every section, its charts are on screen (their colours fill
a visible area of the screenshot, which is not blank) and the browser logs no console
message at all: the page has no script, so any message is an error (a request the
Content-Security-Policy blocked, a resource that failed).

Console messages are read from Chromium's own log (`--enable-logging=stderr`, one
`CONSOLE` line per message); a control page with an error proves the check sees them. The
screenshot is decoded with zlib alone (8-bit RGB/RGBA PNG, the five filter types)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phiwatch.archive.signer import load_public_key, local_public_key
from phiwatch.archive.store import LocalStore
from phiwatch.attest.inventory import Inventory, PhiResource
from phiwatch.hosts.replay import replay
from phiwatch.reports.hipaa import HipaaReport, build_report
from phiwatch.reports.hipaa_html import SECTIONS, render
from phiwatch.samplegen import generate
from tests.conftest import TEST_KEY_HEX, TEST_SIGNING_SEED_HEX
from tests.scenario_inputs import privacy_files, scenario_settings

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make chromium)"
)
WIDTH, HEIGHT = 1100, 4200
# The charts' fills (hipaa_html.py): volume bars, logging spans, silences, alerts, dead-letters.
CHART_COLOURS = {
    "chart-volume": (0x3B, 0x7D, 0xD8),
    "chart-coverage": (0x3A, 0xA6, 0x6A),
    "silences": (0xD6, 0x45, 0x45),
    "chart-alerts": (0x82, 0x56, 0xC9),
    "chart-deadletters": (0xD0, 0x8A, 0x1E),
    "chart-attestation": (0x2B, 0x8A, 0x9E),
}
MISSING = (
    "/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.KeyVault/vaults/kv-never"
)


ARCHIVE_ACCOUNT = (
    "/subscriptions/00000000-0000-4000-8000-000000000000/resourcegroups/rg/providers/"
    "microsoft.storage/storageaccounts/starchive"
)


def estate_of(report: HipaaReport) -> Inventory:
    """An inventory over the scenario's resources: a vault and a FHIR service that log (one
    closed, one open without a customer key), a vault that never logs and states nothing,
    and an archive account meeting every check but diagnostics: every control has failing
    resources or passes, so the attestation chart shows both colours."""
    logged = sorted({s.resource for s in report.sources})
    vault = next(r for r in logged if "/microsoft.keyvault/vaults/" in r)
    fhir = next(r for r in logged if "/microsoft.healthcareapis/" in r)
    return Inventory(
        (
            PhiResource(vault, "keyvault", public_network_disabled=True, private_endpoint=True),
            PhiResource(fhir, "fhir", tier="restricted", public_network_disabled=False),
            PhiResource(MISSING.lower(), "keyvault", display_name="kv-never"),
            PhiResource(
                ARCHIVE_ACCOUNT,
                "storage",
                archive=True,
                public_network_disabled=True,
                customer_managed_key=True,
                private_endpoint=True,
                immutability_locked=True,
            ),
        ),
        "file:estate.csv",
    )


def chromium(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",  # the CI runs as root
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# --- PNG, with the standard library ------------------------------------------------------


@dataclass
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixels(self) -> Iterator[tuple[int, int, int]]:
        step = self.channels
        for row in self.rows:
            for x in range(0, len(row), step):
                yield row[x], row[x + 1], row[x + 2]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat = 8, b""
    width = height = depth = colour = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "unexpected PNG kind"
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up_left = previous[i - channels] if i >= channels else 0
                line[i] = (line[i] + _paeth(left, previous[i], up_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return Image(width, height, channels, rows)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(p - c) <= 8 for p, c in zip(pixel, colour, strict=True))


# --- the scenario's report -----------------------------------------------------------------


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hipaa-browser")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PHIWATCH_HOME", str(tmp / "home"))
        env.setenv("PHIWATCH_ARCHIVE_SIGNING_KEY", TEST_SIGNING_SEED_HEX)
        env.setenv("PHIWATCH_PSEUDONYM_KEY", TEST_KEY_HEX)
        generate(tmp / "gen", seed=11, records=3000)
        truth = json.loads((tmp / "gen" / "ground_truth.json").read_text())
        settings = scenario_settings(truth)
        summary = replay(
            [tmp / "gen" / "logs"], tmp / "out", settings, **privacy_files(tmp / "gen", truth)
        )
        assert summary.problems == []
        local = local_public_key(settings)
        assert local is not None
        store = LocalStore(tmp / "out" / "archive")
        trusted = {local[0]: load_public_key(local[1])}
        first = build_report(store, trusted=trusted, settings=settings)
        report = build_report(store, trusted=trusted, settings=settings, inventory=estate_of(first))
    assert report.integrity.verified and report.alerts and report.dead_letters
    path = tmp / "hipaa.html"
    path.write_text(render(report), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dom(page: Path) -> tuple[str, list[str]]:
    run = chromium(page.parent, page.as_uri(), "--dump-dom")
    return run.stdout, console_messages(run.stderr)


@pytest.fixture(scope="module")
def screenshot(page: Path) -> Image:
    shot = page.parent / "hipaa.png"
    run = chromium(page.parent, page.as_uri(), f"--screenshot={shot}")
    assert console_messages(run.stderr) == []
    return decode_png(shot.read_bytes())


def test_the_page_renders_every_section(dom):
    html, _ = dom
    assert "HIPAA audit-readiness report" in html
    for sid, title in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
        assert title in html
    for citation in ("164.312(b)", "164.312(c)(1)", "164.312(c)(2)", "164.308(a)(1)(ii)(D)",
                     "164.308(a)(5)(ii)(C)", "164.316(b)(2)"):  # fmt: skip
        assert f"<b>{citation}</b>" in html
    assert "kv-never" in html and "nothing sent" in html
    assert "<b>164.312(e)(1)</b>" in html and "fails public-network-off" in html
    assert "@" not in html  # no user (the alerts' titles name them; the page shows counts)


def test_the_charts_are_in_the_dom_with_a_size(dom):
    html, _ = dom
    charts = ("chart-volume", "chart-coverage", "chart-alerts", "chart-deadletters")
    for chart in (*charts, "chart-attestation"):
        assert f'<svg class="chart" id="{chart}"' in html, chart
    assert html.count("<rect") > 50


def test_no_console_message(dom):
    _, messages = dom
    assert messages == []


def test_the_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
        "<img src='https://example.invalid/x.png'><script>console.error('zqmarker')</script>"
        "</body></html>"
    )
    messages = console_messages(chromium(tmp_path, bad.as_uri(), "--dump-dom").stderr)
    assert any("zqmarker" in m for m in messages)
    assert any("Content Security Policy" in m for m in messages)  # the blocked request


def test_the_screenshot_is_not_blank_and_shows_every_chart(screenshot):
    assert (screenshot.width, screenshot.height) == (WIDTH, HEIGHT)
    counts = Counter(screenshot.pixels())
    white = counts.get((255, 255, 255), 0)
    assert len(counts) > 100, "hardly any colours: a blank or failed render"
    assert white < 0.95 * WIDTH * HEIGHT
    for chart, colour in CHART_COLOURS.items():
        area = sum(n for pixel, n in counts.items() if near(pixel, colour))
        assert area > 500, f"{chart}: {area} pixels of its colour on screen"
