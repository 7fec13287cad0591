"""The state room: the database, the stores of every subsystem, locks and paths."""
