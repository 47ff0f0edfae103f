"""Generation hooks for scripts/schemathesis.sh.

`credentials.dpop_private_jwk` is valid only when it is a real P-256 key, which
no JSON Schema can say: schema-valid random text is rightly refused with 422.
Bodies carrying one are not generated; the checks themselves are unchanged.
"""

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    credentials = body.get("credentials") if isinstance(body, dict) else None
    return not (isinstance(credentials, dict) and "dpop_private_jwk" in credentials)
