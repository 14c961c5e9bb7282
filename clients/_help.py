"""`liaison help TOPIC`: the topics, as plain text (the CLI's own words, printed as they are)."""

from __future__ import annotations

__all__ = ["TOPICS", "index"]

TOPICS: dict[str, str] = {
    "labels": """\
Labels: CLASSIFICATION//COMPARTMENT/COMPARTMENT//REL TO NATION, NATION

  SECRET//AIRDEF//REL TO UKR, USA      SECRET, compartment AIRDEF, releasable to UKR and USA
  UNCLASSIFIED//REL TO FRA, UKR, USA   no compartment

The levels, nations and compartments are the server's policy ('liaison-server' loads it; the
client fetches it). A principal may read and send at a label when its clearance is at least
the level, its nation is in REL TO and it holds every compartment (systems stop at the levels
the policy allows them). A channel's ceiling bounds what may be sent on it: level, nations and
compartments. 'liaison send --dry-run' shows who would receive a message and why others would
not; a refused send names the rule: the channel ceiling, your own clearance, releasability,
a compartment or membership.
""",
    "profiles": """\
Profiles: one per enrolled device, under $LIAISON_HOME (default ~/.config/liaison).

  profiles/NAME.json   server, CA file, principal, device id; private keys sealed under the
                       passphrase (Argon2id + ChaCha20-Poly1305)
  state/NAME/          the pinned log key and last checkpoint, witness policy and keys

Which profile a command uses: --profile/-p, else $LIAISON_PROFILE, else the only profile.
'liaison enrol --code INVITATION --server URL --ca-cert FILE --principal ID --profile NAME'
makes one (without --principal, the profile's name is taken as the principal, and enrol says
so). The passphrase comes from the unlock agent ('liaison help agent'), $LIAISON_PASSPHRASE
or a no-echo prompt; a new one must be strong (four random words pass).
""",
    "agent": """\
The unlock agent: 'liaison unlock' opens a profile once and keeps its keys in a per-user
process, as ssh-agent does; other commands use it instead of asking for the passphrase.

  liaison -p NAME unlock [--idle-timeout 15m]   unlock (starts the agent if none runs)
  liaison unlock --list                          what the agent holds, and for how long
  liaison lock [-p NAME]                         forget the keys (all, or NAME's) and stop

The agent performs the private operations itself (signing requests and envelopes, opening an
envelope's key for this device); the keys never leave it and are never written to disk. It
forgets them after the idle timeout (default 15 minutes without use) and on 'liaison lock'.
Its socket is 0600 in a 0700 directory of yours ($XDG_RUNTIME_DIR/liaison, else
/tmp/liaison-UID), and it checks each caller's uid. It protects the keys from other users and
from a process that starts after they were locked; it does NOT protect them from programs
running as you while they are unlocked: those can make the agent sign and decrypt, as they
could with ssh-agent (they cannot copy the keys out, and the agent is not dumpable). root can
do anything. Without an agent, or for a profile it does not hold, commands ask for the
passphrase as before. Witness keys (audit witness) are not held by the agent, and it never
signs a directory change (principals, channels, devices, enrolment codes): those admin
commands ask for the passphrase even while the profile is unlocked.
""",
    "inbox": """\
The inbox: 'liaison inbox' lists this device's messages, newest first.

  --limit N (default 50; 0 all)  --channel C  --unread  --since 2h|7d|2026-11-30|RFC3339-TIME

Nothing listed is verified yet. 'liaison read ID' verifies the signatures, the sender's key
and the log entry, decrypts, shows the message between its label banners and marks it read
(an ack, logged in the audit log; --keep-unread does not). ID may be the first 8 or more
characters of the id, if only one message of the inbox starts with them (ids begin with
their time: messages sent in the same minute share their first 8 characters). The client
looks the id up in the inbox before it asks for the message, so a mistyped id is refused
locally, not logged as an access refusal. Messages this principal may no longer read (its
clearance, compartments or nation changed since delivery) are withheld and counted.
""",
    "watch": """\
'liaison watch' prints messages as they arrive (time, channel, sender, label, id). If the
connection drops or the server restarts it reconnects with backoff (0.5 s doubling to 30 s)
and resumes from the last message's cursor, so nothing is missed or shown twice.
--count N stops after N messages; --after CURSOR starts from an inbox cursor (the `cursor`
of an event or of 'liaison --json inbox'), catching up first. It ends, exit 1, only when
this device is revoked, its principal suspended, or the server refuses it.
""",
    "json": """\
--json (before or after the command): one JSON document on stdout for scripts ('watch': one
object per line). Every value is JSON; text is plain ASCII (other characters \\uXXXX).
Errors are one JSON object on stderr, also with --json:

  {"type": "urn:liaison:problem:above-ceiling", "status": 403, "detail": "...", "exit": 1,
   "rule": "channel-ceiling"}

"type" is the server's problem type (urn:liaison:problem:SLUG, as in docs/api.md) when the
server refused, else urn:liaison:client:SLUG: usage, input, wrong-passphrase, weak-passphrase,
profile-not-found, profile-exists, key-store, agent, unreachable, tls, transport, interrupted,
not-in-inbox, ambiguous-id, withheld, no-recipients, or a verification reason
(label-altered, signature-invalid, proof-invalid, inconsistent-log, ...).
""",
    "exit-codes": """\
Exit status:
  0    success
  1    refused or failed: by the server, by the client's own verification, or bad input;
       one line on stderr says why ("liaison: ..."), or one JSON object with --json
  2    usage: an unknown option, a missing argument, options that do not go together
  130  interrupted (Ctrl-C)
No command prints a traceback for a mistake; if one ever does, it is a bug.
""",
    "completion": """\
Shell completion for bash, zsh, fish and PowerShell:

  liaison --install-completion      install it for the current shell (then open a new shell)
  liaison --show-completion         print the script, to install it yourself

It completes commands and options; it imports nothing heavy, so it is quick.
""",
}


def index() -> str:
    names = "  ".join(TOPICS)
    return (
        f"Help topics: {names}\n"
        "  liaison help TOPIC      explain a topic\n"
        "  liaison help COMMAND    a command's help (as COMMAND --help)\n"
        "  liaison --help          the commands\n"
    )
