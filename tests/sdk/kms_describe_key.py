"""The official KMS SDK (alibabacloud-kms20160120) against the emulator's DescribeKey.

Usage: python kms_describe_key.py HOST:PORT ACCESS_KEY_ID ACCESS_KEY_SECRET
The emulator must hold key `key-sdk` in cn-hangzhou with alias `alias/sdk-key` (scripts/sdk-check
starts it so). Every signature the SDK offers (ACS3 default, RPC `v2`, ACS4 `v4`) must be
accepted, and the documented errors must reach the SDK with their codes and statuses.
"""

import sys

from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import models as open_api_models

endpoint, key_id, secret = sys.argv[1:4]
ARN = "acs:kms:cn-hangzhou:1540355698840000:key/key-sdk"


def client(access_key_secret=secret, access_key_id=key_id, **signature):
    config = open_api_models.Config(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        endpoint=endpoint,
        protocol="http",
        region_id="cn-hangzhou",
        **signature,
    )
    return Client(config)


def describe(name, **kwargs):
    return client(**kwargs).describe_key(models.DescribeKeyRequest(key_id=name))


def failure(name, **kwargs):
    try:
        describe(name, **kwargs)
    except Exception as error:  # the SDK raises its own exception types
        status = getattr(error, "status_code", None)
        if status is None and isinstance(getattr(error, "data", None), dict):
            status = error.data.get("statusCode")
        return error.code, status
    raise AssertionError(f"{name}: expected an error")


checked = 0
for signature in [{}, {"signature_algorithm": "v2"}, {"signature_version": "v4"}]:
    for name in ["key-sdk", "alias/sdk-key", ARN]:
        answer = describe(name, **signature).body
        meta = answer.key_metadata
        assert meta.key_id == "key-sdk", (signature, name, meta.key_id)
        assert meta.key_state == "Enabled" and meta.key_usage == "ENCRYPT/DECRYPT", meta
        assert meta.arn == ARN, meta.arn
        assert answer.request_id, "a request id"
        checked += 1

assert failure("key-none") == ("Forbidden.KeyNotFound", 404), failure("key-none")
assert failure("alias/none") == ("Forbidden.AliasNotFound", 404)
assert failure("alias/a b+c*d") == ("Forbidden.AliasNotFound", 404), "a '+' and a space survive the query"
for signature in [{}, {"signature_algorithm": "v2"}, {"signature_version": "v4"}]:
    code, status = failure("key-sdk", access_key_secret="wrong-secret", **signature)
    assert (code, status) == ("SignatureDoesNotMatch", 400), (signature, code, status)
assert failure("key-sdk", access_key_id="LTAI-unknown") == ("InvalidAccessKeyId.NotFound", 404)
print(f"official KMS SDK: {checked} DescribeKey calls over 3 signatures and 6 error cases passed")
