"""Read a Flask session cookie without its secret key: it is signed, not encrypted.

    python3 apps/decode_session.py 'eyJ1c2VyIjoiYWRhIn0.aw404w.anB4MLi1umDzVtZxxh7JISPNlFM'
    python3 apps/decode_session.py 'eyJ1c2VyIjoiYWRhIn0.aw404w.anB4MLi1umDzVtZxxh7JISPNlFM' dev-only-secret-for-the-lesson

(`session=VALUE` as copied from a browser or a curl cookie jar works too.)
The cookie is three base64url parts joined by dots:

    PAYLOAD . TIMESTAMP . SIGNATURE

PAYLOAD is the session as JSON (zlib-compressed first, and then the cookie
starts with a dot, when that is shorter); TIMESTAMP is when it was signed;
SIGNATURE is an HMAC of the first two parts, which only the secret key can
make. Decoding needs no key. Given the key as a second argument, the script
also checks the signature the way Flask does (itsdangerous: HMAC-SHA1 with a
key derived from the secret and the salt "cookie-session"). Standard library
only, so it runs with any python3.
"""
import base64
import datetime
import hashlib
import hmac
import json
import sys
import zlib


def b64decode(part):
    """base64url without the '=' padding, as itsdangerous writes it."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    cookie = sys.argv[1].strip().rstrip(";").removeprefix("session=")
    compressed = cookie.startswith(".")
    try:
        payload, timestamp, signature = cookie.removeprefix(".").split(".")
    except ValueError:
        sys.exit("not a Flask session cookie: expected PAYLOAD.TIMESTAMP.SIGNATURE")

    try:
        data = b64decode(payload)
        if compressed:
            data = zlib.decompress(data)
        session = json.loads(data)
        signed_at = datetime.datetime.fromtimestamp(
            int.from_bytes(b64decode(timestamp), "big"), datetime.timezone.utc)
    except (ValueError, zlib.error) as error:
        sys.exit(f"not a Flask session cookie: {error}")

    print("session:  ", json.dumps(session, indent=2, ensure_ascii=False))
    print("signed at:", signed_at.isoformat())
    print("signature:", b64decode(signature).hex(), "(HMAC-SHA1, needs the secret key)")

    if len(sys.argv) == 3:
        secret = sys.argv[2].encode("utf-8")
        key = hmac.new(secret, b"cookie-session", hashlib.sha1).digest()
        signed = (("." if compressed else "") + payload + "." + timestamp).encode("ascii")
        expected = hmac.new(key, signed, hashlib.sha1).digest()
        valid = hmac.compare_digest(expected, b64decode(signature))
        print("checked with the key given:", "valid" if valid else "NOT valid (forged, changed, or another key)")


if __name__ == "__main__":
    main()
