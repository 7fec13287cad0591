"""The plugin room: the plugin manager, entry points, the lazy registry."""
