#!/usr/bin/env python3
"""Format v2 test vectors, both ways, with an implementation of its own (Python `cryptography`,
OpenSSL underneath), written from docs/sealing.md and not from the Rust code:

  1. seal every vector of tests/fixtures/crypto/vectors.txt for the two TEST-ONLY fixture keys
     (sealing-key and sealing-key-2) into <name>.v2-python.b64, which the unit tests open
     (src/crypto/tests.rs) with either key;
  2. open, with either fixture key, what `mltenant seal --format v2` sealed for both
     (<name>.v2-mltenant.b64, written here by the binary given as the first argument).

With `--check` nothing is written: what `mltenant seal --format v2` seals now, and the committed
vectors of both directions, are opened with either key (hack/test-v2-vectors.sh, part of
`make tools`). Key name of every vector: `v`. Usage (hack/v2-vectors.sh wraps it):
  hack/v2-vectors.py target/debug/mltenant [--check]
"""
import base64
import hashlib
import os
import pathlib
import struct
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FIX = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/crypto"
MAGIC = b"MLT2"
KEY_NAME = "v"


def label(scope, tenant, environment):
    return {"Cluster": b"", "Tenant": tenant.encode(), "Environment": f"{tenant}/{environment}".encode()}[scope]


def key_id(cert):
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:8]


def oaep(lbl):
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=lbl or None)


def aad(header, name, lbl):
    return header + struct.pack(">H", len(name)) + name.encode() + struct.pack(">H", len(lbl)) + lbl


def seal(certs, lbl, name, plaintext):
    data_key = os.urandom(32)
    header = MAGIC + bytes([len(certs)])
    for cert in certs:
        wrapped = cert.public_key().encrypt(data_key, oaep(lbl))
        header += key_id(cert) + struct.pack(">H", len(wrapped)) + wrapped
    nonce = os.urandom(12)
    return header + nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad(header, name, lbl))


def open_value(key, cert, lbl, name, raw):
    assert raw[:4] == MAGIC, "not a v2 value"
    count, at = raw[4], 5
    assert 1 <= count <= 16
    stanzas = {}
    for _ in range(count):
        kid, (length,) = raw[at:at + 8], struct.unpack(">H", raw[at + 8:at + 10])
        stanzas[kid] = raw[at + 10:at + 10 + length]
        at += 10 + length
    header, nonce, sealed = raw[:at], raw[at:at + 12], raw[at + 12:]
    data_key = key.decrypt(stanzas[key_id(cert)], oaep(lbl))
    return AESGCM(data_key).decrypt(nonce, sealed, aad(header, name, lbl))


def main():
    mltenant = sys.argv[1]
    check = sys.argv[2:] == ["--check"]
    pairs = []
    for stem in ("sealing-key", "sealing-key-2"):
        cert = x509.load_pem_x509_certificate((FIX / f"{stem}.crt").read_bytes())
        key = serialization.load_pem_private_key((FIX / f"{stem}.key").read_bytes(), password=None)
        pairs.append((key, cert))
    certs = [c for _, c in pairs]
    for line in (FIX / "vectors.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, scope, tenant, environment = line.split()
        lbl = label(scope, tenant, environment)
        plaintext = (FIX / f"{name}.plain").read_bytes()
        if check:
            # What the unit tests open (python -> mltenant) and what mltenant sealed before.
            committed = [(FIX / f"{name}.v2-{by}.b64").read_text() for by in ("python", "mltenant")]
            for value in committed:
                for key, cert in pairs:
                    got = open_value(key, cert, lbl, KEY_NAME, base64.b64decode(value))
                    assert got == plaintext, f"{name}: a committed vector opened to other bytes"
        else:
            ours = seal(certs, lbl, KEY_NAME, plaintext)
            (FIX / f"{name}.v2-python.b64").write_text(base64.b64encode(ours).decode() + "\n")
            for key, cert in pairs:
                assert open_value(key, cert, lbl, KEY_NAME, ours) == plaintext, f"{name}: own round trip"
        args = [mltenant, "seal", "--format", "v2", "--name", name, "--scope", scope,
                "--from-file", f"{KEY_NAME}={FIX / f'{name}.plain'}"]
        for stem in ("sealing-key", "sealing-key-2"):
            args += ["--cert", str(FIX / f"{stem}.crt")]
        if tenant != "-":
            args += ["--tenant", tenant]
        if environment != "-":
            args += ["--environment", environment]
        if scope == "Cluster":
            args += ["--tenant-selector", ""]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        value = next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith(f"    {KEY_NAME}: "))
        if not check:
            (FIX / f"{name}.v2-mltenant.b64").write_text(value + "\n")
        for key, cert in pairs:
            got = open_value(key, cert, lbl, KEY_NAME, base64.b64decode(value))
            assert got == plaintext, f"{name}: mltenant's v2 value opened to other bytes"
        print(f"{name}: python -> mltenant and mltenant -> python ok ({len(base64.b64decode(value))} bytes)", flush=True)


if __name__ == "__main__":
    main()
