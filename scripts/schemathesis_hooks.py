"""Generation hooks for scripts/schemathesis.sh.

`credentials.dpop_private_jwk` is valid only when it is a real P-256 key, which
no JSON Schema can say: schema-valid random text is rightly refused with 422.
Bodies carrying one are not generated; the checks themselves are unchanged.
The import endpoint's NDJSON body is serialized one generated object per line,
and its NDJSON answer is read line by line (each line JSON, the last the summary).
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


@schemathesis.deserializer("application/x-ndjson")
def ndjson_deserializer(ctx, response):
    """Every line of the import's answer must be JSON; the last one (the
    summary) is what the response schema is checked against."""
    lines = [line for line in response.content.decode("utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError("an import answer holds at least its summary line")
    parsed = [json.loads(line) for line in lines]
    if "summary" not in parsed[-1]:
        raise ValueError("an import answer ends with its summary line")
    return parsed[-1]
