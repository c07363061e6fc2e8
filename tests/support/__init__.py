"""Helpers of the test suite alone: fixtures' plumbing, waiting, and the small programs some
tests run as processes. The servers they talk to are in `testbed/`."""
