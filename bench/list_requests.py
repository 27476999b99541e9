"""The contestant for the list benchmark: what Avala's docs show, in plain `requests`.

Follows `has_more`/`cursor` until the last page and keeps every item in memory, as
`datasets.list` without `save_to` does. Uses a Session (keep-alive): the faster way to
write it, so the comparison is against the better of the two usual loops.

usage: list_requests.py BASE_URL KEY [LIMIT]   (prints the item count)
"""
import sys

import requests

base, key = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 100

session = requests.Session()
session.headers["X-Avala-Api-Key"] = key
items, cursor = [], None
while True:
    params = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    response = session.get(f"{base}/datasets", params=params, timeout=60)
    response.raise_for_status()
    page = response.json()
    items.extend(page["items"])
    if not page.get("has_more"):
        break
    cursor = page["cursor"]
print(len(items))
