"""Realtime (WebSocket) auth: what a socket may open (scopes), signed single-use tickets, and the
Channels middleware that checks both, and the browser's Origin, before any consumer runs."""
