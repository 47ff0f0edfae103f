"""Generation hooks for scripts/schemathesis.sh.

`credentials.dpop_private_jwk` is valid only when it is a real P-256 key, which
no JSON Schema can say: schema-valid random text is rightly refused with 422.
Bodies carrying one are not generated; the checks themselves are unchanged.
The import endpoint's NDJSON body is serialized one generated object per line.
"""

import json

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    credentials = body.get("credentials") if isinstance(body, dict) else None
    return not (isinstance(credentials, dict) and "dpop_private_jwk" in credentials)


@schemathesis.serializer("application/x-ndjson")
def ndjson_serializer(ctx, value):
    """`POST /v1/accounts:import` documents its body as one AccountSpec per
    line: a generated AccountSpec (or anything else) goes as one line."""
    if isinstance(value, bytes):
        return value
    return (json.dumps(value) + "\n").encode("utf-8")
