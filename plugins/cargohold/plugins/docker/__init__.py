"""The Docker volume-plugin protocol, both ways: serve drivers, use plugins, check them."""
