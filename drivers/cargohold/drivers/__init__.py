"""cargohold's storage drivers: the code that stores and moves bytes."""
