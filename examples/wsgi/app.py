"""A small WSGI application for srvd's reverse proxy, standard library only.

srvd serves the files (``.html``, ``.css``, ``.png``) itself and hands every ``*.py`` path
to this application, run by an app server such as gunicorn on a unix socket::

    gunicorn --workers 4 --bind unix:/tmp/srvd-wsgi.sock app:application

It is written the way a tutorial's mini framework is: a router that maps paths to
functions, a ``Request`` built from the WSGI environ, and a ``Response`` that turns back
into ``start_response`` plus an iterable of bytes. Routes:

- ``/login.py``     GET: a login form; POST: checks ``user`` / ``password`` from the form
- ``/register.py``  POST: adds a user (kept in a small SQLite file, shared by the workers)
- ``/time.py``      the server's time
- ``/echo.py``      what the app received, as JSON (method, path, query, headers, body)
- ``/stream.py``    a streamed response, a chunk at a time; ``?events=1`` sends
                    server-sent events (``text/event-stream``)
- anything else     404

Environment: ``SRVD_WSGI_DB`` (the user database, default ``srvd-wsgi-users.sqlite3`` in
the system temp directory), ``SRVD_WSGI_DEMO_PASSWORD`` (the password of the built-in
user ``demo``, default ``demo``).
"""

import hashlib
import hmac
import html
import json
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

# ---------------------------------------------------------------------------------------
# The mini framework
# ---------------------------------------------------------------------------------------

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
}

# Bodies larger than this are refused (srvd limits them too, with its max_body).
MAX_BODY = 1 << 20


class Request:
    """What the app needs from the WSGI environ."""

    def __init__(self, environ):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.script_name = environ.get("SCRIPT_NAME", "")
        self.query_string = environ.get("QUERY_STRING", "")
        self.query = {k: v[-1] for k, v in parse_qs(self.query_string).items()}
        self._body = None

    def header(self, name, default=None):
        """A request header by its HTTP name (``X-Forwarded-For``)."""
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.environ.get(key) or default
        return self.environ.get("HTTP_" + key, default)

    def headers(self):
        """Every request header, as ``{"x-forwarded-for": "..."}``."""
        out = {}
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                out[key[5:].replace("_", "-").lower()] = value
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if self.environ.get(key):
                out[key.replace("_", "-").lower()] = self.environ[key]
        return out

    @property
    def body(self):
        """The request body: Content-Length bytes (srvd always sends one with a body)."""
        if self._body is None:
            stream = self.environ["wsgi.input"]
            length = self.environ.get("CONTENT_LENGTH") or ""
            if length.isdigit():
                self._body = stream.read(min(int(length), MAX_BODY))
            else:
                # No length: an app server may still hand over a (dechunked) body.
                self._body = stream.read(MAX_BODY)
        return self._body

    @property
    def form(self):
        """An ``application/x-www-form-urlencoded`` body as a dict (last value wins)."""
        text = self.body.decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


class Response:
    """A status, headers and a body: bytes, a str, or an iterable of bytes (streamed)."""

    def __init__(self, body=b"", status=200, content_type="text/html; charset=utf-8", headers=None):
        self.status = status
        self.headers = [("Content-Type", content_type)]
        self.headers.extend(headers or [])
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body

    def __call__(self, start_response):
        status = f"{self.status} {STATUS_TEXT.get(self.status, 'Unknown')}"
        if isinstance(self.body, bytes):
            start_response(status, self.headers + [("Content-Length", str(len(self.body)))])
            return [self.body]
        # A generator: no length; the app server frames it (chunked or until close).
        start_response(status, self.headers)
        return self.body


def json_response(data, status=200):
    return Response(json.dumps(data, indent=1, sort_keys=True) + "\n", status, "application/json")


class App:
    """Routes paths to functions: ``@app.route("/time.py")``."""

    def __init__(self):
        self.routes = {}

    def route(self, path, methods=("GET",)):
        def register(fn):
            self.routes[path] = (fn, tuple(methods) + (("HEAD",) if "GET" in methods else ()))
            return fn

        return register

    def __call__(self, environ, start_response):
        req = Request(environ)
        found = self.routes.get(req.path)
        if found is None:
            resp = page("Not found", f"<p>No page at <code>{html.escape(req.path)}</code>.</p>", 404)
        elif req.method not in found[1]:
            resp = page("Method not allowed", f"<p>{html.escape(req.method)} is not allowed here.</p>", 405)
            resp.headers.append(("Allow", ", ".join(found[1])))
        else:
            try:
                resp = found[0](req)
            except BodyTooLarge:
                resp = page("Too large", "<p>That request body is too large.</p>", 413)
        return resp(start_response)


class BodyTooLarge(Exception):
    pass


def page(title, content, status=200):
    """An HTML page in the site's style (the stylesheet comes from srvd, not from here)."""
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
{content}
<p><a href="/">home</a> · <a href="/login.py">log in</a> · <a href="/time.py">time</a></p>
</main>
</body>
</html>
"""
    return Response(body, status)


# ---------------------------------------------------------------------------------------
# Users: a small SQLite file, so every app server worker sees the same ones
# ---------------------------------------------------------------------------------------


def db_path():
    return os.environ.get("SRVD_WSGI_DB") or os.path.join(tempfile.gettempdir(), "srvd-wsgi-users.sqlite3")


def db():
    conn = sqlite3.connect(db_path(), timeout=5)
    conn.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, salt BLOB, hash BLOB)")
    return conn


def hash_password(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 50_000)


def check_user(name, password):
    if name == "demo":
        expected = os.environ.get("SRVD_WSGI_DEMO_PASSWORD", "demo")
        return hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))
    with db() as conn:
        row = conn.execute("SELECT salt, hash FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        return False
    return hmac.compare_digest(hash_password(password, row[0]), row[1])


def add_user(name, password):
    """False when the name is taken."""
    if name == "demo":
        return False
    salt = os.urandom(16)
    try:
        with db() as conn:
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (name, salt, hash_password(password, salt)))
    except sqlite3.IntegrityError:
        return False
    return True


def valid_name(name):
    return 0 < len(name) <= 32 and all(c.isalnum() or c in "-_." for c in name)


# ---------------------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------------------

app = App()

LOGIN_FORM = """<form method="post" action="/login.py">
<label>user <input name="user" autocomplete="username"></label>
<label>password <input name="password" type="password" autocomplete="current-password"></label>
<button>log in</button>
</form>
<p>No account? <a href="/register.py">Register</a> (the built-in user is <code>demo</code>).</p>"""

REGISTER_FORM = """<form method="post" action="/register.py">
<label>user <input name="user" autocomplete="username"></label>
<label>password <input name="password" type="password" autocomplete="new-password"></label>
<button>register</button>
</form>"""


def form_body(req):
    if req.header("Content-Length", "0").isdigit() and int(req.header("Content-Length", "0")) > MAX_BODY:
        raise BodyTooLarge()
    return req.form


@app.route("/login.py", methods=("GET", "POST"))
def login(req):
    if req.method in ("GET", "HEAD"):
        return page("Log in", LOGIN_FORM)
    form = form_body(req)
    user, password = form.get("user", ""), form.get("password", "")
    if check_user(user, password):
        return page("Welcome", f"<p>Welcome, <strong>{html.escape(user)}</strong>. You are logged in.</p>")
    return page("Log in failed", "<p>Unknown user or wrong password.</p>" + LOGIN_FORM, 401)


@app.route("/register.py", methods=("GET", "POST"))
def register(req):
    if req.method in ("GET", "HEAD"):
        return page("Register", REGISTER_FORM)
    form = form_body(req)
    user, password = form.get("user", ""), form.get("password", "")
    if not valid_name(user) or len(password) < 4:
        msg = "<p>A user name (letters, digits, <code>-_.</code>) and a password of 4 characters or more, please.</p>"
        return page("Register", msg + REGISTER_FORM, 400)
    if not add_user(user, password):
        return page("Register", f"<p>The name <code>{html.escape(user)}</code> is taken.</p>" + REGISTER_FORM, 409)
    return page("Registered", f"<p>Registered <strong>{html.escape(user)}</strong>. You can <a href=\"/login.py\">log in</a> now.</p>", 201)


@app.route("/time.py")
def server_time(req):
    now = datetime.now(timezone.utc)
    if req.query.get("format") == "json":
        return json_response({"time": now.isoformat(timespec="seconds"), "unix": int(now.timestamp())})
    return page("Server time", f"<p>It is <time datetime=\"{now.isoformat(timespec='seconds')}\">{now:%Y-%m-%d %H:%M:%S} UTC</time> on the server.</p>")


# Headers /echo.py always reports (null when absent), besides the full "headers" map.
ECHO_HEADERS = (
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Prefix",
    "Via",
    "Content-Length",
    "Content-Type",
    "Transfer-Encoding",
    "Expect",
    "Connection",
)


@app.route("/echo.py", methods=("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
def echo(req):
    body = req.body
    return json_response(
        {
            "method": req.method,
            "path": req.path,
            "script_name": req.script_name,
            "query": req.query_string,
            "selected": {name: req.header(name) for name in ECHO_HEADERS},
            "headers": req.headers(),
            "body": body.decode("utf-8", "replace"),
            "body_length": len(body),
            "remote_addr": req.environ.get("REMOTE_ADDR"),
        }
    )


@app.route("/stream.py")
def stream(req):
    """Parts sent one by one with a pause between them (``n`` parts, ``delay`` seconds)."""
    try:
        count = max(1, min(int(req.query.get("n", "5")), 100))
        delay = max(0.0, min(float(req.query.get("delay", "0.1")), 2.0))
    except ValueError:
        return page("Bad request", "<p><code>n</code> and <code>delay</code> must be numbers.</p>", 400)
    events = req.query.get("events") == "1"

    def parts():
        for i in range(1, count + 1):
            if i > 1:
                time.sleep(delay)
            if events:
                yield f"id: {i}\nevent: tick\ndata: part {i} of {count}\n\n".encode()
            else:
                yield f"part {i} of {count}\n".encode()

    if events:
        return Response(parts(), content_type="text/event-stream", headers=[("Cache-Control", "no-cache")])
    return Response(parts(), content_type="text/plain; charset=utf-8")


application = app

if __name__ == "__main__":
    # For a quick look without gunicorn: python3 app.py [port] (wsgiref, one request at a time).
    from wsgiref.simple_server import make_server

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"serving on http://127.0.0.1:{port}/", file=sys.stderr)
    make_server("127.0.0.1", port, application).serve_forever()
