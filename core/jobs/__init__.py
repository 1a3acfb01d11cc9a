"""The job machinery: queues, the consumer base, retries, receipts, dead letters and delayed jobs."""
