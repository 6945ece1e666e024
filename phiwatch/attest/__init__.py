"""Continuous attestation of the PHI estate (issue #17): the inventory of PHI resources, the
checks per resource and the coverage per HIPAA control (docs/attestation.md). No Azure
Functions import; the Resource Graph SDK is imported only when a Graph inventory is read."""
