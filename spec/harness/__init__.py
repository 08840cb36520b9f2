"""What runs the questions against an implementation: the pytest plugin (plugin.py) and fixtures (fixtures.py),
the graded contract, loading the implementation, reading a notebook, the printed cells and values."""
