"""PROXY protocol version 2 (HAProxy's "PROXY protocol" specification, section 2.2): a strict
parser for what moatd sends its TCP origins, and an encoder so the suite can check its own
origins (HAProxy, the python parser) without moatd.

Strict means: the signature, version 2, command PROXY or LOCAL, family TCP over IPv4/IPv6 (or
UNSPEC with LOCAL), an address block of exactly the family's size, TLVs that fill the rest
exactly, no TLV twice, a PP2_TYPE_SSL TLV with well-formed sub-TLVs, and a CRC32C TLV (if any)
that matches. Anything else raises PP2Error.
"""

import ipaddress
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

CMD_LOCAL = 0x0
CMD_PROXY = 0x1
FAM_UNSPEC = 0x00
FAM_TCP4 = 0x11
FAM_TCP6 = 0x21

TYPE_ALPN = 0x01
TYPE_AUTHORITY = 0x02
TYPE_CRC32C = 0x03
TYPE_NOOP = 0x04
TYPE_UNIQUE_ID = 0x05
TYPE_SSL = 0x20
SUBTYPE_SSL_VERSION = 0x21
SUBTYPE_SSL_CN = 0x22
SUBTYPE_SSL_CIPHER = 0x23
SUBTYPE_SSL_SIG_ALG = 0x24
SUBTYPE_SSL_KEY_ALG = 0x25
TYPE_NETNS = 0x30

CLIENT_SSL = 0x01
CLIENT_CERT_CONN = 0x02
CLIENT_CERT_SESS = 0x04

# Moat's own TLVs (the custom range 0xE0-0xEF)
TYPE_MOAT_TENANT = 0xE0
TYPE_MOAT_CERT_SHA256 = 0xE1
TYPE_MOAT_CERT_SERIAL = 0xE2
TYPE_MOAT_DEVICE_ID = 0xE3

MAX_UNIQUE_ID = 128


class PP2Error(ValueError):
    pass


class Incomplete(Exception):
    """More bytes are needed before the header can be parsed."""


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class SSLInfo:
    def __init__(self, client, verify, subs):
        self.client = client
        self.verify = verify
        self.subs = subs  # {subtype: bytes}, in order of appearance

    def sub(self, subtype):
        v = self.subs.get(subtype)
        return None if v is None else v.decode("ascii", "strict")

    def __repr__(self):
        return f"<SSL client=0x{self.client:02x} verify={self.verify} subs={self.subs}>"


class Header:
    def __init__(self, raw, command, family, src, dst, tlvs, ssl):
        self.raw = raw
        self.length = len(raw)
        self.command = command
        self.family = family
        self.src = src  # (ip string, port) or None for LOCAL/UNSPEC
        self.dst = dst
        self.tlvs = tlvs  # {type: bytes}
        self.ssl = ssl  # SSLInfo or None

    def tlv(self, t):
        return self.tlvs.get(t)

    def text(self, t):
        v = self.tlvs.get(t)
        return None if v is None else v.decode("ascii", "strict")

    def __repr__(self):
        return (f"<PP2 cmd={self.command} fam=0x{self.family:02x} src={self.src} dst={self.dst} "
                f"tlvs={ {hex(k): v for k, v in self.tlvs.items()} } ssl={self.ssl}>")


def _parse_tlvs(data, where):
    out = {}
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise PP2Error(f"{where}: {len(data) - i} stray byte(s) after the last TLV")
        t, n = data[i], struct.unpack_from("!H", data, i + 1)[0]
        i += 3
        if i + n > len(data):
            raise PP2Error(f"{where}: TLV 0x{t:02x} of length {n} overruns the header "
                           f"({len(data) - i} bytes left)")
        if t in out:
            raise PP2Error(f"{where}: TLV 0x{t:02x} appears twice")
        out[t] = bytes(data[i:i + n])
        i += n
    return out


def parse(buf):
    """Parses one header at the start of buf. Returns (Header, bytes consumed).

    Raises Incomplete if buf ends before the header does, PP2Error if it is not a valid
    version 2 header."""
    buf = bytes(buf)
    if len(buf) < 16:
        if not SIGNATURE.startswith(buf[:12]):
            raise PP2Error(f"not a PROXY v2 signature: {buf[:16]!r}")
        raise Incomplete()
    if buf[:12] != SIGNATURE:
        raise PP2Error(f"not a PROXY v2 signature: {buf[:16]!r}")
    ver_cmd, fam, length = buf[12], buf[13], struct.unpack_from("!H", buf, 14)[0]
    if ver_cmd >> 4 != 2:
        raise PP2Error(f"version {ver_cmd >> 4}, expected 2")
    command = ver_cmd & 0x0F
    if command not in (CMD_LOCAL, CMD_PROXY):
        raise PP2Error(f"unknown command {command}")
    if len(buf) < 16 + length:
        raise Incomplete()
    body = buf[16:16 + length]
    raw = buf[:16 + length]
    if fam == FAM_TCP4:
        alen = 12
    elif fam == FAM_TCP6:
        alen = 36
    elif fam == FAM_UNSPEC:
        alen = 0
        if command == CMD_PROXY:
            raise PP2Error("command PROXY with family UNSPEC")
    else:
        raise PP2Error(f"family/transport 0x{fam:02x} is not TCP over IPv4/IPv6")
    if length < alen:
        raise PP2Error(f"length {length} shorter than the {alen}-byte address block")
    src = dst = None
    if fam == FAM_TCP4:
        s, d = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sp, dp = struct.unpack_from("!HH", body, 8)
        src, dst = (str(s), sp), (str(d), dp)
    elif fam == FAM_TCP6:
        s, d = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sp, dp = struct.unpack_from("!HH", body, 32)
        src, dst = (str(s), sp), (str(d), dp)
    tlvs = _parse_tlvs(body[alen:], "header")
    if TYPE_CRC32C in tlvs:
        v = tlvs[TYPE_CRC32C]
        if len(v) != 4:
            raise PP2Error(f"CRC32C TLV of length {len(v)}")
        # the checksum covers the whole header with the CRC field itself zeroed
        pos = raw.find(bytes([TYPE_CRC32C, 0, 4]) + v, 16 + alen)
        zeroed = raw[:pos + 3] + b"\0\0\0\0" + raw[pos + 7:]
        if crc32c(zeroed) != struct.unpack("!I", v)[0]:
            raise PP2Error("CRC32C mismatch")
    if TYPE_UNIQUE_ID in tlvs and len(tlvs[TYPE_UNIQUE_ID]) > MAX_UNIQUE_ID:
        raise PP2Error(f"UNIQUE_ID of {len(tlvs[TYPE_UNIQUE_ID])} bytes (max 128)")
    ssl = None
    if TYPE_SSL in tlvs:
        v = tlvs[TYPE_SSL]
        if len(v) < 5:
            raise PP2Error(f"PP2_TYPE_SSL of length {len(v)} (< 5)")
        client, verify = v[0], struct.unpack_from("!I", v, 1)[0]
        if client & ~0x07:
            raise PP2Error(f"PP2_TYPE_SSL client field 0x{client:02x} has unknown bits")
        ssl = SSLInfo(client, verify, _parse_tlvs(v[5:], "PP2_TYPE_SSL"))
    return Header(raw, command, fam, src, dst, tlvs, ssl), len(raw)


def encode(src, dst, tlvs=(), ssl=None, command=CMD_PROXY, crc=False):
    """A header: src/dst (ip, port) of one family; tlvs [(type, bytes)]; ssl (client, verify,
    [(subtype, bytes)]) or None. For checking the origins themselves."""
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if s.version != d.version:
        raise ValueError("mixed families")
    fam = FAM_TCP4 if s.version == 4 else FAM_TCP6
    body = s.packed + d.packed + struct.pack("!HH", src[1], dst[1])

    def tlv(t, v):
        return struct.pack("!BH", t, len(v)) + v
    for t, v in tlvs:
        body += tlv(t, v)
    if ssl is not None:
        client, verify, subs = ssl
        body += tlv(TYPE_SSL, struct.pack("!BI", client, verify)
                    + b"".join(tlv(t, v) for t, v in subs))
    if crc:
        body += tlv(TYPE_CRC32C, b"\0\0\0\0")
    head = SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body))
    out = head + body
    if crc:
        out = out[:-4] + struct.pack("!I", crc32c(out))
    return out
