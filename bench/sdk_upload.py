"""Avala's official SDK uploading a local folder the way its docs say: one
`datasets.create_from_local` call (presign v2 → PUT or MULTIPART → complete → finalize, its
default 8 workers), then waiting until the dataset is `created`. Prints the dataset's uid.

Usage: sdk_upload.py FOLDER NAME (environment as tests/sdk/common.py says: AVALA_BASE_URL,
AVALA_API_KEY, STORAGE_ORIGIN, HOME a fresh directory for the SDK's upload checkpoints).
Talks to 127.0.0.1 only (common.py refuses anything else).
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "sdk"))

import avala  # noqa: E402
from common import API_KEY, BASE_URL  # noqa: E402  (also: loopback only, presigned URLs on 127.0.0.1)

folder, name = sys.argv[1], sys.argv[2]
client = avala.Client(api_key=API_KEY, base_url=BASE_URL)
slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
dataset = client.datasets.create_from_local(
    source=folder, name=name, slug=slug, data_type="image", wait=True
)
print(dataset.uid)
