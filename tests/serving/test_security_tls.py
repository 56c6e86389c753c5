"""TLS and mutual TLS on every port, not only gRPC (review finding 1).

With ``--tls-cert/--tls-key/--tls-client-ca`` the gRPC port demanded a client certificate while
the HTTP port answered plain text to anyone, so a ``--token`` crossed the network unencrypted.
Now the HTTP and metrics ports take the same certificate, key and client CA: a plain-text
client, a client without a certificate and a client whose certificate another CA signed all
fail the handshake, while a good client is served before and after them. Plain text beside a
TLS gRPC port needs ``http_plaintext`` (``--http-plaintext on``).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import httpx
import numpy as np
import pytest
from fixtures.server import ServerThread, make_config
from fixtures.toy_model import build_toy_model

from latentdial.client import Client, UnavailableError
from latentdial.serving.listener import TlsFilesError
from latentdial.serving.supervisor import free_port

pytestmark = pytest.mark.integration

TOKEN = "s3cret"


def _issue(subject: str, key, issuer=None, *, ca: bool):
    """A certificate for ``subject`` signed by ``issuer`` ((cert, key)), self-signed when None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """PEM files: a CA, a server and a client certificate it signed, and a client signed by another CA."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("pki")
    out: dict[str, bytes] = {}

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    for ca_name, leaves in (("ca", ("server", "client")), ("rogue-ca", ("rogue",))):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue(ca_name, ca_key, ca=True)
        out[f"{ca_name}.pem"] = ca_cert.public_bytes(serialization.Encoding.PEM)
        for leaf in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            out[f"{leaf}.pem"] = _issue("localhost", key, (ca_cert, ca_key), ca=False).public_bytes(
                serialization.Encoding.PEM)
            out[f"{leaf}.key"] = pem_key(key)
    for name, data in out.items():
        (d / name).write_bytes(data)
    return {name: str(d / name) for name in out}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-models")
    build_toy_model(root, "toy", "1")
    return root


def tls_context(pki: dict[str, str], client: str | None = None) -> ssl.SSLContext:
    """A client context that trusts the CA and presents ``client``'s certificate (none when None)."""
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    if client:
        ctx.load_cert_chain(pki[f"{client}.pem"], pki[f"{client}.key"])
    return ctx


def refused(url: str, **kwargs) -> str:
    """The transport error a GET of ``url`` fails with (the test fails if it is answered)."""
    try:
        r = httpx.get(url, timeout=5, **kwargs)
    except (httpx.TransportError, ssl.SSLError) as e:
        return type(e).__name__
    raise AssertionError(f"{url} answered {r.status_code} without a valid TLS client: {r.text[:200]}")


def test_http_and_metrics_serve_tls_with_the_grpc_certificate_and_refuse_plain_text(repo, pki):
    cfg = make_config(repo, tls_cert=pki["server.pem"], tls_key=pki["server.key"], token=TOKEN,
                      metrics_port=free_port())
    with ServerThread(cfg) as server:
        http, metrics = server.handle.http.port, server.handle.metrics_port
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # the attack of the review: plain HTTP (and the token in it) to the HTTP and metrics ports
        refused(f"http://127.0.0.1:{http}/v1/models", headers=auth)
        refused(f"http://127.0.0.1:{metrics}/metrics", headers=auth)
        # the same requests over TLS, checked against the CA, are answered
        ctx = tls_context(pki)
        r = httpx.get(f"https://localhost:{http}/v1/models", headers=auth, verify=ctx, timeout=5)
        assert r.status_code == 200 and r.json()["models"][0]["name"] == "toy"
        assert httpx.get(f"https://localhost:{http}/v1/models", verify=ctx, timeout=5).status_code == 401
        m = httpx.get(f"https://localhost:{metrics}/metrics", headers=auth, verify=ctx, timeout=5)
        assert m.status_code == 200 and "latentdial_requests_total" in m.text
        assert httpx.get(f"https://localhost:{http}/healthz", verify=ctx, timeout=5).status_code == 200
        with Client(f"localhost:{server.port}", tls_ca=pki["ca.pem"], token=TOKEN) as c:
            assert c.encode(np.zeros((1, 8, 8, 1), np.uint8)).mean.shape == (1, 4)


def test_mutual_tls_demands_a_client_certificate_on_every_port(repo, pki):
    cfg = make_config(repo, tls_cert=pki["server.pem"], tls_key=pki["server.key"], tls_client_ca=pki["ca.pem"],
                      metrics_port=free_port())
    with ServerThread(cfg) as server:
        for url in (f"https://localhost:{server.handle.http.port}/v1/models",
                    f"https://localhost:{server.handle.metrics_port}/metrics"):
            plain = url.replace("https://localhost", "http://127.0.0.1")
            refused(plain)  # plain text
            refused(url, verify=tls_context(pki))  # TLS without a client certificate
            rogue = ssl.create_default_context(cafile=pki["ca.pem"])
            rogue.load_cert_chain(pki["rogue.pem"], pki["rogue.key"])
            refused(url, verify=rogue)  # a certificate the client CA did not sign
            # nothing lost: a client with a good certificate is served after all of them
            assert httpx.get(url, verify=tls_context(pki, "client"), timeout=5).status_code == 200, url
        addr = f"localhost:{server.port}"
        with Client(addr, tls_ca=pki["ca.pem"], retries=0) as c, pytest.raises(UnavailableError):
            c.list_models(timeout_s=3)  # gRPC: no client certificate, as before
        with Client(addr, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"]) as c:
            assert c.list_models()[0].name == "toy"
        r = httpx.post(f"https://localhost:{server.handle.http.port}/v1/models/toy/decode",
                       json={"latents": [[0, 0, 0, 0]]}, verify=tls_context(pki, "client"), timeout=5)
        assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_plain_text_beside_tls_grpc_needs_http_plaintext(repo, pki):
    """A TLS-terminating proxy in front of HTTP: ``--http-plaintext on`` is the one way to plain text."""
    cfg = make_config(repo, tls_cert=pki["server.pem"], tls_key=pki["server.key"], http_plaintext=True,
                      metrics_port=free_port())
    with ServerThread(cfg) as server:
        assert httpx.get(f"http://127.0.0.1:{server.handle.http.port}/v1/models", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{server.handle.metrics_port}/metrics", timeout=5).status_code == 200
        with Client(f"127.0.0.1:{server.port}", retries=0) as c, pytest.raises(UnavailableError):
            c.list_models(timeout_s=2)  # gRPC stays TLS
        with Client(f"localhost:{server.port}", tls_ca=pki["ca.pem"]) as c:
            assert c.list_models()[0].name == "toy"


def test_an_unreadable_key_stops_start_up_instead_of_serving_http_in_plain_text(repo, pki, tmp_path):
    """The HTTP port never falls back to plain text: a key it cannot load fails start-up."""
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key\n")
    cfg = make_config(repo, tls_cert=pki["server.pem"], tls_key=str(bad_key), metrics_port=0)
    with pytest.raises(TlsFilesError, match="cannot load tls_cert"):
        ServerThread(cfg).start()
    cfg = make_config(repo, tls_cert=pki["server.pem"], tls_key=pki["server.key"], tls_client_ca=str(bad_key))
    with pytest.raises(TlsFilesError, match="cannot load tls_client_ca"):
        ServerThread(cfg).start()
