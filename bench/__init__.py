"""`make bench`: the pool measured against its limits, side by side in one run."""
