"""Deterministic synthetic Azure diagnostic logs (Event Hub bodies) with injected incidents.

``generate(out_dir)`` writes ``logs/diagnostics-YYYY-MM-DDTHH.jsonl.gz`` and ``ground_truth.json``.
"""

from .generator import GenerationReport, generate

__all__ = ["GenerationReport", "generate"]
