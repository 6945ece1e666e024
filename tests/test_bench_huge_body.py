"""bench/huge_body.py produces its measure (the figure itself is the bench's, not a test's)."""

from __future__ import annotations

from pathlib import Path

from bench import huge_body


def test_huge_body_measure_reports_one_body_through_the_full_pipeline(tmp_path: Path):
    result = huge_body.measure(1500, scratch=tmp_path)
    assert result["records"] == result["requested_records"] == 1500
    assert result["accounted"]
    assert result["body_bytes"] > 1500 * 500
    assert result["peak_rss_mb"] >= result["rss_before_batch_mb"] > 0
    assert result["seconds"] > 0
    assert list(tmp_path.iterdir()) == []  # its scratch is gone
