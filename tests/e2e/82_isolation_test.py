"""Tenant isolation in the admin API: two tenants A and B made through the API, a tenant token
for each. For every endpoint of docs/api.md, B's token against A's objects answers exactly
what it answers for objects that do not exist (404 for a tenant's objects, 403 for operator
actions), with the same error and the same detail once the names are taken out, and A is
unchanged afterwards (read back with the operator token). B's token cannot create or delete
tenants or tokens, nor list tokens; it lists only its own tenant and audit entries; A's own
token works on A's objects.

One moatd serves the whole module; every test makes its own pair of tenants.
"""

import json
import re

import pytest

from moattest.admin import (Api, assert_api_error, create_tenant, enroll, make_csr,
                            shared_moatd, unique)

GHOST = {"t": "ghost-tenant", "d": "ghost-device", "r": "ghost-rule", "c": "987654",
         "tok": "0123456789abcdef"}

# (method, path template, body): {t} a tenant, {d} one of its devices, {r} one of its rules,
# {c} one of its device CAs. Every tenant-scoped endpoint of docs/api.md.
TENANT_ENDPOINTS = [
    ("GET", "/tenants/{t}", None),
    ("PATCH", "/tenants/{t}", {"origin": "http://127.0.0.1:9"}),
    ("PATCH", "/tenants/{t}", {"quarantine_allow": ["/"]}),
    ("GET", "/tenants/{t}/cas", None),
    ("POST", "/tenants/{t}/cas", {"generate": True}),
    ("DELETE", "/tenants/{t}/cas/{c}", None),
    ("GET", "/tenants/{t}/devices", None),
    ("GET", "/tenants/{t}/devices?limit=1", None),
    ("POST", "/tenants/{t}/devices", {"id": "intruder"}),
    ("POST", "/tenants/{t}/devices", {"id": "{d}"}),
    ("GET", "/tenants/{t}/devices/{d}", None),
    ("PATCH", "/tenants/{t}/devices/{d}", {"firmware": "9.9.9"}),
    ("DELETE", "/tenants/{t}/devices/{d}", None),
    ("POST", "/tenants/{t}/devices/{d}/quarantine", None),
    ("POST", "/tenants/{t}/devices/{d}/release", None),
    ("POST", "/tenants/{t}/devices/{d}/revoke", None),
    ("POST", "/tenants/{t}/devices/{d}/renew", {}),
    ("POST", "/tenants/{t}/devices/{d}/renew", {"revoke_previous": True}),
    ("GET", "/tenants/{t}/devices/{d}/stats", None),
    ("GET", "/tenants/{t}/rules", None),
    ("POST", "/tenants/{t}/rules", {"name": "intruder", "expr": "true"}),
    ("POST", "/tenants/{t}/rules/validate", {"expr": "true"}),
    ("GET", "/tenants/{t}/rules/{r}", None),
    ("PATCH", "/tenants/{t}/rules/{r}", {"mode": "dry-run"}),
    ("DELETE", "/tenants/{t}/rules/{r}", None),
    ("POST", "/tenants/{t}/rules/{r}/enable", None),
    ("POST", "/tenants/{t}/rules/{r}/disable", None),
    ("GET", "/tenants/{t}/rules/{r}/stats", None),
    ("GET", "/tenants/{t}/stats", None),
]

# operator actions: 403 for a tenant token, whichever tenant (its own included)
OPERATOR_ENDPOINTS = [
    ("POST", "/tenants", {"name": "{new}", "hosts": ["{new}.test"],
                          "origin": "http://127.0.0.1:9"}),
    ("DELETE", "/tenants/{a}", None),
    ("DELETE", "/tenants/{b}", None),
    ("GET", "/tokens", None),
    ("POST", "/tokens", {"name": "more"}),
    ("POST", "/tokens", {"name": "more", "tenant": "{b}"}),
    ("POST", "/tokens", {"name": "more", "tenant": "{a}"}),
    ("DELETE", "/tokens/{a_tok}", None),
    ("DELETE", "/tokens/{b_tok}", None),
    ("PATCH", "/tenants/{b}", {"hosts": ["{b}.test", "{b}-2.test"]}),
]


@pytest.fixture(scope="module")
def node(moatd_bin, pki, nginx_server, tmp_path_factory):
    origin = f"http://127.0.0.1:{nginx_server.port}"
    with shared_moatd(moatd_bin, tmp_path_factory.mktemp("isolation"), pki, origin,
                      moat={"drain_timeout": "3s"}) as m:
        m.api = Api(m)
        m.origin_url = origin
        yield m


class Side:
    """One tenant with a device, a rule, its CA and a tenant token."""

    def __init__(self, m, tmp_path, prefix):
        api = m.api
        self.name = unique(prefix)
        create_tenant(api, self.name, f"{self.name}.test", m.origin_url)
        self.device = f"{self.name}-cam"
        enroll(api, self.name, self.device, tmp_path / self.name, model="cam-x",
               firmware="1.0.0")
        self.rule = f"{self.name}-rule"
        api.ok("POST", f"/tenants/{self.name}/rules",
               {"id": self.rule, "name": "r", "expr": 'http.request.uri.path eq "/x"'},
               status=201)
        (ca,) = api.ok("GET", f"/tenants/{self.name}/cas")["items"]
        self.ca = str(ca["id"])
        tok = api.ok("POST", "/tokens", {"name": f"{self.name}-token", "tenant": self.name},
                     status=201)
        self.token_id = tok["id"]
        self.api = api.with_token(tok["token"])

    def fill(self, template):
        return (template.replace("{t}", self.name).replace("{d}", self.device)
                .replace("{r}", self.rule).replace("{c}", self.ca))


@pytest.fixture
def pair(node, tmp_path):
    a = Side(node, tmp_path, "iso-a")
    b = Side(node, tmp_path, "iso-b")
    yield a, b
    # every change rebuilds the configuration, which costs more with every tenant: keep few
    for side in (a, b):
        r = node.api.delete(f"/tenants/{side.name}")
        assert r.status in (204, 404), r


def snapshot(node, side):
    """Everything the operator sees of a tenant (counters aside)."""
    api = node.api
    t = side.name
    out = {}
    for path in (f"/tenants/{t}", f"/tenants/{t}/cas", f"/tenants/{t}/devices",
                 f"/tenants/{t}/devices/{side.device}", f"/tenants/{t}/rules",
                 f"/tenants/{t}/rules/{side.rule}"):
        r = api.get(path)
        out[path] = (r.status, r.json)
    rule_docs = out[f"/tenants/{t}/rules"][1]["items"] + [out[f"/tenants/{t}/rules/{side.rule}"][1]]
    for rule in rule_docs:
        rule.pop("hits", None)  # counted by the workers, not a change
    out["tokens"] = sorted(json.dumps(x, sort_keys=True) for x in api.ok("GET", "/tokens")["items"]
                           if x["tenant"] == t and x["id"] != side.token_id)
    out["token ids"] = sorted(x["id"] for x in api.ok("GET", "/tokens")["items"]
                              if x["tenant"] == t)
    out["audit"] = [e["seq"] for e in api.ok("GET", "/audit?limit=100")["items"]
                    if e["tenant"] == t]
    return out


def fill_body(body, fill):
    if body is None:
        return None
    return json.loads(fill(json.dumps(body)))


def neutral(detail, names):
    """The detail with the given names replaced by placeholders."""
    for k, v in names.items():
        detail = re.sub(rf"(?<![\w-]){re.escape(v)}(?![\w-])", "{" + k + "}", detail)
    return detail


def template_id(case):
    method, path, body = case
    extra = ""
    if body:
        extra = "-" + "-".join(sorted(body))
    return f"{method} {path}{extra}"


@pytest.mark.parametrize("case", TENANT_ENDPOINTS, ids=[template_id(c) for c in TENANT_ENDPOINTS])
def test_other_tenants_objects_do_not_exist(node, pair, case):
    a, b = pair
    method, template, body = case
    before = snapshot(node, a)

    r = b.api.request(method, a.fill(template), fill_body(body, a.fill))
    doc = assert_api_error(r, 404, "not_found")

    def ghost_fill(s):
        return (s.replace("{t}", GHOST["t"]).replace("{d}", GHOST["d"])
                .replace("{r}", GHOST["r"]).replace("{c}", GHOST["c"]))
    g = b.api.request(method, ghost_fill(template), fill_body(body, ghost_fill))
    gdoc = assert_api_error(g, 404, "not_found")
    d_a = neutral(doc["detail"], {"t": a.name, "d": a.device, "r": a.rule, "c": a.ca})
    d_g = neutral(gdoc["detail"], {"t": GHOST["t"], "d": GHOST["d"], "r": GHOST["r"],
                                   "c": GHOST["c"]})
    assert d_a == d_g, f"the detail tells A's objects from missing ones: {doc} vs {gdoc}"
    assert set(doc) == set(gdoc), (doc, gdoc)

    after = snapshot(node, a)
    assert after == before, f"{method} {template} with B's token changed A"
    # and B's own token still works on B
    assert b.api.get(f"/tenants/{b.name}").status == 200


@pytest.mark.parametrize("case", OPERATOR_ENDPOINTS,
                         ids=[template_id(c) for c in OPERATOR_ENDPOINTS])
def test_operator_actions_are_forbidden(node, pair, case):
    a, b = pair
    method, template, body = case
    new = unique("iso-new")

    def fill(s):
        return (s.replace("{a_tok}", a.token_id).replace("{b_tok}", b.token_id)
                .replace("{new}", new).replace("{a}", a.name).replace("{b}", b.name))
    before_a, before_b = snapshot(node, a), snapshot(node, b)
    tenants_before = node.api.ok("GET", "/tenants")
    tokens_before = node.api.ok("GET", "/tokens")
    r = b.api.request(method, fill(template), fill_body(body, fill))
    assert_api_error(r, 403, "forbidden")
    assert node.api.ok("GET", "/tenants") == tenants_before
    tokens_after = node.api.ok("GET", "/tokens")
    strip = lambda items: sorted((x["id"], x["name"], x["tenant"]) for x in items)  # noqa
    assert strip(tokens_after["items"]) == strip(tokens_before["items"])
    assert snapshot(node, a) == before_a
    after_b = snapshot(node, b)
    assert after_b == before_b


def test_tenant_token_lists_only_its_tenant(node, pair):
    a, b = pair
    items = b.api.ok("GET", "/tenants")["items"]
    assert [t["name"] for t in items] == [b.name], items
    assert b.api.ok("GET", f"/tenants/{b.name}")["name"] == b.name
    # the config file's tenants are not its business either
    assert_api_error(b.api.get("/tenants/alpha"), 404, "not_found")
    assert_api_error(b.api.get("/tenants/alpha/devices"), 404, "not_found")
    names = {t["name"] for t in node.api.ok("GET", "/tenants")["items"]}
    assert {a.name, b.name, "alpha", "beta"} <= names


def test_tenant_token_sees_only_its_audit_entries(node, pair, tmp_path):
    a, b = pair
    # changes by both tenants' tokens and by the operator
    a.api.ok("PATCH", f"/tenants/{a.name}/devices/{a.device}", {"firmware": "1.0.1"})
    b.api.ok("PATCH", f"/tenants/{b.name}/devices/{b.device}", {"firmware": "1.0.1"})
    node.api.ok("POST", "/tokens", {"name": "operator-change"}, status=201)
    items = b.api.ok("GET", "/audit?limit=500")["items"]
    assert items, "B sees none of its own audit entries"
    assert all(e["tenant"] == b.name for e in items), \
        [e for e in items if e["tenant"] != b.name][:5]
    actors = {e["actor"] for e in items}
    assert b.token_id in actors, items
    actions = [e["action"] for e in items]
    assert any(x.startswith("device.") for x in actions), actions
    # the operator sees both
    everyone = node.api.ok("GET", "/audit?limit=500")["items"]
    assert {a.name, b.name} <= {e["tenant"] for e in everyone}
    # paging with before= stays within the tenant
    first = b.api.ok("GET", "/audit?limit=1")
    if first["next"] is not None:
        more = b.api.ok("GET", f"/audit?limit=500&before={first['next']}")["items"]
        assert all(e["tenant"] == b.name for e in more), more


def test_own_token_works_on_its_objects(node, pair, tmp_path):
    a, b = pair
    api = a.api
    t = a.name
    assert api.ok("GET", f"/tenants/{t}")["name"] == t
    assert api.ok("PATCH", f"/tenants/{t}", {"quarantine_allow": ["/firmware/"]})[
        "quarantine_allow"] == ["/firmware/"]
    assert len(api.ok("GET", f"/tenants/{t}/cas")["items"]) == 1
    ca = api.ok("POST", f"/tenants/{t}/cas", {"generate": True}, status=201)
    api.ok("DELETE", f"/tenants/{t}/cas/{ca['id']}", status=204)
    dev = enroll(api, t, "own-1", tmp_path / "own-1")
    assert dev.doc["tenant"] == t
    _, csr = make_csr(tmp_path, "own-2")
    api.ok("POST", f"/tenants/{t}/devices", {"id": "own-2", "csr": csr.read_text()}, status=201)
    ids = [d["id"] for d in api.ok("GET", f"/tenants/{t}/devices")["items"]]
    assert sorted(ids) == sorted([a.device, "own-1", "own-2"]), ids
    assert api.ok("PATCH", f"/tenants/{t}/devices/own-1", {"model": "m2"})["model"] == "m2"
    assert api.ok("POST", f"/tenants/{t}/devices/own-1/quarantine")["state"] == "quarantined"
    assert api.ok("POST", f"/tenants/{t}/devices/own-1/release")["state"] == "active"
    assert "key" in api.ok("POST", f"/tenants/{t}/devices/own-1/renew", {})
    assert api.ok("GET", f"/tenants/{t}/devices/own-1/stats")["device"] == "own-1"
    assert api.ok("POST", f"/tenants/{t}/devices/own-1/revoke")["state"] == "revoked"
    api.ok("DELETE", f"/tenants/{t}/devices/own-2", status=204)
    rule = api.ok("POST", f"/tenants/{t}/rules", {"name": "own", "expr": "false"}, status=201)
    assert api.ok("POST", f"/tenants/{t}/rules/validate", {"expr": "true"}) == {"valid": True}
    assert api.ok("GET", f"/tenants/{t}/rules/{rule['id']}")["id"] == rule["id"]
    assert api.ok("PATCH", f"/tenants/{t}/rules/{rule['id']}",
                  {"mode": "dry-run"})["mode"] == "dry-run"
    assert api.ok("POST", f"/tenants/{t}/rules/{rule['id']}/disable")["enabled"] is False
    assert api.ok("POST", f"/tenants/{t}/rules/{rule['id']}/enable")["enabled"] is True
    assert api.ok("GET", f"/tenants/{t}/rules/{rule['id']}/stats")["rule"] == rule["id"]
    api.ok("DELETE", f"/tenants/{t}/rules/{rule['id']}", status=204)
    assert api.ok("GET", f"/tenants/{t}/stats")["tenant"] == t
    # the other way round, one sample: A's token on B's device
    assert_api_error(api.get(f"/tenants/{b.name}/devices/{b.device}"), 404, "not_found")
    # what A did is in A's audit view, under A's token id
    mine = [e for e in api.ok("GET", "/audit?limit=500")["items"] if e["actor"] == a.token_id]
    assert len(mine) >= 10, mine


def test_deleting_a_tenant_deletes_its_tokens(node, pair):
    a, b = pair
    node.api.ok("DELETE", f"/tenants/{a.name}", status=204)
    assert_api_error(a.api.get(f"/tenants/{a.name}"), 401, "unauthorized")
    assert a.token_id not in {x["id"] for x in node.api.ok("GET", "/tokens")["items"]}
    assert b.api.get(f"/tenants/{b.name}").status == 200
    # the name can be taken again, and the old token does not come back with it
    create_tenant(node.api, a.name, f"{a.name}.test", node.origin_url)
    assert_api_error(a.api.get(f"/tenants/{a.name}"), 401, "unauthorized")
