"""The official OSS SDKs (oss2 2.19.1, alibabacloud-oss-v2 1.4.1) list and page through the
emulator's buckets, V1 and V4.

Usage: python oss_list_buckets.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET
The emulator must hold buckets sdk-a-00 .. sdk-a-11 in cn-hangzhou, cn-shanghai and
ap-southeast-1 by turns, and nothing else starting with "sdk-" (scripts/sdk-check starts it so).
"""

import sys

import alibabacloud_oss_v2 as oss
import oss2

endpoint, key_id, secret = sys.argv[1:4]
url = f"http://{endpoint}"
regions = ["cn-hangzhou", "cn-shanghai", "ap-southeast-1"]
expected = [(f"sdk-a-{i:02}", regions[i % 3]) for i in range(12)]

# oss2: always sends prefix=&marker=&max-keys=N; parses strictly (every field, .000Z dates).
for auth in [oss2.Auth(key_id, secret), oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(key_id, secret))]:
    service = oss2.Service(auth, url, region="cn-hangzhou")
    seen, marker = [], ""
    while True:
        page = service.list_buckets(prefix="sdk-", marker=marker, max_keys=5)
        seen += [(b.name, b.location.replace("oss-", "", 1)) for b in page.buckets]
        if not page.is_truncated:
            break
        marker = page.next_marker
    assert seen == expected, (type(auth).__name__, seen)
    everything = [b.name for b in oss2.BucketIterator(service, prefix="sdk-")]
    assert everything == [name for name, _ in expected], everything

# alibabacloud-oss-v2: only set parameters; its paginator follows NextMarker.
for version in ["v4", "v1"]:
    config = oss.config.load_default()
    config.credentials_provider = oss.credentials.StaticCredentialsProvider(key_id, secret)
    config.region = "cn-hangzhou"
    config.endpoint = url
    config.signature_version = version
    client = oss.Client(config)
    seen = []
    for page in client.list_buckets_paginator(limit=4).iter_page(oss.ListBucketsRequest(prefix="sdk-")):
        seen += [(b.name, b.region) for b in page.buckets]
    assert seen == expected, (version, seen)

try:
    oss2.Service(oss2.Auth(key_id, "wrong-secret"), url).list_buckets()
    raise AssertionError("a wrong secret must be refused")
except oss2.exceptions.ServerError as error:
    assert (error.status, error.code) == (403, "SignatureDoesNotMatch"), (error.status, error.code)
try:
    oss2.Service(oss2.Auth(key_id, secret), url).list_buckets(max_keys=1001)
    raise AssertionError("max-keys 1001 must be refused")
except oss2.exceptions.ServerError as error:
    assert error.status == 400, error.status
print("official OSS SDKs: oss2 (V1, V4) and alibabacloud-oss-v2 (V4, V1) listed and paged 12 buckets; 2 error cases passed")
