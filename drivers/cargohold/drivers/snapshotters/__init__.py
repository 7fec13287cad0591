"""Built-in snapshot drivers: copy-on-write layers for container root filesystems."""
