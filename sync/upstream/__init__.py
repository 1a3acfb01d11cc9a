"""Upstream/Connect: vendor connections and their secrets, what we know of each vendor,
health checks, the guarded outbound HTTP client (`outbound/`), and their API."""
