"""phiwatch benchmark suite: `python -m bench` (or `make bench`).

Generates its corpus deterministically with `phiwatch.samplegen`, pins itself to one core and
measures decode baseline, pipeline stages, memory, batch latency, Sentinel ingest bytes and
detection latency. Results go to `bench/results/latest.json` and a table on the terminal.
"""
