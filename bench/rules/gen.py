#!/usr/bin/env python3
"""bench/rules/gen.py OUTDIR [N ...] - the rule sets, traffic and attacks of bench/rules.sh.

Writes, reproducibly (a fixed seed, no dependency beyond the standard library):

  moat-N.rules      N virtual patches in moatd's rule language (docs/rules.md), for each N
                    (default 100 and 1000); the N-rule set is the first N rules of the
                    longest, so the 100 rules are also the first 100 of the 1,000
  modsec-N.conf     the same N patches as ModSecurity SecRules (SecRuleEngine On, nothing else)
  devices.ini       moatd's device record of the bench device (the `devices` file)
  requests.txt      the benign request mix that loadgen sends (none of the rules matches it)
  attacks.txt       attack requests, each with the rule it is aimed at
  sanity.txt        one attack of each kind on the first 100 rules, for the check that both
                    engines block them before anything is measured

Each rule is one of twelve kinds of IoT virtual patch, in fixed proportions in every block of
100 rules: command injection through a CGI argument (a regular expression on one argument),
path traversal in a vendor path, exploit paths (== or in {...}), payloads in a header, scanner
and exploit-kit user agents, payloads in a query argument, a model and firmware range with a
path, a source address range with an admin path, a method with a path prefix, a regular
expression on the path, a substring of the query or a suspicious argument name, and a debug
header on a path. About a tenth of the rules that start with a path test use a path of the
benign traffic, so their second condition is evaluated too, as it would be in a real fleet
where patches cover endpoints in use.

Translation to ModSecurity (one SecRule per condition, `chain` for `and`, phase 1):
  http.request.uri.path       REQUEST_FILENAME with t:normalizePath (ModSecurity v3 decodes
                              it once, like moatd's normalised path)
  http.request.uri.path.raw   REQUEST_URI_RAW (it includes the query; no benign query
                              contains what the rules look for)
  http.request.uri.args["a"]  ARGS_GET:a            http.request.uri.args.names  ARGS_GET_NAMES
  http.request.uri.query      QUERY_STRING          http.request.method          REQUEST_METHOD
  http.request.headers["h"]   REQUEST_HEADERS:h     http.user_agent      REQUEST_HEADERS:User-Agent
  count(headers["h"]) > 0     &REQUEST_HEADERS:h "@gt 0"
  ip.src in {...}             REMOTE_ADDR "@ipMatch ..."
  lower(), url_decode()       t:lowercase, t:urlDecodeUni
  contains / starts_with      @contains / @beginsWith
  == / in {...}               @streq / @rx ^(?:a|b)$   (ModSecurity has no exact set match)
  matches                     @rx (PCRE2 in both)
  device.model, .firmware, .tags: ModSecurity cannot see the client certificate nor a device
                              registry, so a first SecAction sets TX:device_model, TX:device_fw
                              (the version as a number, major*1e6 + minor*1e3 + patch) and
                              TX:device_tags (/tag/tag/) as constants for the one bench device; the rules
                              compare those (@streq, @lt, @rx). This costs ModSecurity less than
                              a real per-device lookup would.
"""

import os
import random
import re
import sys

SEED = 20261123
HOST = "bench.moat.test"
DEVICE = {"id": "bench-device-0001", "model": "cam-x", "firmware": "2.3.1",
          "tags": ["outdoor", "batch-7"]}

# ---- the benign traffic ----------------------------------------------------------------------
# One request per line: target, then header lines, tab-separated. loadgen (bench/loadgen.c)
# sends "GET <target> HTTP/1.1", then these lines, then its own "Host" and
# "User-Agent: moat-loadgen" lines (so there are two User-Agent lines; http.user_agent is the
# first, ModSecurity checks both); rules.sh passes the lines inside loadgen's -u argument.

UA_CAM = "CamFirmware/2.3.1 (cam-x; Linux 4.9.37; armv7l)"
UA_OTA = "cam-x-ota/2.3.1 libcurl/7.88.1"
UA_APP = "okhttp/4.12.0"
UA_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")
UA_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
UA_VLC = "VLC/3.0.21 LibVLC/3.0.21"

REQUESTS = [
    ("/api/v1/telemetry?device=bench-device-0001&seq=48213&temp=21.5&rssi=-61&uptime=86400",
     ["User-Agent: " + UA_CAM, "Accept: application/json", "X-Request-Seq: 48213"]),
    ("/api/v1/config?section=network&format=json",
     ["User-Agent: " + UA_CAM, "Accept: application/json",
      "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaC1kZXZpY2UtMDAwMSJ9.c2ln",
      'If-None-Match: "cfg-42"']),
    ("/ota/check?model=cam-x&current=2.3.1&channel=stable&hw=rev-b",
     ["User-Agent: " + UA_OTA, "Accept: */*"]),
    ("/cgi-bin/status.cgi?host=cam-0042.local&verbose=0",
     ["User-Agent: " + UA_CAM, "Accept: text/html", "Cookie: session=4f2a9c0e7b1d55e3"]),
    ("/api/v2/devices/bench-device-0001/events?since=1795392000&limit=50&order=desc",
     ["User-Agent: " + UA_APP, "Accept: application/json", "Accept-Language: en-US",
      "Accept-Encoding: gzip"]),
    ("/static/js/app.3f9c2a.min.js",
     ["User-Agent: " + UA_CHROME, "Accept: */*", "Referer: https://bench.moat.test/ui/",
      "Accept-Encoding: gzip, deflate, br", "Accept-Language: en-GB,en;q=0.9"]),
    ("/ui/settings?tab=network&lang=de",
     ["User-Agent: " + UA_IPHONE,
      "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
      "Cookie: session=9a1c77e0f4b2d310; theme=dark", "Accept-Language: de-DE,de;q=0.9"]),
    ("/snapshot.jpg?width=640&height=360&quality=80",
     ["User-Agent: " + UA_VLC, "Accept: image/jpeg",
      "Authorization: Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ="]),
]

BENIGN_PATH_PREFIXES = ["/api/v1/telemetry", "/api/v1/config", "/ota/check", "/cgi-bin/status.cgi",
                        "/api/v2/devices/", "/ui/settings", "/snapshot.jpg"]
BENIGN_ARGS = {"/api/v1/telemetry": ["device", "seq", "temp", "rssi", "uptime"],
               "/api/v1/config": ["section", "format"],
               "/ota/check": ["model", "current", "channel", "hw"],
               "/cgi-bin/status.cgi": ["host", "verbose"],
               "/api/v2/devices/": ["since", "limit", "order"],
               "/ui/settings": ["tab", "lang"],
               "/snapshot.jpg": ["width", "height", "quality"]}

# ---- vocabulary --------------------------------------------------------------------------------

VENDORS = ["acam", "brightnet", "cirrolink", "dovetel", "elmwave", "fennec", "gridlynx",
           "halyard", "ironvale", "jetcore", "kestrelio", "lumora", "meshtop", "norvik",
           "orbitalis", "pylonix", "quartzio", "ravenlink", "solvane", "tessiot", "umbrix",
           "veltro", "wyvernet", "xandria", "yarrowiq", "zephyrcam"]
FEATURES = ["diag", "ping", "traceroute", "upgrade", "backup", "restore", "syslog", "ntp",
            "ddns", "wifi", "wps", "upnp", "smtp", "ftp", "samba", "dlna", "snmp", "tr069",
            "cwmp", "portal", "login", "passwd", "adduser", "reboot", "factory", "firmware",
            "apply", "setup", "wizard", "network", "qos", "vpn", "pptp", "l2tp", "ipsec", "dhcp",
            "dns", "route", "nat", "firewall", "portfwd", "schedule", "ptz", "osd", "motion",
            "record", "playback", "storage", "sdcard", "cloud", "p2p", "rtsp", "onvif", "audio",
            "alarm", "relay", "sensor", "zigbee", "zwave", "ble", "mqtt", "coap", "thermostat",
            "lock", "doorbell", "light", "plug", "meter", "inverter", "battery", "charger"]
ACTIONS = ["set", "get", "update", "exec", "run", "save", "load", "test", "check", "query",
           "config", "admin", "debug", "cmd", "action", "import", "export", "reset"]
PARAMS = ["ip", "addr", "target", "cmd", "command", "exec", "ping_addr", "url", "file",
          "path", "name", "user", "username", "password", "mac", "ssid", "key", "value", "data",
          "param", "arg", "dest", "server", "domain", "hostname", "iface", "port", "filename",
          "dir", "page", "action", "next_file", "submit_button", "sysCmd", "ntp_server",
          "ddns_host", "wan_ip", "remote", "proto", "mode", "template", "lang_file"]
EXTS = ["cgi", "php", "asp", "htm", "lua", "sh", "xml", "json"]
CMD_RES = [r"[;&|`\n]|\$\(", r"[;|`]|\$\(|&&", r"(?:^|[;&|])\s*(?:sh|bash|busybox|wget|curl|tftp|nc)\b",
           r"[;&|`]|\$\(|\$\{IFS\}", r"(?i)[;&|`]\s*(?:reboot|telnetd|id|uname|cat)\b"]
PAYLOADS = ["<script", "javascript:", "${jndi:", "' or '1'='1", "union select", "/etc/passwd",
            "/etc/shadow", "/bin/sh", "wget http", "curl http", "tftp -g", "busybox", "chmod 777",
            "nc -e", ";reboot", "<?php", "eval(", "base64_decode(", "cmd.exe", "powershell",
            "{{7*7}}", "#{7*7}", "<!entity", "file://", "gopher://", "dict://",
            "169.254.169.254", "telnetd -l", "/dev/tcp/", "(#_memberaccess", "() { :;};", "sleep(5)",
            "benchmark(", "xp_cmdshell", "/proc/self/environ", "onerror=", "<iframe",
            "document.cookie", "ldap://", "rmi://"]
HEADERS = ["x-forwarded-host", "referer", "cookie", "content-type", "soapaction", "x-api-key",
           "x-auth-token", "origin", "x-original-url", "x-rewrite-url", "accept-language",
           "x-http-method-override", "x-device-token", "x-session-id", "x-real-ip"]
DEFAULT_CREDS = ["YWRtaW46YWRtaW4=", "YWRtaW46MTIzNDU2", "cm9vdDpyb290", "YWRtaW46cGFzc3dvcmQ=",
                 "c3VwcG9ydDpzdXBwb3J0", "dXNlcjp1c2Vy", "cm9vdDp2aXp4dg==", "YWRtaW46",
                 "Z3Vlc3Q6Z3Vlc3Q=", "cm9vdDoxMjM0NQ==", "YWRtaW46MTIzNA==", "dGVjaDp0ZWNo"]
SCANNERS = ["zgrab", "masscan", "nmap scripting engine", "sqlmap", "nikto", "nuclei", "gobuster",
            "dirbuster", "hydra", "medusa", "wpscan", "fuzz faster u fool", "jaeles", "xray",
            "l9tcpid", "zmeu", "morfeus", "muhstik", "hakai", "mozi.m", "hello, world",
            "censysinspect", "expanse", "netsystemsresearch", "internet-measurement", "libredtail",
            "gh0st", "owari", "tsunami", "okiru", "satori", "sora", "yakuza", "kaiten",
            "dark_nexus", "fbot", "gafgyt", "tsunami/2", "ddg", "kinsing"]
MODELS = ["cam-x", "cam-y", "cam-z", "nvr-8", "nvr-16", "rtr-ax3", "rtr-ax6", "gw-200",
          "gw-400", "hub-mini", "thermo-2", "lock-s1", "plug-p1", "meter-m3", "doorbell-y",
          "inv-5k", "chg-11", "bridge-z2"]
TAGS = ["legacy", "beta", "eol", "lab", "batch-3", "batch-5", "refurb", "indoor-only", "pilot"]
CIDRS = ["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "45.95.147.0/24", "185.220.100.0/22",
         "91.240.118.0/24", "5.188.206.0/24", "62.204.41.0/24", "141.98.10.0/24", "193.32.162.0/24",
         "2001:db8::/32", "2a0e:fd87::/32", "23.94.0.0/15", "104.244.72.0/21", "89.248.160.0/21",
         "80.82.77.0/24", "71.6.128.0/17", "162.142.125.0/24", "167.94.138.0/24", "94.102.49.0/24"]
BAD_ARG_NAMES = ["__proto__", "constructor[prototype]", "debug_cmd", "sys_exec", "shell",
                 "_method", "phpinfo", "eval", "xdebug_session_start", "cmd_exec", "exec_cmd",
                 "telnet_enable", "ssh_enable", "factory_reset", "dbg", "test_mode", "rootpw"]
DEBUG_HEADERS = ["x-debug-auth", "x-debug", "x-dev-mode", "x-backdoor", "x-factory-mode",
                 "x-engineering", "x-bypass-auth", "x-internal-admin", "x-test-login"]

# kinds of rules and how many of each in every block of 100
KINDS = [("cmdinj", 14), ("traversal", 5), ("exploit_path", 14), ("header", 12), ("ua", 12),
         ("arg_payload", 12), ("device", 8), ("ip", 5), ("method", 5), ("path_re", 5),
         ("query", 5), ("debug_header", 3)]
assert sum(n for _, n in KINDS) == 100


def rx_escape(s):
    return re.sub(r"([.^$*+?()\[\]{}|\\/-])", r"\\\1", s)


def q(s):
    """A moatd string literal."""
    assert '"' not in s and "\\" not in s and "\n" not in s
    return '"' + s + '"'


def version_number(v):
    a, b, c = (int(x) for x in v.split("."))
    return a * 1000000 + b * 1000 + c


class Gen:
    def __init__(self):
        self.rnd = random.Random(SEED)
        self.seen = set()
        self.rules = []  # dicts: id, num, name, kind, expr (moat), modsec (list of (var, op, t))
        self.attacks = []  # (rule id, kind, rule number, target, [headers])

    def unique(self, key):
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def vpath(self):
        r = self.rnd
        v, f, a, e = r.choice(VENDORS), r.choice(FEATURES), r.choice(ACTIONS), r.choice(EXTS)
        style = r.randrange(5)
        if style == 0:
            return f"/cgi-bin/{f}_{a}.{e if e in ('cgi', 'sh', 'lua') else 'cgi'}"
        if style == 1:
            return f"/goform/{f.capitalize()}{a.capitalize()}"
        if style == 2:
            return f"/{v}/{f}/{a}.{e}"
        if style == 3:
            return f"/api/v{r.randrange(1, 4)}/{v}/{f}/{a}"
        return f"/{v}/{f}_{a}.{e}"

    def touch_path(self):
        """A path prefix of the benign traffic, for about a tenth of the path rules."""
        return self.rnd.choice(BENIGN_PATH_PREFIXES)

    def add(self, kind, name, expr, modsec, attack):
        n = len(self.rules) + 1
        rid = f"vp-{n:04d}"
        self.rules.append({"id": rid, "num": 100000 + n, "name": name, "kind": kind,
                           "expr": expr, "modsec": modsec,
                           "cve": f"CVE-20{self.rnd.randrange(18, 27)}-{self.rnd.randrange(1000, 49999)}"})
        if attack is not None:
            self.attacks.append((rid, kind, n) + attack)

    # Each maker returns False when it drew a rule it already has (the caller draws again).

    def cmdinj(self):
        r = self.rnd
        path = "/cgi-bin/status.cgi" if r.random() < 0.1 else self.vpath()
        param = r.choice(["host", "verbose"] + PARAMS[:6] if path == "/cgi-bin/status.cgi" else PARAMS)
        rx = r.choice(CMD_RES)
        if not self.unique(("cmdinj", path, param)):
            return False
        op = "starts_with" if r.random() < 0.5 else "=="
        first = (f"starts_with(http.request.uri.path, {q(path)})" if op == "starts_with"
                 else f"http.request.uri.path == {q(path)}")
        self.add("cmdinj", f"Command injection through {param} in {path}",
                 f"{first}\n       and any(url_decode(http.request.uri.args[{q(param)}]) matches r\"{rx}\")",
                 [("REQUEST_FILENAME", ("@beginsWith " if op == "starts_with" else "@streq ") + path,
                   "t:normalizePath"),
                  (f"ARGS_GET:{param}", "@rx " + rx, "t:urlDecodeUni")],
                 (f"{path}?{param}=1.2.3.4%3Bcat%20x%3Bwget%20y", []))
        return True

    def traversal(self):
        r = self.rnd
        v, f = r.choice(VENDORS), r.choice(FEATURES)
        prefix = f"/{v}/{f}/"
        if not self.unique(("traversal", prefix)):
            return False
        self.add("traversal", f"Path traversal in the {v} {f} file server",
                 f"starts_with(http.request.uri.path.raw, {q(prefix)})\n"
                 f"       and url_decode(url_decode(lower(http.request.uri.path.raw))) contains \"../\"",
                 [("REQUEST_URI_RAW", "@beginsWith " + prefix, ""),
                  ("REQUEST_URI_RAW", "@contains ../", "t:lowercase,t:urlDecodeUni,t:urlDecodeUni")],
                 (f"{prefix}..%252f..%252fetc/passwd", []))
        return True

    def exploit_path(self):
        r = self.rnd
        k = r.choice([1, 1, 2, 3])
        paths = sorted({self.vpath() for _ in range(k)})
        if not self.unique(("exploit_path", tuple(paths))):
            return False
        if len(paths) == 1:
            expr = f"http.request.uri.path == {q(paths[0])}"
            ms = [("REQUEST_FILENAME", "@streq " + paths[0], "t:normalizePath")]
        else:
            expr = "http.request.uri.path in {" + " ".join(q(p) for p in paths) + "}"
            ms = [("REQUEST_FILENAME", "@rx ^(?:" + "|".join(rx_escape(p) for p in paths) + ")$",
                   "t:normalizePath")]
        self.add("exploit_path", f"Unauthenticated endpoint {paths[0]}", expr, ms, (paths[-1], []))
        return True

    def header(self):
        r = self.rnd
        h = r.choice(HEADERS + ["authorization"] * 3)
        if h == "authorization":
            creds = sorted(r.sample(DEFAULT_CREDS, r.choice([1, 2, 3])))
            if not self.unique(("header", h, tuple(creds))):
                return False
            vals = ["Basic " + c for c in creds]
            if len(vals) == 1:
                expr = f"any(http.request.headers[\"authorization\"] == {q(vals[0])})"
                ms = [("REQUEST_HEADERS:Authorization", "@streq " + vals[0], "")]
            else:
                expr = ("any(http.request.headers[\"authorization\"] in {" +
                        " ".join(q(x) for x in vals) + "})")
                ms = [("REQUEST_HEADERS:Authorization",
                       "@rx ^(?:" + "|".join(rx_escape(x) for x in vals) + ")$", "")]
            path = self.vpath() if r.random() < 0.5 else None
            if path:
                expr = f"starts_with(http.request.uri.path, {q(path)})\n       and {expr}"
                ms = [("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")] + ms
            self.add("header", "Default credentials on " + (path or "any endpoint"), expr, ms,
                     (path or "/api/v1/config", ["Authorization: " + vals[0]]))
            return True
        p = r.choice(PAYLOADS)
        if not self.unique(("header", h, p)):
            return False
        low = r.random() < 0.5 or p != p.lower()
        p = p.lower() if low else p
        hname = "-".join(w.capitalize() for w in h.split("-"))
        if low:
            expr = f"any(lower(url_decode(http.request.headers[{q(h)}])) contains {q(p)})"
            ms = [(f"REQUEST_HEADERS:{hname}", "@contains " + p, "t:urlDecodeUni,t:lowercase")]
        else:
            expr = f"any(http.request.headers[{q(h)}] contains {q(p)})"
            ms = [(f"REQUEST_HEADERS:{hname}", "@contains " + p, "")]
        self.add("header", f"{p} in {h}", expr, ms,
                 ("/api/v1/config", [f"{hname}: x{p}x"]))
        return True

    def ua(self):
        r = self.rnd
        s = r.choice(SCANNERS)
        style = r.randrange(3)
        if style == 2:
            s = f"{s}-{r.randrange(2, 99)}" if r.random() < 0.7 else s + "/" + r.choice(VENDORS)
        if not self.unique(("ua", s)):
            return False
        if style == 0 or style == 2:
            expr = f"lower(http.user_agent) contains {q(s)}"
            ms = [("REQUEST_HEADERS:User-Agent", "@contains " + s, "t:lowercase")]
        else:
            rx = "(?i)^" + rx_escape(s) + r"(?:[/ ]|$)"
            expr = f"http.user_agent matches r\"{rx}\""
            ms = [("REQUEST_HEADERS:User-Agent", "@rx " + rx, "")]
        self.add("ua", f"Scanner or botnet user agent {s}", expr, ms,
                 ("/api/v1/telemetry", ["User-Agent: " + s + "/1.0"]))
        return True

    def arg_payload(self):
        r = self.rnd
        if r.random() < 0.1:
            path = self.touch_path()
            param = r.choice(BENIGN_ARGS[path])
        else:
            path, param = self.vpath(), r.choice(PARAMS)
        p = r.choice(PAYLOADS).lower()
        if not self.unique(("arg", path, param, p)):
            return False
        self.add("arg_payload", f"{p} through {param} in {path}",
                 f"starts_with(http.request.uri.path, {q(path)})\n"
                 f"       and any(lower(url_decode(http.request.uri.args[{q(param)}])) contains {q(p)})",
                 [("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath"),
                  (f"ARGS_GET:{param}", "@contains " + p, "t:urlDecodeUni,t:lowercase")],
                 (f"{path}?{param}={pct(p)}", []))
        return True

    def device(self):
        r = self.rnd
        model = DEVICE["model"] if r.random() < 0.25 else r.choice(MODELS[1:])
        ver = f"{r.randrange(1, 3)}.{r.randrange(0, 10)}.{r.randrange(0, 10)}"
        if model == DEVICE["model"] and version_number(ver) > version_number(DEVICE["firmware"]):
            ver = "2.0." + str(r.randrange(0, 10))
        path = self.touch_path() if r.random() < 0.2 else self.vpath()
        use_tag = r.random() < 0.2
        if not self.unique(("device", model, path, use_tag)):
            return False
        if use_tag:
            tag = r.choice(TAGS)
            expr = (f"any(device.tags == {q(tag)})\n"
                    f"       and starts_with(http.request.uri.path, {q(path)})")
            ms = [("TX:device_tags", "@contains /" + tag + "/", ""),
                  ("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")]
            self.add("device", f"Devices tagged {tag}: {path}", expr, ms, None)
            return True
        expr = (f"device.model == {q(model)} and device.firmware < {q(ver)}\n"
                f"       and starts_with(http.request.uri.path, {q(path)})")
        ms = [("TX:device_model", "@streq " + model, ""),
              ("TX:device_fw", f"@lt {version_number(ver)}", ""),
              ("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")]
        self.add("device", f"{model} before {ver}: {path}", expr, ms, None)
        return True

    def ip(self):
        r = self.rnd
        cidrs = sorted(r.sample(CIDRS, r.choice([2, 3, 5, 8])))
        path = "/" + r.choice(["admin", "manage", "maint", "service", "factory", "debug"]) + "/"
        if r.random() < 0.5:
            path += r.choice(FEATURES)
        if not self.unique(("ip", path, tuple(cidrs))):
            return False
        self.add("ip", f"{path} from known-bad networks",
                 "ip.src in {" + " ".join(cidrs) + "}\n"
                 f"       and starts_with(http.request.uri.path, {q(path)})",
                 [("REMOTE_ADDR", "@ipMatch " + ",".join(cidrs), ""),
                  ("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")], None)
        return True

    def method(self):
        r = self.rnd
        methods = sorted(r.sample(["PUT", "DELETE", "PATCH", "POST", "OPTIONS", "TRACE"],
                                  r.choice([1, 2, 3])))
        path = self.touch_path() if r.random() < 0.3 else self.vpath()
        if not self.unique(("method", path, tuple(methods))):
            return False
        if len(methods) == 1:
            first = f"http.request.method == {q(methods[0])}"
            m0 = ("REQUEST_METHOD", "@streq " + methods[0], "")
        else:
            first = "http.request.method in {" + " ".join(q(m) for m in methods) + "}"
            m0 = ("REQUEST_METHOD", "@rx ^(?:" + "|".join(methods) + ")$", "")
        self.add("method", f"{'/'.join(methods)} on {path}",
                 f"{first}\n       and starts_with(http.request.uri.path, {q(path)})",
                 [m0, ("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")], None)
        return True

    def path_re(self):
        r = self.rnd
        v = r.choice(VENDORS)
        style = r.randrange(3)
        if style == 0:
            rx = "^/" + v + r"/.*\.(?:bak|old|orig|swp|save|conf~)$"
        elif style == 1:
            rx = "^/" + v + "/" + r.choice(FEATURES) + r"/[^/]*\.(?:sh|pl|py|exe)$"
        else:
            rx = r"^/(?:" + v + "|" + r.choice(VENDORS) + r")/(?:cgi|bin|sbin)/[a-z_]+\.(?:cgi|sh)$"
        if not self.unique(("path_re", rx)):
            return False
        self.add("path_re", f"Sensitive files under /{v}/", f"http.request.uri.path matches r\"{rx}\"",
                 [("REQUEST_FILENAME", "@rx " + rx, "t:normalizePath")],
                 (example_path(rx), []))
        return True

    def query(self):
        r = self.rnd
        if r.random() < 0.5:
            names = sorted(r.sample(BAD_ARG_NAMES, r.choice([1, 2, 3])))
            if not self.unique(("argnames", tuple(names))):
                return False
            if len(names) == 1:
                expr = f"any(http.request.uri.args.names == {q(names[0])})"
                ms = [("ARGS_GET_NAMES", "@streq " + names[0], "")]
            else:
                expr = "any(http.request.uri.args.names in {" + " ".join(q(n) for n in names) + "})"
                ms = [("ARGS_GET_NAMES", "@rx ^(?:" + "|".join(rx_escape(n) for n in names) + ")$", "")]
            self.add("query", f"Hidden argument {names[0]}", expr, ms,
                     ("/api/v1/config?" + pct(names[0]) + "=1", []))
            return True
        tok = r.choice(["%0d%0a", "%2e%2e%2f", "%252e", "%c0%af", "%u002e", "%00", "%ff%fe",
                        "..%5c", "%3cscript", "%24%7b", "%7b%7b"])
        path = self.vpath() if r.random() < 0.7 else None
        if not self.unique(("query", tok, path)):
            return False
        expr = f"lower(http.request.uri.query) contains {q(tok)}"
        ms = [("QUERY_STRING", "@contains " + tok, "t:lowercase")]
        if path:
            expr = f"starts_with(http.request.uri.path, {q(path)})\n       and {expr}"
            ms = [("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath")] + ms
        self.add("query", f"Encoded {tok} in the query" + (f" of {path}" if path else ""), expr, ms,
                 ((path or "/api/v1/config") + "?x=" + tok, []))
        return True

    def debug_header(self):
        r = self.rnd
        h = r.choice(DEBUG_HEADERS)
        path = self.touch_path() if r.random() < 0.3 else self.vpath()
        if not self.unique(("debug_header", h, path)):
            return False
        hname = "-".join(w.capitalize() for w in h.split("-"))
        self.add("debug_header", f"{h} on {path}",
                 f"starts_with(http.request.uri.path, {q(path)})\n"
                 f"       and count(http.request.headers[{q(h)}]) > 0",
                 [("REQUEST_FILENAME", "@beginsWith " + path, "t:normalizePath"),
                  (f"&REQUEST_HEADERS:{hname}", "@gt 0", "")],
                 (path, [f"{hname}: 1"]))
        return True

    def generate(self, n):
        blocks = (n + 99) // 100
        for _ in range(blocks):
            kinds = [k for k, c in KINDS for _ in range(c)]
            self.rnd.shuffle(kinds)
            for k in kinds:
                for _attempt in range(1000):
                    if getattr(self, k)():
                        break
                else:
                    raise SystemExit(f"gen.py: cannot draw another distinct rule of kind {k}")
        del self.rules[n:]


def pct(s):
    """Percent-encodes what cannot go raw into a request target or a header value."""
    out = []
    for ch in s:
        if ch.isalnum() or ch in "-._~/:=":
            out.append(ch)
        else:
            out.append("%%%02X" % ord(ch))
    return "".join(out)


def example_path(rx):
    """A path that the path regular expressions of path_re match."""
    m = re.match(r"\^/\(\?:([a-z]+)\|[a-z]+\)/", rx)
    if m:
        return f"/{m.group(1)}/cgi/evil.cgi"
    m = re.match(r"\^/([a-z]+)/([a-z0-9]+)/", rx)
    if m:
        return f"/{m.group(1)}/{m.group(2)}/x.sh"
    m = re.match(r"\^/([a-z]+)/", rx)
    return f"/{m.group(1)}/etc/config.bak"


# ---- output ------------------------------------------------------------------------------------

def moat_file(rules):
    out = [f"# {len(rules)} generated virtual patches for the rules benchmark (bench/rules/gen.py,",
           "# seed %d). Do not edit: regenerate." % SEED, ""]
    for ru in rules:
        out += [f"[rule {ru['id']}]", f"name = {ru['name']}", f"reference = {ru['cve']}",
                "action = block", f"expr = {ru['expr']}", ""]
    return "\n".join(out)


def modsec_file(rules):
    d = DEVICE
    out = [f"# {len(rules)} generated virtual patches as ModSecurity rules (bench/rules/gen.py,",
           "# seed %d), the same as moat-%d.rules. Do not edit: regenerate." % (SEED, len(rules)),
           "SecRuleEngine On",
           "SecRequestBodyAccess Off",
           "SecResponseBodyAccess Off",
           "SecAuditEngine Off",
           "SecDebugLogLevel 0",
           "SecArgumentSeparator &",
           "SecPcreMatchLimit 100000",
           "SecPcreMatchLimitRecursion 10000",
           "",
           "# The device facts moatd takes from its devices file (see gen.py): constants here.",
           f"SecAction \"id:99999,phase:1,pass,nolog,t:none,setvar:tx.device_model={d['model']},"
           f"setvar:tx.device_fw={version_number(d['firmware'])},"
           f"setvar:tx.device_tags=/{'/'.join(d['tags'])}/\"",
           ""]
    for ru in rules:
        out.append(f"# {ru['id']}: {ru['name']}")
        conds = ru["modsec"]
        for i, (var, op, t) in enumerate(conds):
            assert '"' not in op and '"' not in var
            acts = []
            if i == 0:
                acts += [f"id:{ru['num']}", "phase:1", "deny", "status:403", "log",
                         f"msg:'{ru['id']}'"]
            acts.append("t:none" + ("," + t if t else ""))
            if i < len(conds) - 1:
                acts.append("chain")
            indent = "" if i == 0 else "    "
            out.append(f"{indent}SecRule {var} \"{op}\" \"{','.join(acts)}\"")
        out.append("")
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: gen.py OUTDIR [N ...]")
    outdir = sys.argv[1]
    sizes = [int(x) for x in sys.argv[2:]] or [100, 1000]
    os.makedirs(outdir, exist_ok=True)
    g = Gen()
    g.generate(max(sizes))
    for n in sizes:
        rules = g.rules[:n]
        with open(os.path.join(outdir, f"moat-{n}.rules"), "w") as f:
            f.write(moat_file(rules))
        with open(os.path.join(outdir, f"modsec-{n}.conf"), "w") as f:
            f.write(modsec_file(rules))
    with open(os.path.join(outdir, "devices.ini"), "w") as f:
        f.write(f"; the bench device (gen.py)\n[{DEVICE['id']}]\nmodel = {DEVICE['model']}\n"
                f"firmware = {DEVICE['firmware']}\ntags = {', '.join(DEVICE['tags'])}\n")
    with open(os.path.join(outdir, "requests.txt"), "w") as f:
        f.write("# The benign request mix (gen.py): target, then header lines, tab-separated.\n")
        for target, headers in REQUESTS:
            f.write("\t".join([target] + headers) + "\n")
    with open(os.path.join(outdir, "attacks.txt"), "w") as f:
        f.write("# Attack requests (gen.py): the rule that must block it, the target, header "
                "lines; tab-separated.\n")
        for rid, _kind, _n, target, headers in g.attacks:
            f.write("\t".join([rid, target] + headers) + "\n")
    # one attack of each kind on the first 100 rules: rules.sh sends them to every engine
    with open(os.path.join(outdir, "sanity.txt"), "w") as f:
        f.write("# One attack of each kind on the first 100 rules (gen.py), as in attacks.txt.\n")
        kinds = set()
        for rid, kind, n, target, headers in g.attacks:
            if n <= 100 and kind not in kinds:
                kinds.add(kind)
                f.write("\t".join([rid, target] + headers) + "\n")


if __name__ == "__main__":
    main()
