"""The Liaison demo: a three-nation exchange end to end, against a real TLS server it starts.

Run it with `bash scripts/demo.sh` (which prepares .venv). It initialises a server in a
temporary data directory, starts it with TLS, creates nation admins and principals for USA,
UKR and FRA (an analyst each, a Ukrainian partner system, an auditor), sends messages at
UNCLASSIFIED, SECRET//REL TO UKR, USA and in a compartment, shows who can read what and who
is refused, revokes a device, and ends with the auditor verifying and cosigning the log.
Every step is a `liaison` command (printed before it runs) or, for the partner system, a few
lines of the Python library. The server it started is stopped on every exit path.

Exit status 0 only if every step did what it should, refusals included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
PASSPHRASE = "demo passphrase, never use it for real"  # noqa: S105 -- a demo, in a temp dir
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("", "", "", "", "")
)

STIX = {
    "type": "bundle",
    "id": "bundle--6f0a8b34-4f43-4a07-9d5b-0e3c6f6c2b11",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--2f7c4a1e-8a51-4bc1-9a6b-5b3cf2a7e9d4",
            "created": "2026-11-25T08:00:00.000Z",
            "modified": "2026-11-25T08:00:00.000Z",
            "name": "Shahed C2 relay",
            "pattern_type": "stix",
            "pattern": "[ipv4-addr:value = '203.0.113.45']",
            "valid_from": "2026-11-25T08:00:00Z",
        }
    ],
}


class DemoFailed(Exception):
    pass


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "server"
        self.env = {
            **os.environ,
            "LIAISON_HOME": str(root / "home"),
            "LIAISON_PASSPHRASE": PASSPHRASE,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("LIAISON_PROFILE", None)
        self.server: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.url = f"https://localhost:{self.port}"
        self.step_no = 0
        self.witness_keys: list[str] = []

    # --- printing and running -----------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n{BOLD}== {self.step_no}. {title}{RESET}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.fill(text, 100), flush=True)

    def liaison(
        self,
        profile: str | None,
        *args: str,
        stdin: bytes | None = None,
        expect: str = "ok",
        quiet: bool = False,
    ) -> str:
        """Run `liaison`; `expect` is "ok" or "refused" (exit 1 with a reason on stderr)."""
        argv = [str(BIN / "liaison"), *(["--profile", profile] if profile else []), *args]
        shown = " ".join(_quote(a) for a in ["liaison", *argv[1:]])
        if not quiet:
            print(f"{DIM}$ {shown}{RESET}", flush=True)
        r = subprocess.run(  # noqa: S603 -- our own CLI
            argv,
            input=stdin,
            capture_output=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        out, err = r.stdout.decode(), r.stderr.decode().strip()
        if not quiet and out.strip():
            print(out.rstrip(), flush=True)
        if expect == "ok" and r.returncode != 0:
            raise DemoFailed(f"`{shown}` failed: {err}")
        if expect == "refused":
            if r.returncode != 1 or not err:
                raise DemoFailed(f"`{shown}` should have been refused (exit {r.returncode})")
            print(f"{RED}x{RESET} {err}", flush=True)
        return out

    def json(self, profile: str | None, *args: str, stdin: bytes | None = None) -> Any:
        return json.loads(self.liaison(profile, "--json", *args, stdin=stdin, quiet=True))

    # --- the server ---------------------------------------------------------------------------

    def init_server(self) -> dict[str, Any]:
        argv = [str(BIN / "liaison-server"), "init", "--data-dir", str(self.data), "--json"]
        r = subprocess.run(  # noqa: S603 -- our own CLI
            argv,
            capture_output=True,
            env=self.env,
            check=False,
            timeout=120,
        )
        if r.returncode != 0:
            raise DemoFailed(f"liaison-server init failed: {r.stderr.decode().strip()}")
        return dict(json.loads(r.stdout))

    def server_refuses(self, *args: str) -> None:
        """Run `liaison-server ARGS`, which must refuse (exit 2, one line on stderr)."""
        print(f"{DIM}$ liaison-server {' '.join(_quote(a) for a in args)}{RESET}", flush=True)
        r = subprocess.run(  # noqa: S603 -- our own CLI
            [str(BIN / "liaison-server"), *args], capture_output=True, env=self.env, timeout=120, check=False
        )
        err = r.stderr.decode().strip()
        if r.returncode != 2 or len(err.splitlines()) != 1:
            raise DemoFailed(
                f"`liaison-server {' '.join(args)}` should have been refused (exit {r.returncode})"
            )
        print(f"{RED}x{RESET} {err}", flush=True)

    def start_server(self) -> None:
        env = dict(self.env)
        if self.witness_keys:
            env["LIAISON_WITNESS_KEYS"] = json.dumps(self.witness_keys)
        with (self.root / "server.log").open("ab") as log:  # the child keeps its copy
            self.server = subprocess.Popen(  # noqa: S603 -- our own console script
                [str(BIN / "liaison-server"), "run", "--data-dir", str(self.data), "--port", str(self.port)],
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        ctx = ssl.create_default_context(cafile=str(self.data / "tls" / "cert.pem"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise DemoFailed(f"the server exited; see {self.root / 'server.log'}")
            try:
                with urllib.request.urlopen(  # noqa: S310 -- our own https URL
                    f"{self.url}/readyz",
                    context=ctx,
                    timeout=2,
                ):
                    print(f"server ready at {self.url} (TLS, certificate {self.data}/tls/cert.pem)")
                    return
            except OSError:
                time.sleep(0.2)
        raise DemoFailed("the server did not become ready within 60 s")

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        self.server = None

    # --- helpers --------------------------------------------------------------------------------

    def enrol(self, admin: str, principal: str) -> None:
        invitation = self.json(admin, "admin", "enrol-code", principal)["invitation"]
        self.liaison(
            None,
            "enrol",
            "--server",
            self.url,
            "--code",
            invitation,
            "--ca-cert",
            str(self.data / "tls" / "cert.pem"),
            "--profile",
            principal,
        )
        self.unlock(principal)

    def unlock(self, profile: str, *, quiet: bool = True) -> None:
        self.liaison(profile, "unlock", "--idle-timeout", "10m", quiet=quiet)

    def lock_all(self) -> None:
        """Stop the unlock agent of this demo's home (if one runs), before the home goes."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(  # noqa: S603 -- our own CLI
                [str(BIN / "liaison"), "lock"], capture_output=True, env=self.env, timeout=30, check=False
            )

    def create(self, admin: str, pid: str, name: str, nation: str, clearance: str, *extra: str) -> None:
        self.liaison(
            admin,
            "admin",
            "principal",
            "create",
            pid,
            "--name",
            name,
            "--nation",
            nation,
            "--clearance",
            clearance,
            *extra,
        )
        self.enrol(admin, pid)

    def last_id(self, profile: str) -> str:
        return str(self.json(profile, "inbox", "--limit", "1")[0]["id"])  # newest first

    # --- the story ------------------------------------------------------------------------------

    def run(self) -> None:
        self.step("Initialise a server in a temporary directory and start it with TLS")
        init = self.init_server()
        print(f"log verifier key: {init['log_verifier_key']}")
        self.start_server()

        self.step(
            "The root admin enrols its device (the invitation init printed: a one-time code and the "
            "log key's digest; the device pins the server's log key only if it matches)"
        )
        self.liaison(
            None,
            "enrol",
            "--server",
            self.url,
            "--code",
            init["root_invitation"],
            "--ca-cert",
            init["tls_cert"],
            "--principal",
            "root",
        )
        self.liaison("root", "whoami")
        self.say(
            "Root keeps its keys unlocked in the per-user agent, so that sends, reads and other "
            "requests neither ask for the passphrase nor open the profile (Argon2id, 256 MiB) each "
            "time; a directory change (most of an admin's commands) still opens it, as the agent "
            "never signs one. Every profile below is unlocked so once enrolled, and the demo locks "
            "them all as it ends:"
        )
        self.unlock("root", quiet=False)
        self.say("Genesis is over: the operator can no longer mint a root code (a root device must):")
        self.server_refuses("root-code", "--data-dir", str(self.data))

        self.step("Root creates a nation admin for USA, UKR and FRA; each enrols")
        for nation, comps in (("USA", ["AIRDEF"]), ("UKR", ["AIRDEF"]), ("FRA", [])):
            pid = f"{nation.lower()}-admin"
            self.create(
                "root",
                pid,
                f"{nation} national administrator",
                nation,
                "SECRET",
                "--role",
                "admin",
                *[a for c in comps for a in ("--compartment", c)],
            )

        self.step(
            "Nation admins create their principals: an analyst each and a Ukrainian partner "
            "system; root an auditor"
        )
        self.create(
            "usa-admin", "usa-analyst", "USA air defence analyst", "USA", "SECRET", "--compartment", "AIRDEF"
        )
        self.create(
            "ukr-admin", "ukr-analyst", "UKR air defence analyst", "UKR", "SECRET", "--compartment", "AIRDEF"
        )
        self.create("ukr-admin", "ukr-system", "UKR C2 partner system", "UKR", "SECRET", "--kind", "system")
        self.create("fra-admin", "fra-analyst", "FRA liaison analyst", "FRA", "SECRET")
        self.say("A nation admin cannot reach outside its nation or above its own access:")
        self.liaison(
            "fra-admin",
            "admin",
            "principal",
            "create",
            "fra-auditor",
            "--name",
            "FRA auditor",
            "--nation",
            "FRA",
            "--clearance",
            "SECRET",
            "--role",
            "auditor",
            expect="refused",
        )
        self.liaison(
            "fra-admin",
            "admin",
            "principal",
            "create",
            "usa-spy",
            "--name",
            "x",
            "--nation",
            "USA",
            "--clearance",
            "SECRET",
            expect="refused",
        )
        self.say("A role it does not hold is root's to grant:")
        self.create("root", "fra-auditor", "FRA auditor", "FRA", "SECRET", "--role", "auditor")

        self.step("The auditor makes a witness key; the operator adds it and restarts the server")
        self.witness_keys.append(self.json("fra-auditor", "audit", "witness-key")["verifier_key"])
        print(f"witness key: {self.witness_keys[0]}")
        self.stop_server()
        self.start_server()

        self.step("Root opens a coalition channel (ceiling SECRET//AIRDEF//REL TO FRA, UKR, USA)")
        self.liaison(
            "root",
            "admin",
            "channel",
            "create",
            "ops",
            "--name",
            "Coalition air defence",
            "--ceiling",
            "SECRET//AIRDEF//REL TO FRA, UKR, USA",
        )
        self.liaison(
            "root",
            "admin",
            "channel",
            "members",
            "ops",
            "usa-analyst",
            "ukr-analyst",
            "fra-analyst",
            "ukr-system",
        )
        self.liaison("usa-analyst", "channels")

        self.step("UNCLASSIFIED: everyone on the channel, the partner system included")
        unclass = "UNCLASSIFIED//REL TO FRA, UKR, USA"
        self.liaison("usa-analyst", "send", "--channel", "ops", "--label", unclass, "--dry-run")
        self.liaison(
            "usa-analyst",
            "send",
            "--channel",
            "ops",
            "--label",
            unclass,
            stdin=b"Coordination call moved to 14:00Z.\n",
        )
        unclass_id = self.last_id("fra-analyst")

        self.step("SECRET//REL TO UKR, USA: France and the system are excluded, and the client says why")
        secret = "SECRET//REL TO UKR, USA"  # noqa: S105 -- a label, not a password
        plan = self.json("usa-analyst", "send", "--channel", "ops", "--label", secret, "--dry-run")
        self.liaison("usa-analyst", "send", "--channel", "ops", "--label", secret, "--dry-run")
        reasons = {e["principal"]: e["reason"] for e in plan["excluded"]}
        if reasons != {"fra-analyst": "releasability", "ukr-system": "system-level"}:
            raise DemoFailed(f"unexpected exclusions {reasons}")
        self.liaison(
            "usa-analyst",
            "send",
            "--channel",
            "ops",
            "--label",
            secret,
            stdin=b"Patriot battery relocating to grid 37U DQ 12345 67890 tonight.\n",
        )
        secret_id = self.last_id("ukr-analyst")

        self.step("A compartment: SECRET//AIRDEF//REL TO FRA, UKR, USA needs AIRDEF")
        comp = "SECRET//AIRDEF//REL TO FRA, UKR, USA"
        self.liaison("ukr-analyst", "send", "--channel", "ops", "--label", comp, "--dry-run")
        self.liaison(
            "ukr-analyst",
            "send",
            "--channel",
            "ops",
            "--label",
            comp,
            stdin=b"Radar picture: 12 Shahed tracks inbound from the south-east.\n",
        )
        comp_id = self.last_id("usa-analyst")
        self.say("France may not write what it may not read:")
        self.liaison(
            "fra-analyst", "send", "--channel", "ops", "--label", comp, stdin=b"test\n", expect="refused"
        )

        self.step("A STIX 2.1 bundle, validated before sealing, to the partner system only")
        stix_type = "application/stix+json;version=2.1"
        self.liaison(
            "ukr-analyst",
            "send",
            "--channel",
            "ops",
            "--label",
            unclass,
            "--to",
            "ukr-system",
            "--content-type",
            stix_type,
            stdin=json.dumps(STIX).encode(),
        )
        bad = {**STIX, "objects": [{**STIX["objects"][0], "pattern": "not a pattern"}]}
        self.liaison(
            "ukr-analyst",
            "send",
            "--channel",
            "ops",
            "--label",
            unclass,
            "--to",
            "ukr-system",
            "--content-type",
            stix_type,
            stdin=json.dumps(bad).encode(),
            expect="refused",
        )

        self.step("Who can read what")
        self.liaison("ukr-analyst", "inbox")
        self.liaison("ukr-analyst", "read", secret_id)
        self.liaison("usa-analyst", "read", comp_id)
        self.liaison("usa-analyst", "ack", comp_id)
        self.say("France was not a recipient of either, and its client says so:")
        self.liaison("fra-analyst", "read", secret_id, expect="refused")
        self.liaison("fra-analyst", "read", comp_id, expect="refused")
        self.liaison("fra-analyst", "inbox")

        self.step("The Ukrainian partner system uses the Python library")
        self.partner_system()

        self.step("The UKR admin revokes the partner system's device")
        device = self.json("ukr-system", "whoami")["device"]
        self.liaison("ukr-admin", "admin", "device", "revoke", device)
        self.say("The revoked device can no longer fetch anything:")
        self.liaison("ukr-system", "inbox", expect="refused")
        self.say("Nobody encrypts to it any more:")
        self.liaison("usa-analyst", "send", "--channel", "ops", "--label", unclass, "--dry-run")
        self.say("And a message it signed earlier is refused, because its key is revoked:")
        report_id = self.json("ukr-analyst", "inbox")[0]["id"]  # newest first
        self.liaison("ukr-analyst", "read", report_id, expect="refused")

        self.step("The auditor verifies the whole log, proves a message, and cosigns")
        self.liaison("fra-auditor", "audit", "entries", "--type", "access.denied")
        self.liaison("fra-auditor", "audit", "prove", unclass_id)
        self.say("A message not released to France is, to a French auditor, not there at all:")
        self.liaison("fra-auditor", "audit", "prove", secret_id, expect="refused")
        self.liaison("fra-auditor", "audit", "verify")
        self.liaison("fra-auditor", "audit", "witness")
        self.say("Clients trust only the witnesses they pin (k of n); the auditor pins its own key:")
        self.liaison("fra-auditor", "audit", "witnesses", "set", "--key", self.witness_keys[0], "--k", "1")
        cp = self.json("fra-auditor", "audit", "checkpoint", "--cosigned", "1")
        if not cp["cosigners"]:
            raise DemoFailed("the served checkpoint carries no cosignature")
        self.liaison("fra-auditor", "audit", "checkpoint", "--cosigned", "1")
        print(f"\n{GREEN}{BOLD}Demo complete: every check passed, the log verified and was cosigned.{RESET}")

    def partner_system(self) -> None:
        """The system's side, in-process with the library (what a partner would write)."""
        code = textwrap.dedent("""\
            from liaison.clients import Client

            with Client.from_profile("ukr-system", passphrase) as system:
                for item in system.inbox():
                    message = system.read(item.id)          # verified, or an exception says why
                    print(f"  {message.label_text}  {message.content_type}  from {message.sender}")
                    system.ack(item.id)
                system.send("ops", "UNCLASSIFIED//REL TO FRA, UKR, USA",
                            b"Track 7 confirmed destroyed by air defence.")
            """)
        print(f"{DIM}{textwrap.indent(code, '    ')}{RESET}", end="", flush=True)
        os.environ.update({k: self.env[k] for k in ("LIAISON_HOME", "LIAISON_PASSPHRASE")})
        from liaison.clients import Client

        with Client.from_profile("ukr-system", PASSPHRASE) as system:
            items = system.inbox()
            for item in items:
                message = system.read(item.id)
                print(f"  {message.label_text}  {message.content_type}  from {message.sender}")
                system.ack(item.id)
            system.send(
                "ops", "UNCLASSIFIED//REL TO FRA, UKR, USA", b"Track 7 confirmed destroyed by air defence."
            )
        if len(items) != 2:
            raise DemoFailed(f"the system should have received 2 messages, not {len(items)}")


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " ,/;") and not arg.startswith("/") else arg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    keep = os.environ.get("LIAISON_DEMO_KEEP") == "1"
    root = Path(tempfile.mkdtemp(prefix="liaison-demo-"))
    demo = Demo(root)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        demo.run()
        return 0
    except DemoFailed as e:
        print(f"\n{RED}{BOLD}Demo FAILED:{RESET} {e}", file=sys.stderr)
        log = root / "server.log"
        if log.exists():
            print("last server log lines:\n" + "\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        demo.lock_all()
        demo.stop_server()
        if keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
