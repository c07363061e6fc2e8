"""Local servers the tests talk to over real sockets: no mocks patched into the code."""
