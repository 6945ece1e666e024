"""The `phiwatch` command line: one module per command group, `app` the root."""
