"""`liaison-server export-trust`: what clients and auditors pin, printed from the data directory
(in a container: `docker compose exec -T liaison-1 liaison-server export-trust --cert > cert.pem`).

Only public material: the TLS certificate clients trust (`--ca-cert`) and the audit log's
verifier key (`--log-key`), with the certificate's SHA-256 fingerprint to read out over another
channel. No key, code or token is ever printed by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import StartupError, load_log_signer, load_settings

__all__ = ["export_trust", "trust_material"]


def trust_material(data_dir: Path | None) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    settings = load_settings(data_dir)
    try:
        pem = settings.tls_cert.read_bytes()
    except OSError as e:
        raise StartupError(f"the TLS certificate {settings.tls_cert} is unreadable: {e.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise StartupError(f"{settings.tls_cert} is not a PEM certificate") from None
    try:
        names = [
            str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ]
    except x509.ExtensionNotFound:
        names = []
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    verifier = load_log_signer(settings.log_key_path, settings.origin).verifier
    return {
        "origin": settings.origin,
        "public_url": settings.public_url,
        "log_verifier_key": verifier.key_string,
        "tls_cert": str(settings.tls_cert),
        "tls_cert_pem": pem.decode("ascii", "replace"),
        "tls_cert_sha256": fingerprint,
        "tls_names": names,
        "tls_not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def export_trust(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    cert_only: Annotated[
        bool, typer.Option("--cert", help="Print only the PEM certificate (redirect it to cert.pem)")
    ] = False,
) -> None:
    """Print the TLS certificate clients trust and the log verifier key they pin (public only)."""
    trust = trust_material(data_dir)
    if cert_only:
        typer.echo(trust["tls_cert_pem"], nl=False)
        return
    if as_json:
        typer.echo(json.dumps(trust, indent=2))
        return
    typer.echo(f"Log verifier key (clients' and auditors' --log-key; origin {trust['origin']}):")
    typer.echo(f"    {trust['log_verifier_key']}")
    typer.echo(
        f"TLS certificate (clients' --ca-cert), names {', '.join(trust['tls_names']) or 'none'}, "
        f"valid until {trust['tls_not_after']}, SHA-256 {trust['tls_cert_sha256']}:"
    )
    typer.echo(trust["tls_cert_pem"], nl=False)
