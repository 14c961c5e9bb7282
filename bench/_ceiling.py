"""The ceiling of bench/service.py (issue 17, item 1): the least a signed submit can cost here.

A FastAPI app with one route, `POST /v1/messages`, that reads the body, looks the signing
device's Ed25519 key up by the request's keyid, verifies the RFC 9421 signature and the
Content-Digest exactly as the service does (`liaison.crypto.httpsig.verify_request`), and
answers 201. No database, no envelope parsing, no log, no nonce store: what is left is the
framework, TLS and one signature check. It runs on the service's own stack: uvicorn with
httptools (and uvloop where uvicorn picks it, as `liaison-server run` does), the same
certificate and key, TLS 1.3, the same garbage-collector settings, and as many worker
processes as the service under test.

With MODE `envelope`, the route also does the rest of what Liaison must verify for a submit
before it can accept it, and nothing else: it parses the body as JSON and its `envelope`
(`parse_envelope`), checks that the envelope's sender is the signing device, and verifies
the envelope's Ed25519 and ML-DSA-65 signatures by that device's bundle (`verify_envelope`).
What is left out is then Liaison's own work: the policy, the database, the log, the receipt.

Run by bench/service.py: python bench/_ceiling.py PORT CERT KEY KEYS_JSON WORKERS [MODE],
where KEYS_JSON maps each device id to its public key bundle (`PublicBundle.to_json`) and
MODE is `signature` (the default) or `envelope`.
"""

from __future__ import annotations

import json
import os
import ssl
import sys

KEYS_ENV = "LIAISON_BENCH_CEILING_KEYS"
MODE_ENV = "LIAISON_BENCH_CEILING_MODE"
MODES = ("signature", "envelope")


def make_app() -> object:
    """The app (a factory: every worker process builds its own)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    from liaison.crypto.envelope import parse_envelope, verify_envelope
    from liaison.crypto.errors import CryptoError, RequestSignatureError
    from liaison.crypto.httpsig import parse_signature_params, verify_request
    from liaison.crypto.keys import PublicBundle

    with open(os.environ[KEYS_ENV]) as f:
        bundles = {device: PublicBundle.from_json(b) for device, b in json.load(f).items()}
    keys = {device: b.ed25519 for device, b in bundles.items()}
    envelope = os.environ.get(MODE_ENV) == "envelope"
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def submit(request: Request) -> Response:
        body = await request.body()
        headers = list(request.headers.items())
        try:
            params = parse_signature_params(headers)
            key = keys.get(params.keyid)
            if key is None:
                return JSONResponse({"error": "unknown key"}, 401)
            verify_request("POST", str(request.url), headers, body, key)
        except (RequestSignatureError, ValueError) as e:
            return JSONResponse({"error": str(e)}, 401)
        if envelope:
            try:
                # verify_envelope also refuses an envelope whose sender is not this bundle's device
                verify_envelope(parse_envelope(json.loads(body)["envelope"]), bundles[params.keyid])
            except (CryptoError, ValueError, KeyError, TypeError) as e:
                return JSONResponse({"error": str(e)}, 422)
        return JSONResponse({"accepted": True}, 201)

    app.add_route("/v1/messages", submit, methods=["POST"])
    return app


def main() -> None:
    import uvicorn

    port, cert, key, keys_file, workers = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else MODES[0]
    if mode not in MODES:
        raise SystemExit(f"_ceiling.py: MODE must be one of {', '.join(MODES)}, not {mode!r}")
    os.environ[KEYS_ENV] = keys_file
    os.environ[MODE_ENV] = mode
    config = uvicorn.Config(
        "_ceiling:make_app",
        factory=True,
        host="127.0.0.1",
        port=int(port),
        workers=int(workers),
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        ws="none",
        server_header=False,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    from liaison.service.ops.collector import collect_less

    collect_less()  # as liaison-server run (tune_gc)
    if int(workers) == 1:
        config.load()
        assert config.ssl is not None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3  # as liaison-server run
        uvicorn.Server(config).run()
    else:  # each worker loads the config itself: TLS 1.3 is what the client negotiates anyway
        sock = config.bind_socket()
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
