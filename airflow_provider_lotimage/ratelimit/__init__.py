"""Client-side rate limiting: one budget per LotImage key, shared within a process, a host or a cluster."""
