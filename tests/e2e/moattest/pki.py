"""A test PKI made with the openssl command line (ECDSA P-256 throughout).

    server CA ── alpha.test, beta.test, gamma.test server certificates (EKU serverAuth),
                 and the https origin's certificate (127.0.0.1)
    alpha device CA ── dev-1 (good), expired, wrong EKU, revoked, no EKU, SAN DNS, not yet valid
    beta device CA ── beta-dev-1

Leaf certificates are issued with `openssl ca`, which is what lets us set past and future
validity dates on OpenSSL 3.0 (`-startdate`/`-enddate`). CRLs are generated from a copy of the
CA database with exactly the requested certificates revoked, so a test can make its own CRL
without disturbing the session-wide files.
"""

import pathlib
import shutil
import tempfile
import threading

from .util import run

OPENSSL = "openssl"

CA_CONF = """\
[ca]
default_ca = ca_default

[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
certificate = {cert}
private_key = {key}
crlnumber = {dir}/crlnumber
serial = {dir}/serial
rand_serial = yes
default_md = sha256
default_days = 825
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = yes

[policy_any]
commonName = supplied
organizationName = optional
organizationalUnitName = optional

[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

REQ_CONF = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused
"""


class Cert:
    """A certificate with its key, and the facts tests compare against, as openssl prints them."""

    def __init__(self, name, cert, key, cn, issuer=None):
        self.name = name
        self.cert = pathlib.Path(cert)
        self.key = pathlib.Path(key)
        self.cn = cn
        self.issuer = issuer
        out = run([OPENSSL, "x509", "-in", str(self.cert), "-noout", "-serial",
                   "-fingerprint", "-sha256", "-enddate"]).stdout
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        # "serial=0A1B..." -> the uppercase hex after '=', exactly as the contract quotes it
        self.serial = facts["serial"].strip()
        fp = next(v for k, v in facts.items() if "Fingerprint" in k)
        self.sha256 = fp.strip().replace(":", "").lower()
        self.not_after = facts["notAfter"].strip()

    @property
    def der(self):
        return run([OPENSSL, "x509", "-in", str(self.cert), "-outform", "DER"],
                   text=False).stdout

    def __repr__(self):
        return f"<Cert {self.name} CN={self.cn} serial={self.serial}>"


class CA:
    """A self-signed CA with an `openssl ca` database in its own directory."""

    def __init__(self, base, name, cn):
        self.name = name
        self.dir = pathlib.Path(base) / name
        (self.dir / "newcerts").mkdir(parents=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "index.txt.attr").write_text("unique_subject = no\n")
        (self.dir / "crlnumber").write_text("1000\n")
        (self.dir / "serial").write_text("1000\n")
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.pem"
        self.conf = self.dir / "ca.cnf"
        self.conf.write_text(CA_CONF.format(dir=self.dir, cert=self.cert, key=self.key))
        self._lock = threading.Lock()
        run([OPENSSL, "req", "-x509", "-new", "-config", str(self.conf), "-extensions", "v3_ca",
             "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(self.key), "-out", str(self.cert), "-subj", f"/CN={cn}",
             "-days", "3650", "-sha256"])
        self.cn = cn

    def issue(self, name, cn, *, eku="clientAuth", san=None, days=365, start=None, end=None):
        """Issues a leaf. start/end are 'YYYYMMDDHHMMSSZ' strings overriding `days`."""
        with self._lock:
            leaf_dir = self.dir / "leaves"
            leaf_dir.mkdir(exist_ok=True)
            key = leaf_dir / f"{name}.key"
            csr = leaf_dir / f"{name}.csr"
            cert = leaf_dir / f"{name}.pem"
            ext = leaf_dir / f"{name}.ext"
            reqconf = leaf_dir / "req.cnf"
            reqconf.write_text(REQ_CONF)
            lines = ["[x]", "basicConstraints = critical, CA:FALSE",
                     "keyUsage = critical, digitalSignature",
                     "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid"]
            if eku:
                lines.append(f"extendedKeyUsage = {eku}")
            if san:
                lines.append(f"subjectAltName = {san}")
            ext.write_text("\n".join(lines) + "\n")
            run([OPENSSL, "req", "-new", "-config", str(reqconf), "-newkey", "ec",
                 "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                 "-out", str(csr), "-subj", f"/CN={cn}"])
            args = [OPENSSL, "ca", "-batch", "-config", str(self.conf), "-notext",
                    "-rand_serial", "-in", str(csr), "-out", str(cert), "-extfile", str(ext),
                    "-extensions", "x"]
            if start or end:
                args += ["-startdate", start or "20200101000000Z",
                         "-enddate", end or "20991231235959Z"]
            else:
                args += ["-days", str(days)]
            run(args)
            c = Cert(name, cert, key, cn, issuer=self)
            # A PEM bundle with certificate and key, handy for `curl --cert` users and python ssl.
            (leaf_dir / f"{name}.bundle.pem").write_text(cert.read_text() + key.read_text())
            return c

    def make_crl(self, revoked, path):
        """Writes a PEM CRL at `path` that revokes exactly the certificates in `revoked`."""
        with self._lock:
            work = pathlib.Path(tempfile.mkdtemp(prefix="crl-", dir=self.dir))
            try:
                shutil.copy(self.dir / "index.txt", work / "index.txt")
                (work / "index.txt.attr").write_text("unique_subject = no\n")
                # CRL numbers keep increasing across every CRL this CA makes
                shutil.copy(self.dir / "crlnumber", work / "crlnumber")
                conf = work / "ca.cnf"
                (work / "newcerts").mkdir()
                conf.write_text(CA_CONF.format(dir=work, cert=self.cert, key=self.key))
                for c in revoked:
                    run([OPENSSL, "ca", "-batch", "-config", str(conf), "-revoke", str(c.cert),
                         "-crl_reason", "keyCompromise"])
                tmp = pathlib.Path(str(path) + ".tmp")
                run([OPENSSL, "ca", "-batch", "-config", str(conf), "-gencrl", "-out", str(tmp)])
                shutil.copy(work / "crlnumber", self.dir / "crlnumber")
                tmp.replace(path)  # atomic: a reloading daemon never reads half a file
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return pathlib.Path(path)


class PKI:
    """Everything the suite needs, created once per session in `base`."""

    def __init__(self, base):
        self.base = pathlib.Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.server_ca = CA(self.base, "server-ca", "Moat Test Server CA")
        self.alpha_ca = CA(self.base, "alpha-device-ca", "Alpha Device CA")
        self.beta_ca = CA(self.base, "beta-device-ca", "Beta Device CA")

        srv = dict(eku="serverAuth")
        self.alpha_server = self.server_ca.issue(
            "alpha-server", "alpha.test", san="DNS:alpha.test,DNS:*.alpha.test", **srv)
        self.beta_server = self.server_ca.issue("beta-server", "beta.test",
                                                san="DNS:beta.test", **srv)
        self.gamma_server = self.server_ca.issue("gamma-server", "gamma.test",
                                                 san="DNS:gamma.test", **srv)
        # the https origin (nginx) behind moatd
        self.origin_server = self.server_ca.issue("origin-server", "origin.test",
                                                  san="DNS:localhost,IP:127.0.0.1", **srv)
        # a tenant served on a bare loopback address (MQTT clients connect to 127.0.0.1 and
        # verify the name they connected to), and the tls:// origins of the TCP tests
        self.local_server = self.server_ca.issue(
            "local-server", "localhost", san="DNS:localhost,IP:127.0.0.1,IP:::1", **srv)

        a = self.alpha_ca
        self.dev1 = a.issue("dev-1", "dev-1", san="URI:urn:dev:1")
        self.expired = a.issue("dev-expired", "dev-expired", san="URI:urn:dev:expired",
                               start="20200101000000Z", end="20210101000000Z")
        self.notyet = a.issue("dev-notyet", "dev-notyet", start="20990101000000Z",
                              end="20991231000000Z")
        self.wrong_eku = a.issue("dev-wrongeku", "dev-wrongeku", eku="serverAuth")
        self.revoked = a.issue("dev-revoked", "dev-revoked", san="URI:urn:dev:revoked")
        self.noeku = a.issue("dev-noeku", "dev-noeku", eku=None)
        self.dns = a.issue("dev-dns", "dev-dns", san="DNS:dev-dns.devices.alpha.test")
        self.beta_dev = self.beta_ca.issue("beta-dev-1", "beta-dev-1", san="URI:urn:beta:1")

        self.alpha_crl = a.make_crl([self.revoked], self.base / "alpha.crl.pem")
        self.beta_crl = self.beta_ca.make_crl([], self.base / "beta.crl.pem")

    def issue_device(self, name, cn=None, **kw):
        """A fresh alpha device certificate for a test that revokes or otherwise spends it."""
        return self.alpha_ca.issue(name, cn or name, **kw)
