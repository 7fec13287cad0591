"""cargohold's built-in plugins; each module is registered through an entry point."""
