"""Containers: the service, the runner in namespaces, commit and logs."""
