"""Running a deployment: the command line (``python -m tasks``), embedded servers,
recomputation, the demo, and a kombu workaround. The top layer of the framework."""
