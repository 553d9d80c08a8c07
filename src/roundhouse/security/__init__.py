"""Pure security checks (no I/O): origins, hosts, redaction."""
