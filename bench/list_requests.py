"""The contestant for the list benchmark: what Avala's docs show, in plain `requests`.

Follows `has_more`/`cursor` until the last page and keeps every item in memory, as
`datasets.list` without `save_to` does. Uses a Session (keep-alive): the faster way to
write it, so the comparison is against the better of the two usual loops.

usage: list_requests.py BASE_URL KEY [LIMIT]   (prints the item count)
       list_requests.py BASE_URL KEY LIMIT --curl-config
           (prints a curl config that fetches the same pages, in order, over one connection:
           the list benchmark's floor)
"""
import sys

import requests

base, key = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 100
curl_config = "--curl-config" in sys.argv[4:]

session = requests.Session()
session.headers["X-Avala-Api-Key"] = key
items, cursor = [], None
while True:
    params = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    response = session.get(f"{base}/datasets", params=params, timeout=60)
    response.raise_for_status()
    if curl_config:
        print(f'url = "{response.url}"\noutput = "/dev/null"')
    page = response.json()
    items.extend(page["items"])
    if not page.get("has_more"):
        break
    cursor = page["cursor"]
if curl_config:
    print(f'header = "X-Avala-Api-Key: {key}"')
else:
    print(len(items))
