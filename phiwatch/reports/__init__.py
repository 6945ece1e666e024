"""Reports read back from the audit archive for privacy officers and auditors (issue #17):
who accessed one patient's record, what one actor did (`patient`, `actor`), and the HIPAA
audit-readiness page (`hipaa`, rendered by `hipaa_html`). No Azure Functions import; the CLI
is phiwatch/commands/report.py.
"""
