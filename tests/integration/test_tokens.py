"""OAuth2 access tokens beside the API keys (issue 27), against a real
OpenID provider: Ory Hydra, built from the Go module proxy, in memory.
Tokens come by client credentials; the dispatcher finds Hydra's keys
through its discovery document. Then the hostile cases: expired, not yet
valid, another audience, another issuer, "none" and HS256 for an RSA key,
a tampered signature, a key the provider does not publish, a key rotated
in at the provider (ES256) and one removed, tokens of 9 KB and 100 KB.
Tokens with claims of our choosing are signed with a key imported into
Hydra, so the provider publishes it in its JWKS like its own."""

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from harness import StackTestCase, metric_samples, request, stackmod, wait_until

CLIENT, SECRET = "switchboard-test", "switchboard-test-secret-0123456789"
AUDIENCE = "switchboard"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_ints(der):
    """The INTEGERs of a DER SEQUENCE (a PKCS#1 RSAPrivateKey)."""
    def length(pos):
        n = der[pos]
        pos += 1
        if n & 0x80:
            k = n & 0x7f
            n, pos = int.from_bytes(der[pos:pos + k], "big"), pos + k
        return n, pos
    _, pos = length(1)
    out = []
    while pos < len(der):
        n, pos = length(pos + 1)
        out.append(int.from_bytes(der[pos:pos + n], "big"))
        pos += n
    return out


def rsa_jwk(kid):
    """A new RSA key pair as a private JWK (openssl makes it)."""
    with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", pem.name], check=True, capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", pem.name, "-traditional", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    _, n, e, d, p, q, dp, dq, qi = der_ints(der)[:9]
    enc = lambda i: b64u(i.to_bytes((i.bit_length() + 7) // 8, "big"))  # noqa: E731
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            **{k: enc(v) for k, v in dict(n=n, e=e, d=d, p=p, q=q, dp=dp, dq=dq, qi=qi).items()}}


def signing_input(header, claims):
    enc = lambda o: b64u(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
    return f"{enc(header)}.{enc(claims)}"


def sign_rs256(jwk, claims, header=None):
    """RS256 (PKCS#1 v1.5 with SHA-256), by hand: no crypto package needed."""
    si = signing_input({"alg": "RS256", "kid": jwk["kid"], "typ": "JWT", **(header or {})}, claims)
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
    d = int.from_bytes(base64.urlsafe_b64decode(jwk["d"] + "=="), "big")
    k = (n.bit_length() + 7) // 8
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(si.encode()).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return si + "." + b64u(pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big"))


class TestTokens(StackTestCase):
    ROLES = ("persister",)

    @classmethod
    def configure(cls, stack):
        cls.issuer, cls.admin = stack.start_hydra()
        cls.hydra_admin("POST", "/admin/clients", {
            "client_id": CLIENT, "client_secret": SECRET, "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "switchboard:admin switchboard:read other:scope", "audience": [AUDIENCE, "other-api"]})
        stack.extra_env.update({"SB_JWT_ISSUER": cls.issuer, "SB_JWT_AUDIENCE": AUDIENCE,
                                "SB_JWT_SCOPE_CLAIM": "scp", "SB_JWT_REFRESH_MIN_S": "1"})
        # Hydra makes its signing keys (RSA-4096) on first use, which takes
        # seconds on a busy machine: a deployed provider has them already.
        urllib.request.urlopen(cls.issuer + ".well-known/jwks.json", timeout=120).read()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The dispatcher's first fetch of the keys is done (until then a
        # token gets 503 keys_unavailable: test_08).
        wait_until("the dispatcher has the provider's keys", lambda: sum(metric_samples(
            request(cls.port, "GET", "/metrics").body.decode(), "switchboard_jwks_keys").values()) > 0, timeout=60)

    @classmethod
    def hydra_admin(cls, method, path, body=None):
        req = urllib.request.Request(cls.admin + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
        return json.loads(text) if text else None

    def token(self, scope="switchboard:admin", audience=AUDIENCE):
        """An access token from Hydra's token endpoint, by client credentials."""
        form = {"grant_type": "client_credentials", "scope": scope}
        if audience:
            form["audience"] = audience
        basic = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
        req = urllib.request.Request(self.issuer + "oauth2/token", data=urllib.parse.urlencode(form).encode(),
                                     headers={"Authorization": f"Basic {basic}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["access_token"]

    def with_token(self, method, path, token, body=None):
        return request(self.port, method, path, body, {"Authorization": f"Bearer {token}"})

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": self.issuer, "sub": "crafted", "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 600,
             "scp": ["switchboard:admin"]}
        c.update(over)
        return c

    def imported_key(self):
        """A key of ours that Hydra publishes (imported into its access-token
        set; made once, put again each time: test_06 may have removed it)."""
        if not hasattr(type(self), "jwk"):
            type(self).jwk = rsa_jwk("imported-" + secrets.token_hex(4))
        jwk = type(self).jwk
        self.hydra_admin("PUT", f"/admin/keys/hydra.jwt.access-token/{jwk['kid']}", jwk)
        return jwk

    def assert_refused(self, r, status=401, error="invalid_token", why=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"]["code"], error, r)
        challenge = r.headers.get("WWW-Authenticate", "")
        self.assertIn('Bearer realm="switchboard"', challenge)
        self.assertIn(f'error="{error}"', challenge)
        if why:
            self.assertIn(why, r.json()["error"]["message"])

    def test_01_client_credentials(self):
        """A token by client credentials does what its scope says: admin
        everything an admin key may, read only the read routes."""
        admin = self.token("switchboard:admin")
        r = self.with_token("POST", "/api/v1/applications", admin, {"name": "by-token"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", admin).status, 200)

        read = self.token("switchboard:read")
        r = self.with_token("GET", "/ops/v1/overview", read)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["access"], "read")
        r = self.with_token("POST", "/api/v1/applications", read, {"name": "no"})
        self.assert_refused(r, 403, "insufficient_scope")
        self.assertIn('scope="switchboard:admin"', r.headers["WWW-Authenticate"])
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", self.token("other:scope")), 403,
                            "insufficient_scope")
        # The API keys still work beside the tokens.
        self.assertEqual(self.http("GET", "/ops/v1/overview").status, 200)

    def test_02_audience_and_issuer(self):
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", self.token(audience="other-api")),
                            why="aud")
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", self.token(audience=None)), why="aud")
        jwk = self.imported_key()
        good = sign_rs256(jwk, self.claims())
        # The first use of a key the dispatcher has not fetched waits for the fetch.
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", good).status, 200)
        self.assert_refused(self.with_token("GET", "/ops/v1/overview",
                                            sign_rs256(jwk, self.claims(iss="http://127.0.0.1:1/"))),
                            why="another issuer")

    def test_03_times(self):
        jwk = self.imported_key()
        now = int(time.time())
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", sign_rs256(jwk, self.claims())).status, 200)
        self.assert_refused(self.with_token("GET", "/ops/v1/overview",
                                            sign_rs256(jwk, self.claims(exp=now - 120, iat=now - 900, nbf=now - 900))),
                            why="expired")
        self.assert_refused(self.with_token("GET", "/ops/v1/overview",
                                            sign_rs256(jwk, self.claims(nbf=now + 300))), why="not valid yet")
        # Within the leeway (30 s) either way: taken.
        self.assertEqual(self.with_token("GET", "/ops/v1/overview",
                                         sign_rs256(jwk, self.claims(exp=now - 5, nbf=now + 5))).status, 200)
        no_exp = self.claims()
        del no_exp["exp"]
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", sign_rs256(jwk, no_exp)))

    def test_04_algorithms_and_signatures(self):
        real = self.token()
        header, payload, sig = real.split(".")
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", real).status, 200)
        kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
        # "none", and HS256 keyed with the RSA key's public modulus
        none = signing_input({"alg": "none", "kid": kid}, json.loads(base64.urlsafe_b64decode(payload + "==")))
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", none + "."), why="algorithm")
        jwks = json.loads(urllib.request.urlopen(self.issuer + ".well-known/jwks.json", timeout=5).read())
        n = next(k["n"] for k in jwks["keys"] if k["kid"] == kid)
        si = signing_input({"alg": "HS256", "kid": kid}, json.loads(base64.urlsafe_b64decode(payload + "==")))
        forged = si + "." + b64u(hmac.new(n.encode(), si.encode(), hashlib.sha256).digest())
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", forged), why="algorithm")
        # tampered: the signature's last byte, or the payload's scope
        flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", f"{header}.{payload}.{flipped}"),
                            why="signature")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["sub"] = "someone-else"
        other = b64u(json.dumps(claims, separators=(",", ":")).encode())
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", f"{header}.{other}.{sig}"), why="signature")
        # a key the provider does not publish: refused after one fetch
        stranger = sign_rs256(rsa_jwk("never-published"), self.claims())
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", stranger), why="does not publish")
        # nothing of a refused token reaches the log
        with open(self.stack.log("dispatcher"), errors="replace") as f:
            log = f.read()
        for t in (real, forged, flipped, stranger):
            self.assertNotIn(t.split(".")[-1][:40], log)

    def test_05_unknown_kids_do_not_hammer_the_provider(self):
        """Fifty tokens with made-up key ids at once, then five in a row:
        each waits for the next fetch of the keys and is refused; the keys
        are fetched at most once per jwt_refresh_min_s (1 s here), not once
        per token."""
        def fetches():
            text = request(self.port, "GET", "/metrics").body.decode()
            return sum(metric_samples(text, "switchboard_jwks_fetches_total").values())
        jwk = rsa_jwk("made-up")
        tokens = []
        for i in range(50):
            jwk["kid"] = f"made-up-{i}"
            tokens.append(sign_rs256(jwk, self.claims()))
        before, t0 = fetches(), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda t: self.with_token("GET", "/ops/v1/overview", t), tokens))
        for r in results:
            self.assert_refused(r, why="does not publish")
        for t in tokens[:5]:  # and one after the other
            self.assert_refused(self.with_token("GET", "/ops/v1/overview", t), why="does not publish")
        elapsed = time.monotonic() - t0
        # Hydra's JWKS says no-cache, so the periodic refresh runs once a
        # second too: one fetch per second at most, and the one in flight.
        self.assertLessEqual(fetches() - before, int(elapsed) + 2)

    def test_06_rotation(self):
        """A key rotated in at the provider (ES256) is taken on its first
        token; a key removed there stops being taken."""
        old = self.token()
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", old).status, 200)
        kid = "rot-ec-" + secrets.token_hex(4)
        self.hydra_admin("POST", "/admin/keys/hydra.jwt.access-token", {"alg": "ES256", "kid": kid, "use": "sig"})
        new = self.token()
        self.assertEqual(json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["alg"], "ES256")
        self.assertEqual(json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"], kid)
        r = self.with_token("POST", "/api/v1/applications", new, {"name": "after-rotation"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", old).status, 200)  # still published
        old_kid = json.loads(base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"]
        self.hydra_admin("DELETE", f"/admin/keys/hydra.jwt.access-token/{old_kid}")
        wait_until("the removed key's token refused",
                   lambda: self.with_token("GET", "/ops/v1/overview", old).status == 401, timeout=15)
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", new).status, 200)

    def test_07_oversized(self):
        """9 KB: over the token limit (8 KB), refused unread (401). 100 KB: over
        the request head limit (431). The dispatcher serves on."""
        big = sign_rs256(self.imported_key(), self.claims(pad="x" * 6000))
        self.assert_refused(self.with_token("GET", "/ops/v1/overview", big), why="well-formed")
        r = self.with_token("GET", "/ops/v1/overview", "eyJ" + "A" * 100_000 + ".e30.sig")
        self.assertEqual(r.status, 431, r)
        self.assertEqual(r.json()["error"]["code"], "headers_too_large")
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", self.token()).status, 200)

    def test_08_provider_away_at_start(self):
        """A dispatcher whose provider has never answered says 503 with
        Retry-After for a token (not 401: the token may be good), and its
        API keys work."""
        port = stackmod.free_port()
        self.stack.start_dispatcher("dispatcher-nokeys", extra=("--jwt-issuer", "http://127.0.0.1:9/"), port=port)
        self.addCleanup(self.stack.stop, "dispatcher-nokeys")
        r = request(port, "GET", "/ops/v1/overview", headers={"Authorization": f"Bearer {self.token()}"})
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "keys_unavailable")
        self.assertEqual(r.headers.get("Retry-After"), "1")
        r = request(port, "GET", "/ops/v1/overview", headers={"Authorization": f"Bearer {self.stack.api_key}"})
        self.assertEqual(r.status, 200, r)


    def test_09_websocket(self):
        """A WebSocket opens with an access token as with a key (checked
        once, at the upgrade); a bad one gets 401."""
        for tok, want in ((self.token(), b"101"), (self.token("switchboard:read"), b"101"),
                          (sign_rs256(rsa_jwk("nobody"), self.claims()), b"401")):
            with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
                s.sendall(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           f"Authorization: Bearer {tok}\r\n\r\n").encode())
                self.assertEqual(s.recv(65536).split(b" ")[1], want)

    def test_10_websocket_token_expires(self):
        """A WebSocket opened with a token serves until the token's exp
        (with the leeway): the commands after it answer 401."""
        from websockets.asyncio.client import connect  # PyPI: websockets (the venv's)
        app = self.http("POST", "/api/v1/applications", {"name": "ws-exp"}).json()["token"]
        jwk = self.imported_key()
        self.assertEqual(self.with_token("GET", "/ops/v1/overview", sign_rs256(jwk, self.claims())).status, 200)
        now = int(time.time())
        tok = sign_rs256(jwk, self.claims(exp=now - 26, iat=now - 600, nbf=now - 600))  # 4 s of leeway left

        async def run():
            async with connect(f"ws://127.0.0.1:{self.port}/ws",
                               additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
                await ws.send(json.dumps({"id": 1, "op": "chat.create", "token": app}))
                first = json.loads(await ws.recv())
                await asyncio.sleep(5)
                await ws.send(json.dumps({"id": 2, "op": "chat.create", "token": app}))
                return first, json.loads(await ws.recv())
        first, second = asyncio.run(run())
        self.assertEqual(first["status"], 201, first)
        self.assertEqual(second["status"], 401, second)
        self.assertEqual(second["body"]["error"]["code"], "invalid_token")

if __name__ == "__main__":
    unittest.main()
