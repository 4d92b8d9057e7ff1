"""A Flask app behind portcullis: no login code, no session cookie, no CSRF.

portcullis authenticates the user and sends, on every request it forwards:
  X-Forwarded-User       the user name
  X-Forwarded-Roles      comma-separated roles
  X-Forwarded-Assertion  a 60-second ES256 JWT {iss, sub, aud, iat, exp, jti,
                         email, roles, amr} signed with a private key only
                         the gateway holds

The headers are stripped from every client request by the gateway, so the app
may believe them -- as long as only the gateway can reach the app (bind it to
127.0.0.1). Verifying the assertion as well means a request that bypassed the
gateway (a misconfigured port, a sidecar) cannot claim an identity. The app
holds no secret: it checks the signature against the gateway's public keys
(/.portcullis/jwks.json), which PyJWKClient fetches and caches; a key it has
not seen (after `portcullis keys rotate`) makes it fetch them again.

Run:  flask --app app run --port 8000
      (PORTCULLIS_JWKS_URL, PORTCULLIS_ISSUER, PORTCULLIS_AUDIENCE and
      PORTCULLIS_CA_FILE -- for the self-signed certificate -- if not the
      defaults below)

With PORTCULLIS_ASSERTION_KEY set instead, the app checks version 1's
HS256 assertion with that shared key (examples/docker-compose.yml, where the
app cannot reach the gateway's https listener by its certificate's name).
"""

import os
import ssl

import jwt
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
JWKS_URL = os.environ.get("PORTCULLIS_JWKS_URL", "https://localhost:8443/.portcullis/jwks.json")
ISSUER = os.environ.get("PORTCULLIS_ISSUER", "https://localhost:8443")  # [identity] issuer
AUDIENCE = os.environ.get("PORTCULLIS_AUDIENCE", "app")  # the [upstreams.NAME]
CA_FILE = os.environ.get("PORTCULLIS_CA_FILE")  # the gateway's CA, if not a public one
SHARED_KEY = os.environ.get("PORTCULLIS_ASSERTION_KEY")  # hs256 only
JWKS = jwt.PyJWKClient(
    JWKS_URL,
    ssl_context=ssl.create_default_context(cafile=CA_FILE) if CA_FILE else None,
)


def verify(token):
    """The claims of a valid assertion; raises otherwise."""
    if SHARED_KEY:
        return jwt.decode(token, SHARED_KEY.encode(), algorithms=["HS256"], audience=AUDIENCE)
    # The key comes from the JWKS by the token's kid; the algorithm is fixed
    # here, never taken from the token (an HS256 token "signed" with the
    # public key is refused).
    key = JWKS.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


def current_user():
    """The verified identity, or None for an anonymous (public-route) request."""
    token = request.headers.get("X-Forwarded-Assertion")
    if token is None:
        return None
    try:
        claims = verify(token)
    except (jwt.InvalidTokenError, jwt.PyJWKClientError):
        abort(401)
    # The plain headers carry the same facts; the assertion proves them.
    if claims["sub"] != request.headers.get("X-Forwarded-User"):
        abort(401)
    return {"name": claims["sub"], "roles": claims.get("roles", [])}


@app.get("/")
def index():
    user = current_user()
    return jsonify(message="public page", user=user)


@app.get("/dashboard")
def dashboard():
    user = current_user()
    if user is None:  # portcullis already requires a login here; defence in depth
        abort(401)
    return jsonify(message=f"hello {user['name']}", roles=user["roles"])


@app.get("/admin")
def admin():
    user = current_user()
    if user is None or "admin" not in user["roles"]:
        abort(403)
    return jsonify(message="admin area", user=user["name"])


@app.get("/health")
def health():
    return "ok"
