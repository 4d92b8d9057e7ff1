"""Checks tokens against a JWKS the way docs/configuration.md tells an app
to (PyJWT: the key by `kid` from the JWKS, the algorithm fixed by the app),
and tries two forgeries the recipe must refuse.

    python jwks_verify.py JWKS.json TOKENS.json ALG AUDIENCE ISSUER

TOKENS.json maps names to tokens; prints a JSON map of name -> "ok" or the
exception's class name, plus "alg-confusion" (an HS256 token whose MAC key
is the first key's public PEM) and "alg-none".
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

jwks_file, tokens_file, alg, audience, issuer = sys.argv[1:6]
with open(jwks_file) as f:
    keyset = jwt.PyJWKSet.from_dict(json.load(f))
with open(tokens_file) as f:
    tokens = json.load(f)


def verify(token):
    kid = jwt.get_unverified_header(token).get("kid")
    matches = [k for k in keyset.keys if k.key_id == kid]
    if not matches:
        raise jwt.PyJWKClientError(f"no key {kid}")
    return jwt.decode(token, matches[0].key, algorithms=[alg], audience=audience, issuer=issuer)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def outcome(token):
    try:
        verify(token)
        return "ok"
    except Exception as e:  # the class name is the answer
        return type(e).__name__


out = {name: outcome(token) for name, token in tokens.items()}
first = keyset.keys[0]
pem = first.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
now = int(time.time())
claims = b64(json.dumps({"sub": "mallory", "roles": ["admin"], "aud": audience, "iss": issuer,
                         "iat": now, "exp": now + 60}).encode())
header = b64(json.dumps({"alg": "HS256", "kid": first.key_id, "typ": "JWT"}).encode())
signing_input = f"{header}.{claims}".encode()
mac = hmac.new(pem, signing_input, hashlib.sha256).digest()
out["alg-confusion"] = outcome(f"{header}.{claims}.{b64(mac)}")
none = b64(json.dumps({"alg": "none", "kid": first.key_id}).encode())
out["alg-none"] = outcome(f"{none}.{claims}.")
print(json.dumps(out))
