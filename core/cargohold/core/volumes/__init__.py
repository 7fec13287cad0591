"""The volume service: names, options, secrets, references, drivers by name."""
