"""phiwatch: PHI-access monitoring for Azure diagnostic logs."""

__version__ = "0.1.0"
