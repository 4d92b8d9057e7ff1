"""A Flask app behind portcullis: no login code, no session cookie, no CSRF.

portcullis authenticates the user and sends, on every request it forwards:
  X-Forwarded-User       the user name
  X-Forwarded-Roles      comma-separated roles
  X-Forwarded-Assertion  a 60-second HS256 JWT {sub, roles, iat, exp, aud}
                         signed with [secrets] assertion_key

The headers are stripped from every client request by the gateway, so the app
may believe them -- as long as only the gateway can reach the app (bind it to
127.0.0.1). Verifying the assertion as well means a request that bypassed the
gateway (a misconfigured port, a sidecar) cannot claim an identity.

Run:  PORTCULLIS_ASSERTION_KEY=... flask --app app run --port 8000
"""

import os

import jwt
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
ASSERTION_KEY = os.environ["PORTCULLIS_ASSERTION_KEY"].encode()
AUDIENCE = os.environ.get("PORTCULLIS_AUDIENCE", "app")  # the [upstreams.NAME]


def current_user():
    """The verified identity, or None for an anonymous (public-route) request."""
    token = request.headers.get("X-Forwarded-Assertion")
    if token is None:
        return None
    try:
        claims = jwt.decode(token, ASSERTION_KEY, algorithms=["HS256"], audience=AUDIENCE)
    except jwt.InvalidTokenError:
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
