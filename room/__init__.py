"""A local voice room: the LiveKit dev server, the worker and a web page, on loopback."""
