"""Shared set-up for the scripts that drive the emulator with Avala's official SDK.

Environment: AVALA_BASE_URL (the emulator's http://127.0.0.1:PORT/api/v1), AVALA_API_KEY,
STORAGE_ORIGIN (http://127.0.0.1:PORT2), HOME (a temporary directory: the SDK keeps upload
checkpoints under ~/.avala). Everything talks to 127.0.0.1 only.
"""

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

os.environ["AVALA_ALLOW_INSECURE_BASE_URL"] = "true"

import avala  # noqa: E402
import avala._managed_upload as managed_upload  # noqa: E402
import avala._uploads as uploads  # noqa: E402
import avala.resources.datasets as datasets_resource  # noqa: E402
import avala.resources.fleet._upload_guard as fleet_guard  # noqa: E402
import avala.resources.fleet.uploads as fleet_uploads  # noqa: E402

BASE_URL = os.environ["AVALA_BASE_URL"]
API_KEY = os.environ["AVALA_API_KEY"]
STORAGE = urlparse(os.environ["STORAGE_ORIGIN"])

for url in (BASE_URL, os.environ["STORAGE_ORIGIN"]):
    if urlparse(url).hostname != "127.0.0.1":
        sys.exit(f"refusing to talk to {url}: loopback only")

# Nothing may leave the machine: any connection to another host fails at once.
_real_create_connection = socket.create_connection


def _loopback_only(address, *args, **kwargs):
    host = address[0]
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"test scripts talk to 127.0.0.1 only, not {host}")
    return _real_create_connection(address, *args, **kwargs)


socket.create_connection = _loopback_only

# The SDK only accepts presigned URLs on HTTPS cloud-storage hosts. Relax that one check, in
# this process only, for the emulator's storage origin on loopback; anything else still goes
# through the SDK's own check.
_real_validate = uploads.validate_presigned_url


def _validate_presigned_url(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "http" and parsed.hostname == STORAGE.hostname and parsed.port == STORAGE.port:
        return
    _real_validate(url)


uploads.validate_presigned_url = _validate_presigned_url
managed_upload.validate_presigned_url = _validate_presigned_url
datasets_resource.validate_presigned_url = _validate_presigned_url
fleet_guard.validate_presigned_url = _validate_presigned_url
fleet_uploads._validate_presigned_put_url = _validate_presigned_url

# Upload checkpoints go under the test's temporary HOME, never the real one.
datasets_resource._STATE_DIR = Path(os.environ["HOME"]) / ".avala" / "uploads" / "datasets"
fleet_uploads._STATE_DIR = Path(os.environ["HOME"]) / ".avala" / "uploads"


def client() -> "avala.Client":
    return avala.Client(api_key=API_KEY, base_url=BASE_URL, timeout=20.0, max_retries=0)
