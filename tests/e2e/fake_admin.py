#!/usr/bin/python3
"""A small in-memory fake of moatd's admin API (docs/api.md), for trying moatctl without moatd.

    fake_admin.py serve [--port N]       serve on 127.0.0.1; prints "PORT TOKEN" (operator)
    fake_admin.py selftest MOATCTL       run moatctl against a fake and check every command,
                                         output shape and exit code (docs/moatctl.md)

Not part of the pytest suite (not a *_test.py file). Strict where moatctl could go wrong:
unknown fields, types, Content-Type, Content-Length and percent-encoded path segments are
checked as the API does. Fake-only triggers: any path under tenant "boom" answers 500, an
expression containing "pth" does not compile, the config tenant "cfg" is read-only, and
POST /fake/degrade makes health answer 503.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RULE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def fake_pem(kind, seed):
    body = base64.b64encode(hashlib.sha256(seed.encode()).digest() * 2).decode()
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind, body, kind)


class ApiError(Exception):
    def __init__(self, status, error, detail, extra=None, headers=None):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.extra, self.headers = extra or {}, headers or {}


def bad(detail):
    return ApiError(400, "bad_request", detail)


def not_found(detail):
    return ApiError(404, "not_found", detail)


def conflict(detail):
    return ApiError(409, "conflict", detail)


class Store:
    """Everything the fake knows, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tenants, self.cas, self.devices, self.rules = {}, {}, {}, {}
        self.tokens, self.audit, self.failures = {}, [], {}
        self.ca_seq, self.degraded, self.started = 0, False, time.time()
        self.operator = self.new_token("operator", None)["token"]
        t = now()
        self.tenants["cfg"] = {
            "name": "cfg", "hosts": ["cfg.test"], "origin": "http://127.0.0.1:8080",
            "tcp_origin": None, "origin_ca": None, "quarantine_allow": [], "source": "config",
            "created_at": t, "updated_at": t}
        self.cas["cfg"], self.devices["cfg"], self.rules["cfg"] = [], {}, []

    def new_token(self, name, tenant):
        tid = secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        self.tokens[tid] = {"id": tid, "name": name, "tenant": tenant, "created_at": now(),
                            "last_used_at": None, "hash": hashlib.sha256(secret.encode()).digest()}
        return {"id": tid, "name": name, "tenant": tenant, "token": "moat_%s_%s" % (tid, secret)}


STORE = Store()


def check_fields(body, allowed, required=()):
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    for k in body:
        if k not in allowed:
            raise bad("unknown field %s" % k)
    for k in required:
        if k not in body:
            raise bad("missing field %s" % k)


def want_str(body, key, pattern=None, null_ok=False, maxlen=4096):
    v = body.get(key)
    if v is None and null_ok:
        return None
    if not isinstance(v, str) or len(v) > maxlen or (pattern and not pattern.match(v)):
        raise bad("bad value for %s" % key)
    return v


def want_int(body, key, lo, hi):
    v = body.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise bad("%s must be an integer in %d..%d" % (key, lo, hi))
    return v


def want_list(body, key, pattern, maxn=64):
    v = body.get(key)
    if not isinstance(v, list) or len(v) > maxn:
        raise bad("%s must be a list" % key)
    for e in v:
        if not isinstance(e, str) or (pattern and not pattern.match(e)):
            raise bad("bad value in %s: %r" % (key, e))
    return v


class Call:
    """One authenticated request: who asks and the helpers the handlers share."""

    def __init__(self, method, segs, query, body, scope, actor, source):
        self.method, self.segs, self.query, self.body = method, segs, query, body
        self.scope, self.actor, self.source = scope, actor, source

    def operator_only(self):
        if self.scope is not None:
            raise ApiError(403, "forbidden", "this needs an operator token")

    def tenant(self, name, write=False):
        if name == "boom":
            raise ApiError(500, "internal", "the store failed")
        t = STORE.tenants.get(name)
        if t is None or (self.scope is not None and self.scope != name):
            raise not_found("no tenant %s" % name)
        if write and t["source"] == "config":
            raise conflict("tenant %s is from the config file: read-only" % name)
        return t

    def log(self, action, tenant, obj, detail=None):
        seq = len(STORE.audit) + 1
        STORE.audit.append({"seq": seq, "at": now(), "actor": self.actor, "source": self.source,
                            "tenant": tenant, "action": action, "object": obj,
                            "detail": detail or {}})


# ---- handlers: each returns (status, body or None) --------------------------------------------

def tenant_view(t, full):
    out = dict(t)
    if full:
        out["device_cas"] = [ca_view(c) for c in STORE.cas[t["name"]]]
        out["server_ca"] = fake_pem("CERTIFICATE", "edge-ca")
    return out


def ca_view(c):
    return {k: c[k] for k in ("id", "subject", "fingerprint", "not_after", "generated", "has_key",
                              "cert")}


def new_ca(tenant, spec):
    check_fields(spec, ("generate", "cn", "days", "cert", "key"))
    if "cert" in spec:
        cert = want_str(spec, "cert")
        if not cert.startswith("-----BEGIN CERTIFICATE-----"):
            raise bad("cert is not a PEM certificate")
        if "key" in spec:
            want_str(spec, "key")
        generated, has_key, cn = False, "key" in spec, "imported"
    else:
        if spec.get("generate") is not True:
            raise bad("generate must be true, or give cert")
        cn = want_str(spec, "cn") if "cn" in spec else "%s device CA" % tenant
        if "days" in spec:
            want_int(spec, "days", 1, 36500)
        generated, has_key = True, True
        cert = fake_pem("CERTIFICATE", "ca-%s-%d" % (tenant, STORE.ca_seq))
    STORE.ca_seq += 1
    return {"id": STORE.ca_seq, "subject": "CN=" + cn,
            "fingerprint": hashlib.sha256(cert.encode()).hexdigest(),
            "not_after": "2036-11-21T18:04:00Z", "generated": generated, "has_key": has_key,
            "cert": cert}


def tenant_fields(c, body, t, creating):
    if "hosts" in body:
        if not creating:
            c.operator_only()
        hosts = want_list(body, "hosts", HOST_RE)
        if not 1 <= len(hosts) <= 64:
            raise bad("hosts: 1 to 64 names")
        for other in STORE.tenants.values():
            if other["name"] != t["name"] and set(hosts) & set(other["hosts"]):
                raise conflict("a host belongs to tenant %s" % other["name"])
        t["hosts"] = hosts
    for key, schemes in (("origin", ("http://", "https://")), ("tcp_origin", ("tcp://", "tls://"))):
        if key in body:
            v = want_str(body, key, null_ok=True)
            if v is not None and not v.startswith(schemes):
                raise bad("%s must start with %s" % (key, " or ".join(schemes)))
            t[key] = v
    if "origin_ca" in body:
        t["origin_ca"] = want_str(body, "origin_ca", null_ok=True)
    if "quarantine_allow" in body:
        qa = want_list(body, "quarantine_allow", None)
        if any(not p.startswith("/") for p in qa):
            raise bad("quarantine_allow: paths start with /")
        t["quarantine_allow"] = qa
    if ("server_cert" in body) != ("server_key" in body):
        raise bad("server_cert and server_key go together")
    if "server_cert" in body:
        want_str(body, "server_cert"), want_str(body, "server_key")
    if not t.get("origin") and not t.get("tcp_origin"):
        raise bad("origin or tcp_origin is needed")


def h_tenants(c):
    if c.method == "GET":
        items = [tenant_view(t, False) for n, t in sorted(STORE.tenants.items())
                 if c.scope in (None, n)]
        return 200, {"items": items}
    c.operator_only()
    b = c.body
    check_fields(b, ("name", "hosts", "origin", "tcp_origin", "origin_ca", "quarantine_allow",
                     "server_cert", "server_key", "ca"), ("name", "hosts"))
    name = want_str(b, "name", NAME_RE)
    if name in STORE.tenants:
        raise conflict("tenant %s exists" % name)
    t = {"name": name, "hosts": [], "origin": None, "tcp_origin": None, "origin_ca": None,
         "quarantine_allow": [], "source": "api", "created_at": now(), "updated_at": now()}
    tenant_fields(c, b, t, True)
    ca = new_ca(name, b.get("ca", {"generate": True}))
    STORE.tenants[name], STORE.cas[name] = t, [ca]
    STORE.devices[name], STORE.rules[name] = {}, []
    c.log("tenant.create", name, name)
    return 201, tenant_view(t, True)


def h_tenant(c, name):
    t = c.tenant(name, write=c.method != "GET")
    if c.method == "GET":
        return 200, tenant_view(t, True)
    if c.method == "DELETE":
        c.operator_only()
        for d in (STORE.tenants, STORE.cas, STORE.devices, STORE.rules):
            del d[name]
        c.log("tenant.delete", name, name)
        return 204, None
    check_fields(c.body, ("hosts", "origin", "tcp_origin", "origin_ca", "quarantine_allow",
                          "server_cert", "server_key"))
    new = dict(t)
    tenant_fields(c, c.body, new, False)
    new["updated_at"] = now()
    STORE.tenants[name] = new
    c.log("tenant.update", name, name)
    return 200, tenant_view(new, True)


def h_cas(c, name):
    c.tenant(name, write=c.method != "GET")
    if c.method == "GET":
        return 200, {"items": [ca_view(x) for x in STORE.cas[name]]}
    ca = new_ca(name, c.body)
    STORE.cas[name].append(ca)
    c.log("ca.create", name, "%s/%d" % (name, ca["id"]))
    return 201, ca_view(ca)


def h_ca(c, name, cid):
    c.tenant(name, write=True)
    cas = STORE.cas[name]
    match = [x for x in cas if str(x["id"]) == cid]
    if not match:
        raise not_found("no CA %s in tenant %s" % (cid, name))
    if len(cas) == 1:
        raise conflict("the tenant's last CA")
    cas.remove(match[0])
    c.log("ca.delete", name, "%s/%s" % (name, cid))
    return 204, None


def device_view(d, certs):
    out = {k: v for k, v in d.items() if k != "certificates"}
    if certs:
        out["certificates"] = d["certificates"]
    return out


def issue(c, tenant, d, body):
    """A certificate (and in factory mode a key) for d: the enroll/renew answer's extras."""
    csr = body.get("csr")
    if csr is not None and not want_str(body, "csr").startswith(
            "-----BEGIN CERTIFICATE REQUEST-----"):
        raise bad("csr is not a PEM certificate request")
    days = want_int(body, "days", 1, 3650) if "days" in body else 730
    n = len(d["certificates"])
    cert = fake_pem("CERTIFICATE", "%s/%s/%d" % (tenant, d["id"], n))
    d["certificates"].append({
        "serial": hashlib.sha256(cert.encode()).hexdigest()[:16].upper(),
        "fingerprint": hashlib.sha256(cert.encode()).hexdigest(),
        "not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + days * 86400)),
        "issued_at": "2026-11-23T18:%02d:00Z" % n, "revoked_at": None})
    extra = {"certificate": cert, "ca": STORE.cas[tenant][-1]["cert"],
             "server_ca": fake_pem("CERTIFICATE", "edge-ca")}
    if csr is None:
        extra["key"] = fake_pem("PRIVATE KEY", "key-%s-%d" % (d["id"], n))
    return extra


def device_attrs(body, d):
    for key, maxlen in (("model", 128), ("firmware", 64), ("owner", 256)):
        if key in body:
            d[key] = want_str(body, key, null_ok=True, maxlen=maxlen)
    if "tags" in body:
        d["tags"] = [] if body["tags"] is None else want_list(body, "tags", DEVICE_RE)


def h_devices(c, name):
    c.tenant(name, write=c.method != "GET")
    devs = STORE.devices[name]
    if c.method == "GET":
        q = c.query
        for k in q:
            if k not in ("state", "model", "firmware", "tag", "limit", "after"):
                raise bad("unknown parameter %s" % k)
        limit = q.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise bad("limit: 1..1000")
        items = [d for i, d in sorted(devs.items())
                 if (q.get("after") is None or i > q["after"])
                 and all(q.get(k) in (None, d[k]) for k in ("state", "model", "firmware"))
                 and (q.get("tag") is None or q["tag"] in d["tags"])]
        page = items[:int(limit)]
        nxt = page[-1]["id"] if len(items) > len(page) else None
        return 200, {"items": [device_view(d, False) for d in page], "next": nxt}
    b = c.body
    check_fields(b, ("id", "model", "firmware", "tags", "owner", "days", "csr"), ("id",))
    did = want_str(b, "id", DEVICE_RE)
    if did in devs:
        raise conflict("device %s exists in tenant %s" % (did, name))
    d = {"id": did, "tenant": name, "model": None, "firmware": None, "tags": [], "owner": None,
         "state": "active", "certificates": [], "created_at": now(), "updated_at": now()}
    device_attrs(b, d)
    extra = issue(c, name, d, b)
    devs[did] = d
    c.log("device.enroll", name, "%s/%s" % (name, did))
    out = device_view(d, True)
    out.update(extra)
    return 201, out


def h_device(c, name, did, action=None):
    c.tenant(name, write=c.method != "GET")
    d = STORE.devices[name].get(did)
    if d is None:
        raise not_found("no device %s in tenant %s" % (did, name))
    if action == "stats":
        return 200, {"device": did, "requests": 10, "blocked": 1, "bytes_in": 100,
                     "bytes_out": 2000, "last_seen": None, "connected_now": 0}
    if action is None and c.method == "GET":
        return 200, device_view(d, True)
    if action is None and c.method == "DELETE":
        del STORE.devices[name][did]
        c.log("device.delete", name, "%s/%s" % (name, did))
        return 204, None
    if action is None:
        check_fields(c.body, ("model", "firmware", "tags", "owner"))
        device_attrs(c.body, d)
    elif action == "renew":
        check_fields(c.body, ("csr", "days", "revoke_previous"))
        if d["state"] == "revoked":
            raise conflict("device %s is revoked" % did)
        if c.body.get("revoke_previous", False) is True:
            for cert in d["certificates"]:
                cert["revoked_at"] = cert["revoked_at"] or now()
        extra = issue(c, name, d, c.body)
        c.log("device.renew", name, "%s/%s" % (name, did))
        out = device_view(d, True)
        out.update(extra)
        return 200, out
    else:
        check_fields(c.body, ())
        moves = {"quarantine": ("active", "quarantined"), "release": ("quarantined", "active"),
                 "revoke": (None, "revoked")}
        frm, to = moves[action]
        if (frm is not None and d["state"] != frm) or d["state"] == "revoked":
            raise conflict("device %s is %s" % (did, d["state"]))
        d["state"] = to
    d["updated_at"] = now()
    c.log("device." + (action or "update"), name, "%s/%s" % (name, did))
    return 200, device_view(d, True)


RULE_FIELDS = ("name", "expr", "action", "mode", "scope", "status", "body", "description",
               "reference", "enabled", "position")


def compile_expr(expr):
    """The fake compiler: "pth" is an unknown field, everything else compiles."""
    for lineno, line in enumerate(expr.split("\n"), 1):
        m = re.search(r"[\w.]*pth", line)
        if m:
            msg = "unknown field " + m.group()
            err = {"line": lineno, "col": m.start() + 1, "message": msg,
                   "caret": line + "\n" + " " * m.start() + "^"}
            raise ApiError(422, "invalid_rule", "%d:%d: %s" % (lineno, m.start() + 1, msg),
                           {"errors": [err]})


def rule_fields(b, r):
    for key, choices in (("action", ("block", "log", "allow", "close")),
                         ("mode", ("enforce", "dry-run")), ("scope", ("http", "tcp"))):
        if key in b and b[key] not in choices:
            raise bad("%s: one of %s" % (key, ", ".join(choices)))
        r[key] = b.get(key, r[key])
    for key in ("name", "expr"):
        if key in b:
            r[key] = want_str(b, key)
    for key in ("body", "description", "reference"):
        if key in b:
            r[key] = want_str(b, key, null_ok=True)
    if "status" in b:
        r["status"] = None if b["status"] is None else want_int(b, "status", 100, 599)
    if "position" in b:
        r["position"] = want_int(b, "position", -10 ** 9, 10 ** 9)
    if "enabled" in b:
        if not isinstance(b["enabled"], bool):
            raise bad("enabled must be a boolean")
        r["enabled"] = b["enabled"]
    if (r["status"] is not None or r["body"] is not None) and r["action"] != "block":
        raise bad("status and body only with block")
    compile_expr(r["expr"])


def h_rules(c, name):
    c.tenant(name, write=c.method != "GET")
    rules = STORE.rules[name]
    if c.method == "GET":
        return 200, {"items": sorted(rules, key=lambda r: r["position"])}
    b = c.body
    check_fields(b, ("id",) + RULE_FIELDS, ("name", "expr"))
    rid = want_str(b, "id", RULE_RE) if "id" in b else re.sub(r"[^a-z0-9_.:-]", "-",
                                                                   b["name"].lower())[:64]
    if any(r["id"] == rid for r in rules):
        if "id" in b:
            raise conflict("rule %s exists" % rid)
        n = 2
        while any(r["id"] == "%s-%d" % (rid, n) for r in rules):
            n += 1
        rid = "%s-%d" % (rid, n)
    r = {"id": rid, "name": None, "expr": None, "action": "block", "mode": "enforce",
         "scope": "http", "status": None, "body": None, "description": None, "reference": None,
         "enabled": True, "position": max([x["position"] for x in rules] + [0]) + 10,
         "hits": {"enforce": 0, "dry_run": 0}, "created_at": now(), "updated_at": now()}
    rule_fields(b, r)
    rules.append(r)
    c.log("rule.create", name, "%s/%s" % (name, rid))
    return 201, r


def h_rule(c, name, rid, action=None):
    if rid == "validate" and action is None and c.method == "POST":
        c.tenant(name)
        check_fields(c.body, ("expr", "scope"), ("expr",))
        compile_expr(want_str(c.body, "expr"))
        return 200, {"valid": True}
    c.tenant(name, write=c.method != "GET")
    rules = STORE.rules[name]
    match = [r for r in rules if r["id"] == rid]
    if not match:
        raise not_found("no rule %s in tenant %s" % (rid, name))
    r = match[0]
    if action == "stats":
        return 200, {"rule": rid, "hits": r["hits"]}
    if action in ("enable", "disable"):
        check_fields(c.body, ())
        r["enabled"] = action == "enable"
    elif c.method == "GET":
        return 200, r
    elif c.method == "DELETE":
        rules.remove(r)
        c.log("rule.delete", name, "%s/%s" % (name, rid))
        return 204, None
    else:
        check_fields(c.body, RULE_FIELDS)
        new = dict(r)
        rule_fields(c.body, new)
        r.update(new)
    r["updated_at"] = now()
    c.log("rule." + (action or "update"), name, "%s/%s" % (name, rid))
    return 200, r


def h_stats(c, name):
    c.tenant(name)
    return 200, {"tenant": name, "requests": 120, "blocked": 3, "bytes_in": 51200,
                 "bytes_out": 88000, "connections_now": 4, "devices": len(STORE.devices[name]),
                 "devices_connected": 0,
                 "rules": [{"id": r["id"], "hits": r["hits"]} for r in STORE.rules[name]]}


def token_view(t):
    return {k: t[k] for k in ("id", "name", "tenant", "created_at", "last_used_at")}


def h_tokens(c, tid=None):
    c.operator_only()
    if c.method == "GET":
        return 200, {"items": [token_view(t) for t in STORE.tokens.values()]}
    if c.method == "DELETE":
        if tid not in STORE.tokens:
            raise not_found("no token %s" % tid)
        operators = [t for t in STORE.tokens.values() if t["tenant"] is None]
        if tid == c.actor and len(operators) == 1:
            raise conflict("the last operator token cannot delete itself")
        del STORE.tokens[tid]
        c.log("token.delete", None, tid)
        return 204, None
    check_fields(c.body, ("name", "tenant"), ("name",))
    name = want_str(c.body, "name", maxlen=128)
    tenant = want_str(c.body, "tenant", NAME_RE) if "tenant" in c.body else None
    if tenant is not None and tenant not in STORE.tenants:
        raise not_found("no tenant %s" % tenant)
    out = STORE.new_token(name, tenant)
    c.log("token.create", tenant, out["id"])
    return 201, out


def h_audit(c):
    q = c.query
    limit = q.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise bad("limit: 1..1000")
    before = int(q["before"]) if q.get("before", "").isdigit() else None
    items = [e for e in reversed(STORE.audit)
             if (before is None or e["seq"] < before) and c.scope in (None, e["tenant"])]
    page = items[:int(limit)]
    nxt = page[-1]["seq"] if len(items) > len(page) else None
    return 200, {"items": page, "next": nxt}


# routes: (method set, pattern of segments after "v1", handler); "*" is a parameter
ROUTES = [
    ({"GET", "POST"}, ["tenants"], h_tenants),
    ({"GET", "PATCH", "DELETE"}, ["tenants", "*"], h_tenant),
    ({"GET", "POST"}, ["tenants", "*", "cas"], h_cas),
    ({"DELETE"}, ["tenants", "*", "cas", "*"], h_ca),
    ({"GET", "POST"}, ["tenants", "*", "devices"], h_devices),
    ({"GET", "PATCH", "DELETE"}, ["tenants", "*", "devices", "*"], h_device),
    ({"POST"}, ["tenants", "*", "devices", "*", "quarantine|release|revoke|renew"], h_device),
    ({"GET"}, ["tenants", "*", "devices", "*", "stats"], h_device),
    ({"GET", "POST"}, ["tenants", "*", "rules"], h_rules),
    ({"GET", "PATCH", "DELETE", "POST"}, ["tenants", "*", "rules", "*"], h_rule),
    ({"POST"}, ["tenants", "*", "rules", "*", "enable|disable"], h_rule),
    ({"GET"}, ["tenants", "*", "rules", "*", "stats"], h_rule),
    ({"GET"}, ["tenants", "*", "stats"], h_stats),
    ({"GET", "POST"}, ["tokens"], h_tokens),
    ({"DELETE"}, ["tokens", "*"], h_tokens),
    ({"GET"}, ["audit"], h_audit),
]


def route(segs):
    for methods, pattern, handler in ROUTES:
        if len(pattern) != len(segs):
            continue
        params = []
        for i, (p, s) in enumerate(zip(pattern, segs)):
            if p == "*":
                params.append(s)
            elif s not in p.split("|"):
                break
            elif i == 4:  # .../{id}/<action>: the handler gets the action
                params.append(s)
        else:
            return methods, handler, params
    return None, None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-moatd"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_ADMIN_LOG"):
            sys.stderr.write("fake_admin: " + fmt % args + "\n")

    def send(self, status, body, headers=None):
        data = b"" if body is None else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authenticate(self):
        """(scope, actor id) of the bearer token, or ApiError 401/429."""
        src = self.client_address[0]
        fails = [t for t in STORE.failures.get(src, []) if t > time.time() - 60]
        STORE.failures[src] = fails
        if len(fails) >= 10:
            raise ApiError(429, "too_many_requests", "too many failed authentications",
                           headers={"Retry-After": "60"})
        m = re.match(r"^Bearer moat_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$",
                     self.headers.get("Authorization", ""))
        tok = STORE.tokens.get(m.group(1)) if m else None
        if tok is None or not secrets.compare_digest(
                tok["hash"], hashlib.sha256(m.group(2).encode()).digest()):
            fails.append(time.time())
            raise ApiError(401, "unauthorized", "no valid token")
        tok["last_used_at"] = now()
        return tok["tenant"], tok["id"]

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            raise ApiError(411, "length_required", "chunked bodies are not accepted")
        length = self.headers.get("Content-Length")
        if length is None:
            if self.command in ("POST", "PATCH"):
                raise ApiError(411, "length_required", "Content-Length is required")
            return None
        n = int(length)
        if n > 1024 * 1024:
            raise ApiError(413, "payload_too_large", "the body is over 1 MiB")
        raw = self.rfile.read(n)
        if n == 0:
            return None
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "unsupported_media_type", "the body must be application/json")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise bad("malformed JSON: %s" % e)

    def handle_one(self):
        url = urllib.parse.urlsplit(self.path)
        raw_segs = url.path.split("/")
        segs = [urllib.parse.unquote(s) for s in raw_segs[1:]]
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self.read_body()
        if url.path == "/fake/degrade":
            STORE.degraded = True
            return 204, None
        if segs[:1] != ["v1"]:
            raise not_found("no such path")
        segs = segs[1:]
        if segs in (["health"], ["version"]):
            if self.command != "GET":
                raise ApiError(405, "method_not_allowed", "GET only", headers={"Allow": "GET"})
            if segs == ["version"]:
                return 200, {"version": "0.1.0", "api": "v1", "schema": 1}
            return (503 if STORE.degraded else 200), {
                "status": "degraded" if STORE.degraded else "ok", "generation": 12,
                "uptime_s": int(time.time() - STORE.started),
                "store": "failed" if STORE.degraded else "ok"}
        with STORE.lock:
            scope, actor = self.authenticate()
            methods, handler, params = route(segs)
            if handler is None:
                raise not_found("no such path")
            if self.command not in methods:
                raise ApiError(405, "method_not_allowed", "method not allowed",
                               headers={"Allow": ", ".join(sorted(methods))})
            if self.command in ("POST", "PATCH") and body is None:
                body = {}
            c = Call(self.command, segs, query, body, scope, actor, self.client_address[0])
            return handler(c, *params)

    def dispatch(self):
        try:
            status, body = self.handle_one()
            self.send(status, body)
        except ApiError as e:
            out = {"error": e.error, "detail": e.detail}
            out.update(e.extra)
            self.send(e.status, out, e.headers)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = dispatch


def serve(port=0, cert=None, key=None):
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    if cert is not None:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# ---- selftest -------------------------------------------------------------------------------

class Checker:
    def __init__(self, moatctl, port, home):
        self.moatctl, self.port, self.home = moatctl, port, home
        self.failed = 0
        self.count = 0

    def run(self, *args, rc=0, out=(), err=(), stdin=None, env=None, token=True, exact=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
        e.update({"HOME": self.home, "XDG_CONFIG_HOME": "",
                  "MOAT_SERVER": "http://127.0.0.1:%d" % self.port})
        if token:
            e["MOAT_TOKEN"] = STORE.operator
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        p = subprocess.run([self.moatctl] + list(args), capture_output=True, text=True,
                           env=e, input=stdin, timeout=30)
        self.count += 1
        problems = []
        if rc is not None and p.returncode != rc:
            problems.append("exit %d, wanted %d" % (p.returncode, rc))
        for s in ([out] if isinstance(out, str) else out):
            if s not in p.stdout:
                problems.append("stdout lacks %r" % s)
        if "Sanitizer" in p.stderr:
            problems.append("a sanitizer report")
        for s in ([err] if isinstance(err, str) else err):
            if s not in p.stderr:
                problems.append("stderr lacks %r" % s)
        if exact is not None and p.stdout != exact:
            problems.append("stdout is not exactly %r" % exact)
        if problems:
            self.failed += 1
            print("FAIL moatctl %s\n  %s\n  --- stdout\n%s  --- stderr\n%s" % (
                " ".join(args), "\n  ".join(problems), p.stdout, p.stderr))
        return p

    def json(self, *args, **kw):
        p = self.run("--json", *args, **kw)
        try:
            return json.loads(p.stdout) if p.stdout.strip() else None
        except ValueError:
            self.failed += 1
            print("FAIL moatctl --json %s: not JSON:\n%s" % (" ".join(args), p.stdout))
            return None

    def check(self, cond, what):
        self.count += 1
        if not cond:
            self.failed += 1
            print("FAIL " + what)


def selftest(moatctl):
    srv = serve()
    port = srv.server_address[1]
    with tempfile.TemporaryDirectory() as home:
        t = Checker(os.path.abspath(moatctl), port, home)
        checks_basic(t)
        checks_tenants(t, home)
        checks_devices(t, home)
        checks_rules(t, home)
        checks_tokens_audit(t)
        checks_config(t, home)
        checks_tls(t, home)
        checks_failures(t)
    srv.shutdown()
    print("%d checks, %d failed" % (t.count, t.failed))
    return 1 if t.failed else 0


def checks_basic(t):
    t.run("--version", out="moatctl 0.1.0", token=False)
    t.run(rc=2, err="Commands:")
    t.run("--help", out="Exit codes", token=False)
    t.run("device", "enroll", "--help", out="usage: moatctl device enroll")
    t.run("help", "rule", "add", out="--expr EXPR")
    t.run("frobnicate", rc=2, err="unknown command")
    t.run("device", "frob", rc=2, err="unknown command 'device frob'")
    t.run("device", rc=2, err="device needs a command")
    t.run("tenant", "show", rc=2, err=["missing arguments", "usage: moatctl tenant show NAME"])
    t.run("tenant", "show", "a", "b", rc=2, err="unexpected argument 'b'")
    t.run("tenant", "list", "--frob", rc=2, err="unknown option --frob")
    t.run("tenant", "list", "--server", rc=2, err="--server needs a value")
    t.run("health", out=["status:", "ok", "generation:"], token=False)
    t.run("version", out=["moatctl:", "server:", "0.1.0", "api:", "v1"], token=False)
    v = t.json("version", token=False)
    t.check(v == {"version": "0.1.0", "api": "v1", "schema": 1}, "version --json as received")
    t.run("--server", "http://127.0.0.1:1", "health", rc=8,
          err=["cannot connect", "is moatd running? admin_listen is 127.0.0.1:9900 by default"])
    t.run("health", "--timeout", "abc", rc=2, err="--timeout")
    t.run("tenant", "list", token=False, rc=5, err=["unauthorized, HTTP 401", "no token was given"])
    t.run("tenant", "list", "--token", "moat_0000000000000000_" + "A" * 43, rc=5,
          err=["(unauthorized, HTTP 401)", "check --token / MOAT_TOKEN"])
    t.run("--json", "tenant", "list", out='"items"')


def checks_tenants(t, home):
    ca = os.path.join(home, "ca.pem")
    with open(ca, "w") as f:
        f.write(fake_pem("CERTIFICATE", "imported"))
    t.run("tenant", "add", "acme", "--origin", "http://127.0.0.1:8080", rc=2, err="--host")
    t.run("tenant", "add", "acme", "--host", "acme.test", "--host", "*.acme.test",
          "--origin", "http://127.0.0.1:8080", "--quarantine-allow", "/firmware/",
          out=["name:", "acme", "hosts:", "acme.test,*.acme.test", "device CAs:", "SUBJECT",
               "CN=acme device CA", "server_ca:", "(PEM, 1 certificate)"])
    t.run("tenant", "add", "acme", "--host", "x.test", "--origin", "http://h:1", rc=4,
          err="(conflict, HTTP 409)")
    t.run("tenant", "add", "other", "--host", "acme.test", "--origin", "http://h:1", rc=4)
    t.run("tenant", "add", "Bad_Name", "--host", "b.test", "--origin", "http://h:1", rc=6,
          err="(bad_request, HTTP 400)")
    t.run("tenant", "add", "imp", "--host", "imp.test", "--tcp-origin", "tcp://127.0.0.1:1883",
          "--ca-cert", ca, out="CN=imported")
    t.run("tenant", "add", "gen", "--host", "gen.test", "--origin", "http://h:1",
          "--ca-cn", "Gen CA", "--ca-days", "100", out="CN=Gen CA")
    t.run("tenant", "add", "x", "--host", "x.test", "--origin", "http://h:1", "--ca-key", ca,
          rc=2, err="--ca-key needs --ca-cert")
    t.run("tenant", "add", "x", "--host", "x.test", "--origin", "http://h:1",
          "--server-cert", ca, rc=2, err="go together")
    t.run("tenant", "add", "x", "--host", "x.test", "--origin", "http://h:1",
          "--origin-ca", "/nonexistent", rc=2, err="cannot read /nonexistent")
    p = t.run("tenant", "list", out=["NAME", "HOSTS", "acme", "cfg", "config"])
    lines = p.stdout.splitlines()
    t.check(len(lines) == 5 and lines[0].index("HOSTS") == lines[1].index("acme.test"),
            "tenant list columns line up:\n" + p.stdout)
    t.check(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d\s*$", lines[1]) is not None,
            "tenant list shortens times:\n" + p.stdout)
    t.run("tenant", "show", "nope", rc=3, err="no tenant nope (not_found, HTTP 404)")
    j = t.json("tenant", "show", "acme")
    t.check(j is not None and j["server_ca"].startswith("-----BEGIN") and j["device_cas"],
            "tenant show --json has the PEM")
    t.run("tenant", "set", "acme", rc=2, err="nothing to change")
    t.run("tenant", "set", "acme", "--tcp-origin", "tcp://127.0.0.1:1", "--quarantine-allow", "",
          out=["tcp_origin:", "tcp://127.0.0.1:1", "quarantine_allow:"])
    j = t.json("tenant", "show", "acme")
    t.check(j is not None and j["quarantine_allow"] == [], "--quarantine-allow '' clears")
    t.run("tenant", "set", "acme", "--origin", "", out="origin:")
    j = t.json("tenant", "show", "acme")
    t.check(j is not None and j["origin"] is None, "--origin '' clears")
    t.run("tenant", "set", "acme", "--origin", "http://127.0.0.1:8080")
    t.run("tenant", "set", "cfg", "--origin", "http://h:2", rc=4, err="read-only")
    t.run("tenant", "show", "boom", rc=7, err="(internal, HTTP 500)")
    t.run("tenant", "rm", "gen", rc=2, err="--yes", stdin="")
    t.run("tenant", "rm", "gen", "--yes", out="deleted tenant gen")
    t.run("tenant", "rm", "gen", "--yes", rc=3)
    # CAs
    t.run("ca", "list", "acme", out=["ID", "SUBJECT", "GENERATED", "yes"])
    t.run("ca", "add", "acme", "--generate", "--cn", "acme CA 2", "--days", "365",
          out=["subject:", "CN=acme CA 2", "cert:", "(PEM, 1 certificate)"])
    t.run("ca", "add", "acme", "--cert", ca, "--key", ca, out="CN=imported")
    t.run("ca", "add", "acme", "--cert", ca, "--generate", rc=2)
    t.run("ca", "add", "acme", "--days", "x", rc=2, err="whole number")
    cas = t.json("ca", "list", "acme")["items"]
    t.run("ca", "rm", "acme", str(cas[-1]["id"]), out="deleted CA")
    t.run("ca", "rm", "acme", "9999", rc=3)
    t.run("ca", "rm", "imp", str(t.json("ca", "list", "imp")["items"][0]["id"]), rc=4,
          err="last CA")


def checks_devices(t, home):
    out = os.path.join(home, "cam-0001") + "/"
    t.run("device", "enroll", "acme", "cam-0001", "--model", "cam-x", rc=2, err="--out DIR")
    t.run("device", "enroll", "acme", "cam/1", "--out", out, rc=2, err="not a device id")
    t.run("device", "enroll", "acme", "cam-0001", "--model", "cam-x", "--firmware", "1.2.0",
          "--tag", "outdoor", "--tag", "batch-7", "--owner", "ops@acme.example", "--out", out,
          out=["enrolled cam-0001 in acme: certificate", "valid until",
               "cam-0001.key (private key, mode 0600)", "cam-0001.crt", "ca.crt",
               "server-ca.crt"])
    for name, mode in (("cam-0001.key", 0o600), ("cam-0001.crt", 0o644), ("ca.crt", 0o644),
                       ("server-ca.crt", 0o644)):
        path = os.path.join(out, name)
        t.check(os.path.exists(path) and os.stat(path).st_mode & 0o777 == mode,
                "%s written with mode %o" % (name, mode))
    t.check(os.stat(out).st_mode & 0o777 == 0o700, "--out DIR created 0700")
    t.check(open(os.path.join(out, "cam-0001.key")).read().startswith("-----BEGIN PRIVATE KEY"),
            "the key file holds the key")
    # refuses to overwrite, before asking the server (no device cam-0001 twice: no 409)
    t.run("device", "enroll", "acme", "cam-0002", "--out", out, "--csr", "/nonexistent", rc=2)
    open(os.path.join(out, "cam-0002.crt"), "w").close()
    t.run("device", "enroll", "acme", "cam-0002", "--out", out, rc=2,
          err="cam-0002.crt exists (--force overwrites it)")
    t.run("device", "show", "acme", "cam-0002", rc=3)
    t.run("device", "enroll", "acme", "cam-0001", "--out", out, "--force", rc=4,
          err="device cam-0001 exists in tenant acme (conflict, HTTP 409)")
    csr = os.path.join(home, "c.csr")
    with open(csr, "w") as f:
        f.write(fake_pem("CERTIFICATE REQUEST", "csr"))
    out2 = os.path.join(home, "csr")
    t.run("device", "enroll", "acme", "cam:0002", "--csr", csr, "--out", out2, "--days", "30",
          out="enrolled cam:0002")
    t.check(not os.path.exists(os.path.join(out2, "cam:0002.key")) and
            os.path.exists(os.path.join(out2, "cam:0002.crt")), "CSR mode writes no key")
    j = t.json("device", "enroll", "acme", "cam-0003", "--out", os.path.join(home, "c3"))
    t.check(j is not None and "key" not in j and j["certificate"].startswith("-----BEGIN"),
            "enroll --json leaves the key out")
    t.check(os.path.exists(os.path.join(home, "c3", "cam-0003.key")), "--json still writes key")
    for i in range(4, 12):  # one directory for a batch: the shared CA files are kept
        t.run("device", "enroll", "acme", "cam-%04d" % i, "--model", "cam-y", "--out",
              os.path.join(home, "many"), out="kept" if i > 4 else "wrote")
    odd = os.path.join(home, "odd")
    os.makedirs(odd)
    with open(os.path.join(odd, "ca.crt"), "w") as f:
        f.write(fake_pem("CERTIFICATE", "another CA"))
    t.run("device", "enroll", "acme", "odd-1", "--out", odd, rc=1,
          out=["odd-1.key", "server-ca.crt"], err="ca.crt holds another certificate")
    t.check(os.path.exists(os.path.join(odd, "odd-1.crt")), "the device files still written")
    t.run("device", "rm", "acme", "odd-1")
    p = t.run("device", "list", "acme", out=["ID", "MODEL", "STATE", "cam-0001", "cam:0002",
                                             "outdoor,batch-7", "active"])
    t.run("device", "list", "acme", "--limit", "3", out="cam-0001", err="more: --after cam-0004")
    p = t.run("device", "list", "acme", "--limit", "3", "--all")
    t.check(len(p.stdout.splitlines()) == 12 and "more:" not in p.stderr,
            "--all follows every page:\n" + p.stdout)
    j = t.json("device", "list", "acme", "--limit", "2", "--all")
    t.check(j is not None and len(j["items"]) == 11 and j["next"] is None, "--all --json merges")
    j = t.json("device", "list", "acme", "--limit", "2", "--after", "cam-0004")
    t.check(j is not None and [d["id"] for d in j["items"]] == ["cam-0005", "cam-0006"],
            "--after pages")
    p = t.run("device", "list", "acme", "--model", "cam-y", "--all")
    t.check(len(p.stdout.splitlines()) == 9, "--model filters")
    t.run("device", "list", "acme", "--tag", "batch-7", out="cam-0001")
    t.run("device", "list", "acme", "--limit", "0", rc=2)
    t.run("device", "show", "acme", "cam:0002", out=["id:", "cam:0002", "certificates:",
                                                     "SERIAL", "FINGERPRINT"])
    t.run("device", "show", "acme", "nope", rc=3, err="no device nope in tenant acme")
    t.run("device", "set", "acme", "cam-0001", "--firmware", "1.3.0", "--clear-tags",
          "--owner", "", out=["firmware:", "1.3.0"])
    j = t.json("device", "show", "acme", "cam-0001")
    t.check(j is not None and j["tags"] == [] and j["owner"] is None and j["model"] == "cam-x",
            "device set changes only what is given")
    t.run("device", "set", "acme", "cam-0001", rc=2, err="nothing to change")
    t.run("device", "set", "acme", "cam-0001", "--tag", "a", "--clear-tags", rc=2)
    t.run("device", "set", "acme", "cam-0001", "--tag", "bad tag", rc=6)
    t.run("device", "quarantine", "acme", "cam-0001", out="quarantined cam-0001 of acme")
    t.run("device", "list", "acme", "--state", "quarantined", out="cam-0001")
    t.run("device", "quarantine", "acme", "cam-0001", rc=4)
    t.run("device", "release", "acme", "cam-0001", out="state: active")
    t.run("device", "renew", "acme", "cam-0001", "--out", out, rc=2, err="exists")
    t.run("device", "renew", "acme", "cam-0001", "--out", out, "--force", "--revoke-previous",
          out=["renewed cam-0001", "wrote"])
    j = t.json("device", "show", "acme", "cam-0001")
    t.check(j is not None and len(j["certificates"]) == 2 and
            j["certificates"][0]["revoked_at"] is not None, "renew --revoke-previous")
    t.run("device", "revoke", "acme", "cam-0001", out="state: revoked")
    t.run("device", "quarantine", "acme", "cam-0001", rc=4)
    t.run("device", "renew", "acme", "cam-0001", "--out", os.path.join(home, "r"), rc=4)
    t.run("device", "rm", "acme", "cam-0001", out="deleted device cam-0001")
    t.run("device", "rm", "acme", "cam-0001", rc=3)
    t.run("stats", "acme", out=["tenant:", "requests:", "120", "devices:"])
    t.run("stats", "acme", "--device", "cam:0002", out=["device:", "cam:0002", "last_seen:"])
    t.run("stats", "acme", "--device", "x", "--rule", "y", rc=2)


def checks_rules(t, home):
    t.run("rule", "add", "acme", "--expr", "true", rc=2, err="--name and --expr")
    t.run("rule", "add", "acme", "--name", "CVE-2026-0001 cgi injection", "--expr",
          'http.request.uri.path contains "/cgi-bin/"', "--mode", "dry-run", "--reference",
          "CVE-2026-0001", "--status", "403",
          out=["id:", "cve-2026-0001-cgi-injection", "mode:", "dry-run", "hits:",
               "enforce=0 dry_run=0"])
    expr = os.path.join(home, "r.expr")
    with open(expr, "w") as f:
        f.write('http.request.method == "TRACE"\n')
    j = t.json("rule", "add", "acme", "--name", "no trace", "--id", "no-trace", "--expr",
               "@" + expr, "--action", "close", "--position", "5", "--disabled")
    t.check(j is not None and j["expr"] == 'http.request.method == "TRACE"' and
            j["enabled"] is False and j["position"] == 5, "rule add --expr @FILE --disabled")
    t.run("rule", "add", "acme", "--name", "x", "--expr", "@/nonexistent", rc=2)
    t.run("rule", "add", "acme", "--name", "dup", "--id", "no-trace", "--expr", "true", rc=4)
    bad_expr = 'http.request.uri.path == "/" and http.request.pth == 1'
    p = t.run("rule", "add", "acme", "--name", "bad", "--expr", bad_expr, rc=6,
              err=["1:34: unknown field http.request.pth (invalid_rule, HTTP 422)",
                   "  " + bad_expr])
    t.check("\n  " + " " * 33 + "^\n" in p.stderr, "the caret sits under the error:\n" + p.stderr)
    t.run("rule", "add", "acme", "--name", "x", "--expr", "true", "--action", "maybe", rc=6)
    t.run("rule", "add", "acme", "--name", "x", "--expr", "true", "--status", "99", rc=2)
    p = t.run("rule", "list", "acme", out=["POS", "ID", "ACTION", "no-trace", "close", "no"])
    t.check(p.stdout.splitlines()[1].split()[1] == "no-trace", "rules in evaluation order")
    t.run("rule", "show", "acme", "no-trace", out=["expr:", "TRACE", "enabled:", "no"])
    t.run("rule", "enable", "acme", "no-trace", out="enabled rule no-trace of acme")
    t.run("rule", "disable", "acme", "no-trace", out="disabled rule no-trace")
    t.run("rule", "set", "acme", "no-trace", "--mode", "dry-run", "--description", "d",
          "--enabled", out=["mode:", "dry-run", "description:", "d", "enabled:", "yes"])
    t.run("rule", "set", "acme", "no-trace", "--description", "", out="description:")
    j = t.json("rule", "show", "acme", "no-trace")
    t.check(j is not None and j["description"] is None, "--description '' clears")
    t.run("rule", "set", "acme", "no-trace", "--expr", "a.pth", rc=6, err="^")
    t.run("rule", "set", "acme", "no-trace", rc=2, err="nothing to change")
    t.run("rule", "validate", "acme", "--expr", "true", out="valid")
    t.run("rule", "validate", "acme", "--expr", "tcp.pth", "--scope", "tcp", rc=6,
          err=["unknown field", "  tcp.pth\n  ^\n"])
    j = t.json("rule", "validate", "acme", "--expr", "x.pth", rc=6)
    t.check(j is not None and j["error"] == "invalid_rule" and j["errors"],
            "validate --json prints the 422")
    t.run("rule", "show", "acme", "nope", rc=3)
    j = t.json("rule", "add", "acme", "--name", "stdin", "--expr", "@-", "--body=-x",
               stdin='http.request.method == "X"\n')
    t.check(j is not None and j["expr"] == 'http.request.method == "X"' and j["body"] == "-x",
            "--expr @- reads stdin; --opt=value")
    t.run("rule", "rm", "acme", "stdin", "--json", exact="")
    t.run("device", "show", "acme", "--", "-x", rc=3, err="no device -x")
    t.run("device", "--help", out="moatctl device enroll")
    t.run("rule", "list", "imp", exact="", err="(none)")
    t.run("stats", "acme", "--rule", "no-trace", out=["rule:", "no-trace", "hits:"])
    t.run("stats", "acme", out=["rule hits:", "RULE", "no-trace"])
    t.run("rule", "rm", "acme", "no-trace", out="deleted rule no-trace of acme")
    t.run("rule", "rm", "acme", "no-trace", rc=3)


def checks_tokens_audit(t):
    p = t.run("token", "add", "ci", "--tenant", "acme", out=["token:", "moat_", "tenant:"],
              err="shown only now")
    tok = re.search(r"moat_[0-9a-f]{16}_\S+", p.stdout).group()
    tid = tok.split("_")[1]
    t.run("token", "list", out=["ID", "NAME", "LAST-USED", tid, "ci", "acme"])
    # a tenant token: its own tenant only, no operator actions
    t.run("tenant", "list", env={"MOAT_TOKEN": tok}, out="acme")
    p = t.run("tenant", "list", env={"MOAT_TOKEN": tok})
    t.check("imp" not in p.stdout, "a tenant token sees only its tenant")
    t.run("tenant", "show", "imp", env={"MOAT_TOKEN": tok}, rc=3)
    t.run("token", "list", env={"MOAT_TOKEN": tok}, rc=5,
          err=["(forbidden, HTTP 403)", "operator token"])
    t.run("tenant", "add", "zz", "--host", "zz.test", "--origin", "http://h:1",
          env={"MOAT_TOKEN": tok}, rc=5)
    t.run("--token", tok, "device", "list", "acme", out="cam:0002")  # flag beats env
    t.run("token", "rm", tid, out="deleted token " + tid)
    t.run("token", "rm", tid, rc=3)
    t.run("token", "rm", STORE.operator.split("_")[1], rc=4, err="cannot delete itself")
    t.run("audit", "--limit", "2", out=["SEQ", "TIME", "ACTION", "token.delete"],
          err="more: --before")
    j = t.json("audit", "--limit", "1")
    t.check(j is not None and j["items"][0]["detail"] == {} and j["next"] is not None,
            "audit --json as received")
    j2 = t.json("audit", "--limit", "1", "--before", str(j["next"]))
    t.check(j2 is not None and j2["items"][0]["seq"] < j["items"][0]["seq"], "audit --before")
    t.run("audit", "--limit", "x", rc=2)


def checks_config(t, home):
    cfgdir = os.path.join(home, ".config", "moat")
    os.makedirs(cfgdir, exist_ok=True)
    cfg = os.path.join(cfgdir, "config")
    port = t.port
    with open(cfg, "w") as f:
        f.write("# moatctl\nserver = 127.0.0.1:%d\ntoken = %s\n" % (port, STORE.operator))
    os.chmod(cfg, 0o644)
    t.run("tenant", "list", token=False, env={"MOAT_SERVER": None}, out="acme",
          err="readable by others")
    os.chmod(cfg, 0o600)
    p = t.run("tenant", "list", token=False, env={"MOAT_SERVER": None}, out="acme")
    t.check(p.stderr == "", "no warning for a 0600 config:\n" + p.stderr)
    # flag and environment beat the file
    t.run("tenant", "list", token=False, env={"MOAT_SERVER": "http://127.0.0.1:1"}, rc=8)
    t.run("tenant", "list", "--server", "http://127.0.0.1:1", token=False, rc=8)
    t.run("tenant", "list", env={"MOAT_SERVER": None, "MOAT_TOKEN": "moat_x"}, rc=5)
    tokfile = os.path.join(home, "op.token")
    with open(tokfile, "w") as f:
        f.write(STORE.operator + "\n")
    os.chmod(tokfile, 0o600)
    with open(cfg, "w") as f:
        f.write("[moat]\nserver = \"http://127.0.0.1:%d/\"\ntoken_file = %s\nbogus = 1\n" %
                (port, tokfile))
    t.run("tenant", "list", token=False, env={"MOAT_SERVER": None}, out="acme",
          err="unknown key 'bogus'")
    xdg = os.path.join(home, "xdg")
    os.makedirs(os.path.join(xdg, "moat"))
    with open(os.path.join(xdg, "moat", "config"), "w") as f:
        f.write("server = http://127.0.0.1:1\n")
    t.run("health", token=False, env={"MOAT_SERVER": None, "XDG_CONFIG_HOME": xdg}, rc=8)
    t.run("tenant", "list", token=False, env={"MOAT_TOKEN_FILE": tokfile}, out="acme")
    os.remove(cfg)


def checks_tls(t, home):
    cert, key = os.path.join(home, "admin.crt"), os.path.join(home, "admin.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    srv = serve(cert=cert, key=key)
    url = "https://127.0.0.1:%d" % srv.server_address[1]
    t.run("--server", url, "--cacert", cert, "tenant", "list", out="acme")
    t.run("tenant", "list", env={"MOAT_SERVER": url, "MOAT_CACERT": cert}, out="acme")
    t.run("--server", url, "health", rc=8, err=["TLS", "--cacert"])
    srv.shutdown()


def checks_failures(t):
    # 503 health still shows the health object
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:%d/fake/degrade" % t.port, method="POST", data=b""))
    t.run("health", rc=7, out="degraded", err="HTTP 503")
    j = t.json("health", rc=7)
    t.check(j is not None and j["status"] == "degraded", "health --json prints the 503")
    bad_tok = "moat_0000000000000000_" + "A" * 43
    for _ in range(10):  # earlier checks already failed a few times: 401s, then 429s
        t.run("tenant", "list", "--token", bad_tok, rc=None)
    t.run("tenant", "list", rc=1, err=["(too_many_requests, HTTP 429)", "retry in 60 s"])
    t.run("--timeout", "0.5", "--server", "http://127.0.0.1:%d" % blackhole(), "health", rc=8,
          err="no answer")


def blackhole():
    """A port that accepts but never answers (for the timeout)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    blackhole.sock = s  # kept open for the rest of the run
    return s.getsockname()[1]


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "selftest":
        return selftest(sys.argv[2])
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        port = int(sys.argv[3]) if len(sys.argv) >= 4 and sys.argv[2] == "--port" else 0
        srv = serve(port)
        print(srv.server_address[1], STORE.operator, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
