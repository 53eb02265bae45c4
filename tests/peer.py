"""The Python version's libraries, as a peer for the parity tests.

Usage: peer.py OPERATION, with a JSON object of arguments on stdin; prints a
JSON object. Each operation is what the Python functions do, with the same
libraries: bcrypt for passwords, cryptography's Fernet for 2FA secrets, pyotp
for TOTP. The jwt_* operations are what an application does with an access
token: PyJWT, with cryptography's Ed25519, verifying it against the jwks
function's output.
"""

import hashlib
import json
import sys

import bcrypt
import jwt
import pyotp
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


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


def jwt_verify(a):
    """Verifies an access token as an application would: the key named by the
    token's kid in the JWKS, EdDSA only, the expected audience and issuer."""
    keys = jwt.PyJWKSet.from_dict(a["jwks"])
    try:
        kid = jwt.get_unverified_header(a["token"]).get("kid")
        key = next((k for k in keys.keys if k.key_id == kid), None)
        if key is None:
            return {"ok": False, "error": "unknown kid"}
        claims = jwt.decode(a["token"], key=key.key, algorithms=["EdDSA"],
                            audience=a["audience"], issuer=a["issuer"],
                            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
        return {"ok": True, "claims": claims}
    except jwt.PyJWTError as e:
        return {"ok": False, "error": type(e).__name__}


def jwt_sign_with_new_key(a):
    """Signs `claims` with a fresh Ed25519 key, naming it `kid`: a forgery."""
    key = Ed25519PrivateKey.generate()
    return {"token": jwt.encode(a["claims"], key, algorithm="EdDSA",
                                headers={"kid": a["kid"]})}


OPERATIONS = {f.__name__: f for f in [
    bcrypt_hash, bcrypt_check, fernet_encrypt, fernet_decrypt, random_base32,
    totp_at, totp_verify, provisioning_uri, renewal_token, fernet_key,
    jwt_verify, jwt_sign_with_new_key,
]}

if __name__ == "__main__":
    args = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(OPERATIONS[sys.argv[1]](args)))
