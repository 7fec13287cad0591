"""The three cloud drivers: each names its backend and its service's own options.

Importing this module imports no SDK; the plugin checks the SDK separately
before offering a driver, and the backend module is imported at first use.
"""

from __future__ import annotations

from typing import ClassVar

from cargohold.core import Option
from cargohold.drivers.cloud.base import CloudDriver


class S3Driver(CloudDriver):
    """Amazon S3 or any S3-compatible endpoint (MinIO, Ceph, moto), through boto3."""

    name = "s3"
    backend_module = "cargohold.drivers.cloud.s3"
    service_options = (
        Option("bucket", required=True, help="the bucket holding the volume"),
        Option("prefix", default="", help="key prefix of the volume inside the bucket"),
        Option("region", help="the bucket's region (default: boto3's configuration)"),
        Option("endpoint_url", help="an S3-compatible endpoint, e.g. http://127.0.0.1:9000"),
        Option(
            "access_key_id",
            secret=True,
            help="a reference to the access key id (env:NAME, file:/path); "
            "default: boto3's credential chain",
        ),
        Option(
            "secret_access_key",
            secret=True,
            help="a reference to the secret access key (env:NAME, file:/path)",
        ),
    )
    example_options: ClassVar[dict[str, str]] = {"bucket": "my-bucket", "prefix": "volumes/data"}


class AzureFileDriver(CloudDriver):
    """An Azure file share (or a directory in one), through azure-storage-file-share."""

    name = "azurefile"
    backend_module = "cargohold.drivers.cloud.azurefile"
    service_options = (
        Option("share", required=True, help="the file share holding the volume"),
        Option("directory", default="", help="directory of the volume inside the share"),
        Option(
            "account_url",
            help="the File service URL, e.g. https://ACCOUNT.file.core.windows.net",
        ),
        Option(
            "account_key",
            secret=True,
            help="a reference to the storage account key (env:NAME, file:/path)",
        ),
        Option("sas_token", secret=True, help="a reference to a SAS token (env:NAME, file:/path)"),
        Option(
            "connection_string",
            secret=True,
            help="a reference to a connection string (env:NAME, file:/path); "
            "default: the SDK's credential chain with account_url",
        ),
    )
    example_options: ClassVar[dict[str, str]] = {
        "share": "my-share",
        "account_url": "https://myaccount.file.core.windows.net",
    }


class GCSDriver(CloudDriver):
    """A Google Cloud Storage bucket and prefix, through google-cloud-storage."""

    name = "gcs"
    backend_module = "cargohold.drivers.cloud.gcs"
    service_options = (
        Option("bucket", required=True, help="the bucket holding the volume"),
        Option("prefix", default="", help="object name prefix of the volume inside the bucket"),
        Option(
            "endpoint",
            help="a GCS-compatible endpoint, e.g. http://127.0.0.1:4443 (fake-gcs-server)",
        ),
        Option("project", help="the project for bucket creation (default: the credentials')"),
        Option(
            "credentials_file",
            secret=True,
            help="a reference to a service-account JSON key (file:/path, env:NAME); "
            "default: Application Default Credentials",
        ),
    )
    example_options: ClassVar[dict[str, str]] = {"bucket": "my-bucket", "prefix": "volumes/data"}


ALL = (S3Driver, AzureFileDriver, GCSDriver)
