"""Benchmarks: scripts run by hand, each printing one table and writing bench/results/<name>.json."""
