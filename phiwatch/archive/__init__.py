"""The audit archive: every raw record, dead-letter, event and alert, written create-only."""

from phiwatch.archive.local import ArchiveIntegrityError, LocalArchive, object_name

__all__ = ["ArchiveIntegrityError", "LocalArchive", "object_name"]
