"""Where a notebook's code runs while it is graded: a worker process apart from the tests (worker.py), started,
contained and read with a deadline by client.py, answering in plain data only (wire.py); remote.py shows its
functions and networks to the tests; reference.py holds the spec's own networks, which both sides build."""
