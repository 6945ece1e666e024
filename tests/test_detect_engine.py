"""Engine behaviour shared by all detections: watermark, lateness, bounded state."""

from __future__ import annotations

import detections
from phiwatch.detect.engine import DetectionEngine
from tests.harness import run
from tests.records import fhir


def test_one_record_with_a_wrong_clock_does_not_make_honest_records_late(tmp_path):
    burst = [fhir(i * 3, path=f"Patient/p{i}") for i in range(60)]
    wrong_clock = fhir(5 * 3600, path="Patient/from-the-future", oid="99999999-0000-0000-0000-0")
    records = burst[:10] + [wrong_clock] + burst[10:]
    sink = run(records, tmp_path, per_body=1, bodies_per_batch=1)
    assert len(sink.alerts) == 1
    assert (next(iter(sink.alerts.values()))).distinct_patient_count == 60


def test_a_real_jump_in_time_makes_stragglers_late(tmp_path):
    morning = [fhir(3 * 3600 + i, path=f"Patient/m{i}") for i in range(40)]
    straggler = [fhir(60, path="Patient/s1")]
    pipeline_sink = run(morning + straggler, tmp_path, per_body=1, bodies_per_batch=1)
    assert len(pipeline_sink.events) == 41  # still an event, still archived


def test_late_events_are_counted_by_the_engine(tmp_path):
    from tests.harness import batches_of, make_pipeline

    pipeline, _ = make_pipeline(tmp_path)
    records = [fhir(3 * 3600 + i, path=f"Patient/m{i}") for i in range(40)]
    records += [fhir(60, path="Patient/s1"), fhir(3 * 3600 - 600, path="Patient/in-time")]
    for batch in batches_of(records, per_body=1, bodies_per_batch=1):
        pipeline.process(batch)
    assert pipeline.engine.late == 1


def test_detection_state_stays_bounded_as_the_stream_moves_on(tmp_path):
    from tests.harness import batches_of, make_pipeline

    pipeline, _ = make_pipeline(tmp_path)
    # 2,000 actors, each reading once, spread over 10 hours: old actors must be let go.
    records = [
        fhir(i * 18, path=f"Patient/x{i}", oid=f"00000000-0000-0000-0000-{i:012d}", upn=None)
        for i in range(2000)
    ]
    # curious-access keeps each patient's daily viewer counts for 8 days (its baseline):
    # measured apart, against what it must hold.
    (curious,) = [d for d in pipeline.engine.detections if d.rule_id == "curious-access"]
    # Every actor rule's baseline (the actor's usual daily volume, 14 days, at most
    # MAX_ACTORS actors per rule) is bounded on its own, not in state_size().
    from phiwatch.detect.kinds.baseline import MAX_ACTORS, NAME

    def baselines() -> list[int]:
        return [len(d.state()[NAME]) for d in pipeline.engine.detections if NAME in d.state()]  # type: ignore[arg-type]

    sizes, remembered = [], []
    for batch in batches_of(records, per_body=20, bodies_per_batch=5):
        pipeline.process(batch)
        sizes.append(pipeline.engine.state_size() - curious.state_size())
        remembered.append(curious.state_size())
    # Window 10 min + lateness 15 min at one actor per 18 s: about 84 actors in state.
    assert max(sizes[10:]) < 150
    assert sizes[-1] < 150
    # One day of 2,000 actors: each rule that read them remembers each once, within its bound.
    assert baselines() and max(baselines()) <= min(2000, MAX_ACTORS)
    # One chart's viewers and daily count per patient read today, and the EventUids still
    # within the lateness (about 50): nothing per event beyond that.
    assert remembered[-1] <= 2 * 2000 + 150


def test_registry_refuses_a_detection_whose_grouping_no_route_serves(monkeypatch):
    import pytest

    from detections.mass_record_access import MassRecordAccess

    monkeypatch.setattr(MassRecordAccess, "group_by", "session")
    with pytest.raises(detections.RegistryError, match="is not a grouping phi-events routes by"):
        detections.load_detections()


def test_engine_with_no_events_is_harmless():
    engine = DetectionEngine(detections.load_detections(), 900)
    engine.advance()
    engine.finish()
    assert engine.changed_alerts() == [] and engine.state_size() == 0


def _engine_alerts(events, passes):
    engine = DetectionEngine(detections.load_detections(), 900)
    for _ in range(passes):
        for event in events:
            engine.process(event, None)
        engine.advance()
    return {a.alert_id: a for a in engine.changed_alerts()}


def test_detections_ignore_events_they_already_hold(normalise):
    """A retried batch feeds its events to detection again: counts must not grow."""
    from tests.records import keyvault

    burst = [e for i in range(60) for e in normalise(fhir(i * 3, path=f"Patient/p{i}"))]
    probing = [e for i in range(6) for e in normalise(keyvault(i, status=403, secret=f"s{i}"))]
    once = _engine_alerts(burst + probing, passes=1)
    twice = _engine_alerts(burst + probing, passes=2)
    assert len(once) == 2
    assert {k: (a.event_count, a.distinct_patient_count) for k, a in twice.items()} == {
        k: (a.event_count, a.distinct_patient_count) for k, a in once.items()
    }


def test_a_batch_retried_after_a_late_archive_failure_alerts_as_a_clean_run(tmp_path, monkeypatch):
    """Detection has run when the alerts object fails to write; the host retries the batch."""
    from phiwatch.archive.archive import Archive
    from tests.harness import batches_of, make_pipeline

    records = [fhir(i * 3, path=f"Patient/p{i}") for i in range(60)]
    # Later traffic releases the burst from the reorder buffer within the stream.
    records += [fhir(300 + i * 3, path="metadata", interaction="capabilities") for i in range(80)]
    clean_pipeline, clean = make_pipeline(tmp_path)
    for batch in batches_of(records, per_body=10, bodies_per_batch=2):
        clean_pipeline.process(batch)

    real_put = Archive.put
    failed: list[str] = []

    def put(self, name, lines, **options):
        if name.startswith("alerts/") and not failed:
            failed.append(name)
            raise OSError("archive unavailable")
        return real_put(self, name, lines, **options)

    monkeypatch.setattr(Archive, "put", put)
    pipeline, sink = make_pipeline(tmp_path)
    for batch in batches_of(records, per_body=10, bodies_per_batch=2):
        try:
            pipeline.process(batch)
        except OSError:
            pipeline.process(batch)  # the host's retry
    assert failed, "the alerts write never failed: the test would prove nothing"
    (alert,) = sink.alerts.values()
    (expected,) = clean.alerts.values()
    assert alert == expected
