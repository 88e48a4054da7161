"""Preparation steps of bench/api.sh, each through the admin API as an operator would do it.

    setup.py tenant ADMIN TOKEN_FILE NAME HOST ORIGIN
        POST /v1/tenants: the tenant, its generated device CA and server certificate.
    setup.py device ADMIN TOKEN_FILE TENANT ID OUTDIR
        Enrolls ID in factory mode and writes OUTDIR/ID.crt, ID.key and server-ca.crt.
    setup.py rules ADMIN TOKEN_FILE TENANT RULES_FILE COUNT
        Adds the first COUNT rules of a moatd rules file (bench/rules/moat-1000.rules) to the
        tenant, one POST each.
    setup.py rules-tsv RULES_FILE COUNT OUT
        The first COUNT rules of the file as store_fill -R reads them: ID, NAME, ACTION, EXPR,
        tab-separated, one per line.
    setup.py csrs OUT N PREFIX
        N ECDSA P-256 keys and PKCS#10 requests with CN=PREFIX000001..., one JSON line each
        ({"id": ..., "csr": PEM}); the keys are thrown away.
"""

import json
import os
import sys
import time

from moatbench import Api, kv_line


def tenant(admin, token_file, name, host, origin):
    api = Api.from_token_file(admin, token_file)
    api.ok("POST", "/v1/tenants", {"name": name, "hosts": [host], "origin": origin},
           status=(201,))


def device(admin, token_file, tenant_name, dev_id, outdir):
    api = Api.from_token_file(admin, token_file)
    doc = api.ok("POST", f"/v1/tenants/{tenant_name}/devices",
                 {"id": dev_id, "model": "cam-x", "firmware": "2.3.1",
                  "tags": ["outdoor", "batch-7"]}, status=(201,))
    os.makedirs(outdir, exist_ok=True)
    key = os.path.join(outdir, f"{dev_id}.key")
    with open(key, "w", encoding="ascii") as f:
        f.write(doc["key"])
    os.chmod(key, 0o600)
    with open(os.path.join(outdir, f"{dev_id}.crt"), "w", encoding="ascii") as f:
        f.write(doc["certificate"])
    with open(os.path.join(outdir, "server-ca.crt"), "w", encoding="ascii") as f:
        f.write(doc["server_ca"])


def parse_rules_file(path):
    """[rule ID] sections of key = value lines; indented lines continue the previous value."""
    rules, cur, key = [], None, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith(("#", ";")):
                continue
            if line.startswith("[rule ") and line.rstrip().endswith("]"):
                cur = {"id": line.strip()[6:-1].strip()}
                rules.append(cur)
                key = None
            elif line[0] in " \t" and cur is not None and key is not None:
                cur[key] += "\n" + line.strip()
            elif cur is not None and "=" in line:
                key, _, value = line.partition("=")
                key = key.strip()
                cur[key] = value.strip()
    return rules


def rules(admin, token_file, tenant_name, path, count):
    api = Api.from_token_file(admin, token_file)
    fields = ("id", "name", "expr", "action", "mode", "reference", "description")
    t0 = time.monotonic()
    n = 0
    for r in parse_rules_file(path)[:count]:
        body = {k: r[k] for k in fields if k in r}
        api.ok("POST", f"/v1/tenants/{tenant_name}/rules", body, status=(201,))
        n += 1
    print(kv_line(rules=n, seconds=time.monotonic() - t0))


def rules_tsv(path, count, out):
    with open(out, "w", encoding="utf-8") as f:
        for r in parse_rules_file(path)[:count]:
            cols = [r["id"], r.get("name", r["id"]), r.get("action", "block"), r["expr"]]
            # the continuation lines of an expression were joined with newlines
            f.write("\t".join(c.replace("\n", " ").replace("\t", " ") for c in cols) + "\n")


def csrs(out, n, prefix):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    t0 = time.monotonic()
    with open(out, "w", encoding="ascii") as f:
        for i in range(1, n + 1):
            dev_id = f"{prefix}{i:06d}"
            key = ec.generate_private_key(ec.SECP256R1())
            req = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev_id)]))
                   .sign(key, hashes.SHA256()))
            pem = req.public_bytes(serialization.Encoding.PEM).decode("ascii")
            f.write(json.dumps({"id": dev_id, "csr": pem}) + "\n")
    print(kv_line(csrs=n, seconds=time.monotonic() - t0))


def main(argv):
    cmds = {"tenant": (tenant, 5), "device": (device, 5), "rules": (rules, 5),
            "rules-tsv": (rules_tsv, 3), "csrs": (csrs, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    fn, _ = cmds[argv[1]]
    args = argv[2:]
    if argv[1] == "csrs" or argv[1] == "rules-tsv":
        args = [args[0], int(args[1]), args[2]]
    elif argv[1] == "rules":
        args = args[:4] + [int(args[4])]
    fn(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
