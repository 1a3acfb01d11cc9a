"""Monitoring: queue statistics (`queues`), connections' traffic (`connection_stats`), and the
API under /monitoring/ (with dead letters and their replay)."""
