"""Where a notebook's code runs while it is graded: a worker process apart from the tests (worker.py), started
and read with a deadline by client.py, inside the containment containment.py picks (bubblewrap, else a plain
process) and the bounds bounds.py picks (cgroups, a systemd scope, RLIMIT_NPROC); both sides speak wire.py,
plain data only; remote.py shows its functions and networks to the tests; reference.py holds the spec's own
networks, which both sides build. What goes wrong is raised as errors.py's exceptions, which know nothing of
pytest: the harness, a batch or a script each say it their own way."""
