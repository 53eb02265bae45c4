"""The Python version's libraries, as a peer for the parity tests.

Usage: peer.py OPERATION, with a JSON object of arguments on stdin; prints a
JSON object. Each operation is what the Python functions do, with the same
libraries: bcrypt for passwords, cryptography's Fernet for 2FA secrets, pyotp
for TOTP.
"""

import hashlib
import json
import sys

import bcrypt
import pyotp
from cryptography.fernet import Fernet, MultiFernet


def bcrypt_hash(a):
    salt = bcrypt.gensalt(rounds=a.get("rounds", 12))
    return {"hash": bcrypt.hashpw(a["password"].encode(), salt).decode()}


def bcrypt_check(a):
    return {"ok": bcrypt.checkpw(a["password"].encode(), a["hash"].encode())}


def fernet_encrypt(a):
    f = Fernet(a["key"].encode())
    data = a["plaintext"].encode()
    token = f.encrypt_at_time(data, a["at"]) if "at" in a else f.encrypt(data)
    return {"token": token.decode()}


def fernet_decrypt(a):
    f = MultiFernet([Fernet(k.encode()) for k in a["keys"]])
    return {"plaintext": f.decrypt(a["token"].encode()).decode()}


def random_base32(a):
    return {"secret": pyotp.random_base32()}


def totp_at(a):
    return {"code": pyotp.TOTP(a["secret"]).at(a["at"])}


def totp_verify(a):
    return {"ok": pyotp.TOTP(a["secret"]).verify(a["code"], for_time=a["at"])}


def provisioning_uri(a):
    uri = pyotp.TOTP(a["secret"]).provisioning_uri(name=a["name"], issuer_name=a["issuer"])
    return {"uri": uri}


def renewal_token(a):
    """A renewal token as our functions make it, dated `at`: to test expiry."""
    fingerprint = hashlib.sha256(a["password_hash"].encode()).hexdigest()
    payload = json.dumps({"purpose": "cofrap-renewal-v1", "username": a["username"],
                          "credentials": fingerprint})
    return fernet_encrypt({"key": a["key"], "plaintext": payload, "at": a["at"]})


def fernet_key(a):
    return {"key": Fernet.generate_key().decode()}


OPERATIONS = {f.__name__: f for f in [
    bcrypt_hash, bcrypt_check, fernet_encrypt, fernet_decrypt, random_base32,
    totp_at, totp_verify, provisioning_uri, renewal_token, fernet_key,
]}

if __name__ == "__main__":
    args = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(OPERATIONS[sys.argv[1]](args)))
