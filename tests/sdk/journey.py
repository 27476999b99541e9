"""The journey of a real user with Avala's official SDK against the emulator's current
flavour: list datasets and items, upload a local folder with the SDK's dataset-upload helper
(v2: PUT and MULTIPART), upload files the legacy way (presigned POST form) and finalize, wait
for the datasets, create and wait for an export, download it. Prints one JSON summary line.

Usage: journey.py FOLDER DOWNLOAD_PATH (see common.py for the environment).
"""

import hashlib
import json
import os
import sys

import avala.errors as avala_errors
import httpx

from common import client

folder, download_path = sys.argv[1], sys.argv[2]
c = client()
summary = {}

# Lists: datasets (with a filter) and the items of the first one, by owner/slug.
page = c.datasets.list(limit=2)
summary["first_page"] = [d.uid for d in page.items]
summary["has_more"] = page.has_more
everything = []
cursor = None
while True:
    page = c.datasets.list(limit=2, cursor=cursor)
    everything += [d.uid for d in page.items]
    if not page.has_more:
        break
    cursor = page.next_cursor
summary["all_datasets"] = everything
summary["videos"] = [d.uid for d in c.datasets.list(data_type="video").items]
first = c.datasets.get(everything[0])
items = c.datasets.list_items(first.owner_name, first.slug, limit=5)
summary["first_items"] = [i.key for i in items.items]
item = c.datasets.get_item(first.owner_name, first.slug, items.items[0].uid)
summary["item_url_status"] = httpx.get(item.url, timeout=10).status_code

# The SDK's dataset-upload helper: presign (v2) → PUT or MULTIPART → complete → finalize.
quota = c.datasets.manual_upload_quota()
summary["quota_before"] = {"used": quota.used, "limit": quota.limit}
dataset = c.datasets.create_from_local(
    source=folder, name="SDK upload", slug="sdk-upload", data_type="image", workers=2
)
summary["created_status"] = dataset.status
dataset = c.datasets.wait(dataset.uid, interval=0.2, timeout=30)
summary["waited_status"] = dataset.status
summary["dataset_uid"] = dataset.uid
summary["item_count"] = dataset.item_count
listed = c.datasets.list_items(dataset.owner_name, dataset.slug, limit=100)
summary["uploaded_keys"] = sorted(i.key for i in listed.items)
# Every uploaded item's URL serves the bytes that were sent.
digests = {}
for i in listed.items:
    body = httpx.get(i.url, timeout=30).content
    digests[i.key] = hashlib.sha256(body).hexdigest()
summary["uploaded_digests"] = digests

# The legacy protocol: presigned POST form for each file, then finalize by name.
legacy = [(os.path.join(folder, "a.txt"), "legacy/a.txt")]
sent = c.datasets.upload_files(dataset_name="Legacy upload", files=legacy, workers=1)
summary["legacy_bytes"] = sent
legacy_dataset = c.datasets.create_from_manual_upload(
    name="Legacy upload", slug="legacy-upload", data_type="image"
)
legacy_dataset = c.datasets.wait(legacy_dataset.uid, interval=0.2, timeout=30)
summary["legacy_keys"] = [
    i.key for i in c.datasets.list_items(legacy_dataset.owner_name, legacy_dataset.slug).items
]

# A taken slug is a validation error, as in today's API.
try:
    c.datasets.create(name="again", slug="sdk-upload", data_type="image")
    summary["duplicate_slug"] = "accepted"
except avala_errors.ValidationError as e:
    summary["duplicate_slug"] = e.body
except Exception as e:  # pragma: no cover - reported
    summary["duplicate_slug"] = repr(e)

# Projects and tasks: wait until labelling is done.
project = c.projects.list().items[0]
summary["project"] = project.uid
for _ in range(10):
    tasks = c.tasks.list(project=project.uid).items
    if all(t.status == "completed" for t in tasks):
        break
summary["tasks"] = {t.uid: t.status for t in tasks}

# Export the uploaded dataset, wait, download, read the document.
export = c.exports.create(dataset=dataset.uid)
summary["export_created_status"] = export.status
export = c.exports.wait(export.uid, interval=0.5, timeout=30)
summary["export_status"] = export.status
summary["export_uid"] = export.uid
with httpx.stream("GET", export.download_url, timeout=30) as response:
    response.raise_for_status()
    with open(download_path, "wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
with open(download_path, "rb") as f:
    document = json.load(f)
summary["export_dataset_keys"] = sorted(
    i["key"] for d in document["datasets"] for i in d["items"]
)
summary["exports_newest_first"] = [e.uid for e in c.exports.list().items]
summary["rate_limit"] = c.rate_limit_info
print(json.dumps(summary))
