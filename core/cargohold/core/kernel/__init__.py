"""The kernel room: every call cargohold makes to Linux that Python's ``os`` lacks.

One ctypes binding of libc (``libc``) serves the whole project; the other
modules wrap mount calls, namespaces, loop devices, btrfs and quota ioctls.
This room imports nothing of cargohold but ``cargohold.core.api``.
"""
