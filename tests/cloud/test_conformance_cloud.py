"""The three cloud drivers pass the driver conformance suite, each against its local server."""

from __future__ import annotations

import secrets

import pytest

from cargohold.core.testing.volume_drivers import VolumeDriverConformance
from cargohold.drivers.cloud.drivers import AzureFileDriver, GCSDriver, S3Driver

from .conftest import Remote, azure_backend_missing


class _NoPlugin:
    """Nothing to add: cargohold's own cloud plugin (an entry point) provides the driver."""


class _CloudConformance(VolumeDriverConformance):
    # each test's volumes live under a fresh prefix, removed with them
    remove_deletes_data = True
    remote_fixture = ""

    @pytest.fixture
    def driver_plugin(self) -> object:
        # the driver as users get it, through the cloud plugin's registration
        return _NoPlugin()

    @pytest.fixture
    def volume_options(self, request: pytest.FixtureRequest) -> dict[str, str]:
        remote: Remote = request.getfixturevalue(self.remote_fixture)
        prefix = f"conformance-{secrets.token_hex(5)}"
        # the harness removes its volumes (delete_remote) after this fixture's teardown
        # would run, so anything left is wiped at the end of the session instead
        remote.leftovers.append(prefix)
        return remote.opts(prefix, delete_remote="true")


class TestS3Driver(_CloudConformance):
    driver_name = S3Driver.name
    remote_fixture = "s3_remote"


class TestGCSDriver(_CloudConformance):
    driver_name = GCSDriver.name
    remote_fixture = "gcs_remote"


@pytest.mark.skipif(bool(azure_backend_missing()), reason=azure_backend_missing() or "")
class TestAzureFileDriver(_CloudConformance):
    driver_name = AzureFileDriver.name
    remote_fixture = "azure_remote"
