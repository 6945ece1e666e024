"""Reports read back from the audit archive for privacy officers and auditors (issue #17):
the HIPAA audit-readiness page (`hipaa`, rendered by `hipaa_html`)."""
