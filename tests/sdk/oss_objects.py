"""The official OSS SDKs (oss2 2.19.1, alibabacloud-oss-v2 1.4.1) put objects of every encryption
kind into the emulator, list them (paging, encoding-type=url), head and copy them, V1 and V4; then
the operator's `audit --all` over what they seeded reports the exact counts and exits 1.

Usage: python oss_objects.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET
Uses bucket sdk-a-00 (cn-hangzhou, no default rule, no objects), as scripts/sdk-check starts it;
needs target/debug/oss-encryption-operator.
"""

import json
import os
import subprocess
import sys
import tempfile

import alibabacloud_oss_v2 as oss
import oss2

endpoint, key_id, secret = sys.argv[1:4]
url = f"http://{endpoint}"
bucket_name = "sdk-a-00"
special = "dir/a b+c/中文 ü~.txt"

SSE = "x-oss-server-side-encryption"
KEY_ID = "x-oss-server-side-encryption-key-id"
DATA = "x-oss-server-side-data-encryption"

# What each SDK puts: (key, headers, expected (sse, key id, data)). KMS without a key reports the
# managed key's id, whatever it is.
kinds = [
    ("none", {}, (None, None, None)),
    ("aes256", {SSE: "AES256"}, ("AES256", None, None)),
    ("sm4", {SSE: "SM4"}, ("SM4", None, None)),
    ("kms-managed", {SSE: "KMS"}, ("KMS", "*", None)),
    ("kms-key", {SSE: "KMS", KEY_ID: "sdk-cmk"}, ("KMS", "sdk-cmk", None)),
    ("kms-sm4", {SSE: "KMS", DATA: "SM4"}, ("KMS", "*", "SM4")),
]


def check(got, expected, where):
    sse, key, data = expected
    assert got[0] == sse and got[2] == data, (where, got, expected)
    assert (got[1] is None) if key is None else (got[1] is not None and (key == "*" or got[1] == key)), (where, got)


# oss2: V1 and V4, keys under oss2-v1/ and oss2-v4/.
oss2_auths = {
    "v1": oss2.Auth(key_id, secret),
    "v4": oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(key_id, secret)),
}
for version, auth in oss2_auths.items():
    bucket = oss2.Bucket(auth, url, bucket_name, region="cn-hangzhou")
    for key, headers, expected in kinds:
        result = bucket.put_object(f"oss2-{version}/{key}", b"hello", headers=headers)
        assert result.status == 200, result.status
        head = bucket.head_object(f"oss2-{version}/{key}")
        got = (head.headers.get(SSE), head.headers.get(KEY_ID), head.headers.get(DATA))
        check(got, expected, ("oss2", version, key))
        assert head.content_length == 5, head.content_length
    bucket.put_object(f"oss2-{version}/{special}", b"x")
    assert bucket.head_object(f"oss2-{version}/{special}").headers.get(SSE) is None
    try:
        bucket.head_object(f"oss2-{version}/missing")
        raise AssertionError("a missing key must be 404")
    except oss2.exceptions.NotFound as error:
        assert error.code == "NoSuchKey" and error.request_id, (error.code, error.request_id)

# alibabacloud-oss-v2: V4 and V1, keys under v2-v4/ and v2-v1/.
clients = {}
for version in ["v4", "v1"]:
    config = oss.config.load_default()
    config.credentials_provider = oss.credentials.StaticCredentialsProvider(key_id, secret)
    config.region = "cn-hangzhou"
    config.endpoint = url
    config.signature_version = version
    config.use_path_style = True
    client = oss.Client(config)
    clients[version] = client
    for key, headers, expected in kinds:
        request = oss.PutObjectRequest(bucket=bucket_name, key=f"v2-{version}/{key}", body=b"hello")
        request.server_side_encryption = headers.get(SSE)
        request.server_side_encryption_key_id = headers.get(KEY_ID)
        request.server_side_data_encryption = headers.get(DATA)
        assert client.put_object(request).status_code == 200
        head = client.head_object(oss.HeadObjectRequest(bucket=bucket_name, key=f"v2-{version}/{key}"))
        got = (head.server_side_encryption, head.server_side_encryption_key_id, head.server_side_data_encryption)
        check(got, expected, ("v2", version, key))
    client.put_object(oss.PutObjectRequest(bucket=bucket_name, key=f"v2-{version}/{special}", body=b"x"))
    try:
        client.head_object(oss.HeadObjectRequest(bucket=bucket_name, key=f"v2-{version}/missing"))
        raise AssertionError("a missing key must be 404")
    except oss.exceptions.OperationError as error:
        service = error.unwrap()
        assert service.status_code == 404 and service.code == "NoSuchKey", (service.status_code, service.code)

# 4 writers x (6 kinds + the special key) = 28 objects. List them: oss2 (encoding-type=url by
# default, every parameter sent), pages of 5; the v2 paginator, pages of 4.
expected_keys = sorted(
    f"{sdk}-{version}/{key}"
    for sdk in ["oss2", "v2"]
    for version in ["v1", "v4"]
    for key in [k for k, _, _ in kinds] + [special]
)
for version, auth in oss2_auths.items():
    bucket = oss2.Bucket(auth, url, bucket_name, region="cn-hangzhou")
    seen, token = [], ""
    while True:
        page = bucket.list_objects_v2(continuation_token=token, max_keys=5)
        seen += [o.key for o in page.object_list]
        if not page.is_truncated:
            break
        token = page.next_continuation_token
    assert seen == expected_keys, ("oss2", version, seen)
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="oss2-v1/")] == [
        k for k in expected_keys if k.startswith("oss2-v1/")
    ]
for version, client in clients.items():
    seen = []
    paginator = client.list_objects_v2_paginator(limit=4)
    for page in paginator.iter_page(oss.ListObjectsV2Request(bucket=bucket_name)):
        seen += [o.key for o in page.contents]
    assert seen == expected_keys, ("v2", version, seen)

# Copy in place: a plain copy drops the source's SSE (not inherited); REPLACE with KMS re-encrypts.
oss2_v4 = oss2.Bucket(oss2_auths["v4"], url, bucket_name, region="cn-hangzhou")
oss2_v4.copy_object(bucket_name, "oss2-v4/kms-sm4", "copies/plain")
assert oss2_v4.head_object("copies/plain").headers.get(SSE) is None
source = oss2_v4.head_object("oss2-v4/none")
oss2_v4.copy_object(
    bucket_name,
    "oss2-v4/none",
    "oss2-v4/none",
    headers={"x-oss-metadata-directive": "REPLACE", SSE: "KMS", KEY_ID: "sdk-cmk", "x-oss-copy-source-if-match": source.etag},
)
assert oss2_v4.head_object("oss2-v4/none").headers.get(KEY_ID) == "sdk-cmk"
copy = oss.CopyObjectRequest(
    bucket=bucket_name, key=f"copies/{special}", source_bucket=bucket_name, source_key=f"v2-v4/{special}"
)
copy.server_side_encryption = "AES256"
copy.metadata_directive = "REPLACE"
assert clients["v4"].copy_object(copy).status_code == 200
head = clients["v4"].head_object(oss.HeadObjectRequest(bucket=bucket_name, key=f"copies/{special}"))
assert head.server_side_encryption == "AES256", head.server_side_encryption

# The 28 objects plus 2 copies, counted by kind through oss2's HeadObject:
objects = {}
bucket = oss2.Bucket(oss2_auths["v4"], url, bucket_name, region="cn-hangzhou")
for o in oss2.ObjectIteratorV2(bucket):
    h = bucket.head_object(o.key).headers
    kind = h.get(SSE) or "None"
    if kind == "KMS" and h.get(DATA) == "SM4":
        kind = "KMS+SM4"
    objects[kind] = objects.get(kind, 0) + 1
assert sum(objects.values()) == 30, objects

# The operator's audit over what the SDKs seeded, against a KMS rule: the same counts, exit 1.
with tempfile.TemporaryDirectory() as tmp:
    manifest = os.path.join(tmp, "bucket.yaml")
    with open(manifest, "w") as f:
        f.write(
            "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\n"
            "metadata: {name: sdk-a-00, namespace: sdk}\n"
            "spec: {bucket: sdk-a-00, region: cn-hangzhou, algorithm: KMS, kmsMasterKeyId: sdk-cmk}\n"
        )
    credentials = os.path.join(tmp, "credentials.yaml")
    with open(credentials, "w") as f:
        f.write(f"accessKeyId: {key_id}\naccessKeySecret: {secret}\n")
    run = subprocess.run(
        ["target/debug/oss-encryption-operator", "audit", "-f", manifest, "--all", "-o", "json",
         "--credentials-file", credentials, "--endpoint", url, "--allowed-endpoint-suffixes", endpoint],
        capture_output=True, text=True,
    )
    assert run.returncode == 1, (run.returncode, run.stderr)
    report = json.loads(run.stdout)["buckets"][0]["objects"]
    assert report["examined"] == 30, report
    for kind in ["None", "AES256", "SM4", "KMS", "KMS+SM4"]:
        assert report["byEncryption"][kind] == objects.get(kind, 0), (kind, report, objects)
    assert report["belowRule"] == objects.get("None", 0) + objects.get("AES256", 0) + objects.get("SM4", 0), report
    assert report["byKey"]["sdk-cmk"] == 4 + 1, report  # one kms-key per writer, plus the re-encrypted copy

print(
    "official OSS SDKs: oss2 (V1, V4) and alibabacloud-oss-v2 (V4, V1) put every encryption kind, "
    f"headed, listed and copied 30 objects; audit --all counted them exactly ({objects})"
)
