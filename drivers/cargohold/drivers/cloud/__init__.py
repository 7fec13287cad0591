"""Cloud file shares (S3, Azure Files, Google Cloud Storage) on one sync engine.

A volume is a local cache directory under the driver's data root, kept in step
with a bucket + prefix (or a share + directory) by `engine.SyncEngine`. Each
service is a thin `backend.Backend`; everything else (manifest, journal,
conflicts, retries, background write-back) is shared. SDKs are imported only by
the backend modules, so importing this package costs nothing.
"""
