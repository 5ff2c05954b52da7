"""Benchmarks of the provider against the emulator at LotImage's real limits (``make bench``)."""
