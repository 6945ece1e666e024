"""The audit archive: every raw record, dead-letter, event and alert, written create-only
and chained by signed manifests."""

from phiwatch.archive.archive import Archive, ArchiveIntegrityError, object_name
from phiwatch.archive.store import LocalStore, ObjectStore

__all__ = ["Archive", "ArchiveIntegrityError", "LocalStore", "ObjectStore", "object_name"]
