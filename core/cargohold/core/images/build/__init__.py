"""Building images from a Dockerfile: docker's classic builder."""
