"""Tests of the Docker volume-plugin protocol bridge."""
