"""Full-text search over collection records: the index a datatype processor keeps (`index`)
and the query behind `?search=` (`query`)."""
