"""Images: the content store, archives in and out, image configs and layer tars."""
