"""`init`'s development certificate is a leaf, not a CA, and clients still trust it as their
own anchor with `--ca-cert cert.pem`: real TLS handshakes with httpx and the `liaison` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.service.harness import free_port, server_env, start_server, stop, tls_context, wait_ready

BIN = Path(sys.executable).parent


def _init(data: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(BIN / "liaison-server"),
            "init",
            "--data-dir",
            str(data),
            "--json",
            "--tls-host",
            "liaison.test",
        ],
        env=server_env(),
        capture_output=True,
        check=True,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


def test_the_development_certificate_is_a_server_leaf(tmp_path: Path) -> None:
    result = _init(tmp_path / "data")
    cert = x509.load_pem_x509_certificate(Path(result["tls_cert"]).read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.key_encipherment)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "liaison.test"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


@pytest.mark.slow
def test_clients_trust_the_leaf_with_ca_cert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = _init(data)
    port = free_port()
    proc = start_server(data, port, server_env())
    try:
        wait_ready(proc, f"https://127.0.0.1:{port}", result["tls_cert"])
        for host in ("127.0.0.1", "localhost"):
            r = httpx.get(f"https://{host}:{port}/healthz", verify=tls_context(result["tls_cert"]), timeout=5)
            assert r.status_code == 200
        # Another self-signed certificate is not trusted in its place.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            other = _init(tmp_path / "other")
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=tls_context(other["tls_cert"]), timeout=5)
        # The `liaison` CLI enrols the root over TLS, trusting only the file it was given.
        env = {
            **server_env(),
            "LIAISON_HOME": str(tmp_path / "home"),
            "LIAISON_PASSPHRASE": "correct horse battery staple, twice over",
        }
        run = subprocess.run(
            [
                str(BIN / "liaison"),
                "--json",
                "enrol",
                "--server",
                f"https://localhost:{port}",
                "--ca-cert",
                result["tls_cert"],
                "--code",
                result["root_enrolment_code"],
                "--principal",
                "root",
                "--log-key",
                result["log_verifier_key"],
            ],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        who = subprocess.run(
            [str(BIN / "liaison"), "--json", "whoami"], env=env, capture_output=True, timeout=120
        )
        assert who.returncode == 0, who.stderr.decode()[-2000:]
        assert json.loads(who.stdout)["principal"] == "root"
    finally:
        stop(proc)
