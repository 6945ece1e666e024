"""The audit archive: every raw record, dead-letter, event and alert, written create-only
and chained by signed manifests (archive.py; names, manifests, signer, stores, verify)."""
