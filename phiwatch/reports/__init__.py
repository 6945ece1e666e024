"""Investigation reports over the audit archive (`phiwatch report ...`): who accessed one
patient's record, what one actor did. No Azure Functions import; the CLI is
phiwatch/commands/report.py."""
