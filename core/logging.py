"""Log records carry the correlation id of the request or job that wrote them."""

import logging

from core import context


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = context.correlation_id.get() or "-"
        return True
