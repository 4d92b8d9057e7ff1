"""A Flask app for tests/differential_flask.rs: one view per route of the
test's gateway config, each appending what Werkzeug made of the request
(the method it dispatched on, host, decoded path, parsed cookies) to the
JSON-lines file named by DIFF_LOG, keyed by the gateway's X-Request-Id."""

import json
import os

from flask import Flask, jsonify, request

app = Flask(__name__)
LOG = os.environ["DIFF_LOG"]
ALL = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]


def record(view):
    line = {
        "view": view,
        "id": request.headers.get("X-Request-Id"),
        "method": request.method,
        "host": request.host,
        "path": request.path,
        "cookies": dict(request.cookies),
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return jsonify(view=view)


@app.route("/api/<path:rest>", methods=ALL)
def api(rest):
    return record("api")


@app.route("/reports", methods=ALL)
@app.route("/reports/<path:rest>", methods=ALL)
def reports(rest=""):
    return record("reports")


@app.route("/admin", methods=ALL)
@app.route("/admin/<path:rest>", methods=ALL)
def admin(rest=""):
    return record("admin")


@app.route("/", defaults={"rest": ""}, methods=ALL)
@app.route("/<path:rest>", methods=ALL)
def catch_all(rest):
    return record("catch_all")
