"""The built-in container mount types and the default root filesystem.

Each mount type is its own plugin object, registered through its own entry
point, and answers the mount hooks for its own specs only, so pluggy does the
dispatch: the first implementation that answers for a spec wins.

``volume`` (`volume.plugin`)
    named and anonymous volumes, through the volume service (any driver,
    including remote Docker plugins). Held for the container from create to
    remove, mounted (a reference with the container id as mount id) from
    start to stop, pre-filled from the image unless ``nocopy``.
``bind`` (`bind.plugin`)
    a host path; ``-v`` makes a missing directory, ``--mount`` refuses.
``tmpfs`` (`tmpfs.plugin`)
    a fresh tmpfs in the container's mount namespace.
``volumes-from`` (`volumes_from.plugin`)
    expands, at create, into every volume and bind mount of another
    container (``:ro``/``:rw`` override their modes).
root filesystem (`rootfs.plugin`)
    the image's layers in the default snapshotter, a writable snapshot on top.
"""
