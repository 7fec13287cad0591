"""Helpers for tests that need the local Azure Files server (fixtures live in the test modules).

Test modules define their own fixtures on top of these, because tests/cloud/conftest.py
belongs to the cloud-driver tests:

    @pytest.fixture(scope="module")
    def azure_server() -> Iterator[AzureFilesServer]:
        yield from running_azure_server()
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .azure_files_server import AzureFilesServer

pytest.importorskip("azure.storage.fileshare", reason="pip install azure-storage-file-share")


def running_azure_server() -> Iterator[AzureFilesServer]:
    """A started server, stopped afterwards even if the test failed."""
    server = AzureFilesServer().start()
    try:
        yield server
    finally:
        server.stop()
