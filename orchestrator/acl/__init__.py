"""Least-privilege mosquitto credentials for a SilverLine site.

``python -m orchestrator.acl --out DIR --runtime UUID ... --client NAME ...``
writes into DIR:

- ``silverline.acl``: a mosquitto ``acl_file`` with one ``user`` block per login;
- ``silverline.passwd``: a mosquitto ``password_file`` (``$7$`` PBKDF2-SHA512,
  the format of mosquitto 2's ``mosquitto_passwd``);
- ``credentials.json``: every login's plaintext password, to hand out (0600);
- ``orchestrator.pwd``: the orchestrator's password alone, the file the
  config key ``pwd`` names (0600);
- with ``--arena`` (or any ``--arena-runtime``): ``arena-topics.json``, each
  ARENA-speaking login's rules as the ``publ``/``subs`` topic lists of an
  ARENA MQTT token.

ARENA (applauncher-runtime, arena-web-core) speaks ``R/g/...`` and ``R/s/...``
(docs/protocol.md 14). ``--arena`` gives the orchestrator those topics too; an
``--arena-runtime UUID[:NAMESPACE]`` login may publish on its own runtime topic
only, but must read every module request (applauncher subscribes to
``R/s/+/+/p/+/+`` and picks what names it) and write any module's topic (its
confirmations): between ARENA runtimes the broker isolates registration,
keepalives and error reports, not module news. ARENA's own broker authorizes
each connection by the ``publ`` and ``subs`` claims of its JWT (issued by its
account service); ``arena-topics.json`` is what those claims must hold for the
orchestrator and each runtime.

Why a broker ACL: the orchestrator already refuses a message on
``R/proc/reg/{X}`` or ``R/proc/keepalive/{X}`` about a runtime other than X,
and an exit report on ``R/proc/control/{X}`` for a module not on X. So if the
broker lets each runtime use only its own subtopics, no runtime can speak for
another one. Clients get the shared request/reply topic and the read-only
outputs; only the orchestrator may write to a runtime's control topic.

Running it again keeps the passwords of logins already in ``credentials.json``
(deployed devices keep working) unless ``--rotate`` names them; logins no longer
listed are dropped, which revokes them once the broker reloads (SIGHUP).

The ACL text is built by pure functions (``build_acl``, ``password_line``);
only ``write_outputs`` and ``main`` touch files.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..config import ConfigError, load_config
from ..core.fields import MAX_IDENT
from ..core.output import OUTPUT_SOURCES
from ..core.registry import id_key
from ..core.arena_topics import ArenaTopics
from ..core.topics import SPECIAL, WILDCARDS, Topics

__all__ = ["AclError", "Identity", "ORCHESTRATOR", "RUNTIME", "MANAGER", "CLIENT", "MONITOR",
           "check_name", "check_realm", "check_identities", "topic_rules", "build_acl",
           "hash_password", "verify_password", "password_line", "new_password",
           "read_inventory", "write_outputs", "main", "ARENA_RUNTIME", "arena_rules", "token_topics",
           "ACL_FILE", "PASSWD_FILE", "CREDENTIALS_FILE", "ORCHESTRATOR_PWD_FILE",
           "ARENA_TOPICS_FILE"]

ORCHESTRATOR = "orchestrator"
RUNTIME = "runtime"
MANAGER = "manager"
CLIENT = "client"
MONITOR = "monitor"
ARENA_RUNTIME = "arena-runtime"
ROLES = (ORCHESTRATOR, RUNTIME, MANAGER, CLIENT, MONITOR, ARENA_RUNTIME)

ACL_FILE = "silverline.acl"
PASSWD_FILE = "silverline.passwd"
CREDENTIALS_FILE = "credentials.json"
ORCHESTRATOR_PWD_FILE = "orchestrator.pwd"
ARENA_TOPICS_FILE = "arena-topics.json"

#: mosquitto_passwd's default. The passwords made here are 192 random bits,
#: so the iteration count adds nothing against guessing; more would only slow
#: every CONNECT on the broker.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12          # what mosquitto_passwd uses
_HASH = "sha512"


class AclError(ValueError):
    """The inventory cannot be turned into a safe ACL; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """One MQTT login: its role, user name, and the runtime uuids it may speak for.

    A runtime speaks for its own uuid (its user name). A runtime-manager host
    keeps one broker connection for itself and the runtimes it hosts, so it
    speaks for its uuid and theirs.
    """

    role: str
    username: str
    uuids: tuple[str, ...] = ()
    #: an ARENA runtime's namespace (its topic ``R/g/<namespace>/p/<uuid>``)
    namespace: str = "public"


# -- validation --------------------------------------------------------------------------
def _bad_char(value: str) -> str | None:
    for c in value:
        if c in SPECIAL:
            return repr(c)
        if c == ":":
            return "':' (it separates the user name in the password file)"
        if c.isspace():
            return "whitespace"
        if ord(c) < 0x20 or ord(c) == 0x7F:
            return "a control character"
    return None


def check_name(value: str, what: str) -> str:
    """A user name or runtime uuid that is safe as one topic level and one ACL line.

    ``/ + #`` would let a name reach other topics (or be a wildcard), whitespace
    and ``:`` would corrupt the ACL or password file. The length limit is the
    orchestrator's own for identifiers.
    """
    if not value:
        raise AclError(f"{what}: empty")
    if len(value) > MAX_IDENT:
        raise AclError(f"{what} {value!r}: longer than {MAX_IDENT} characters")
    bad = _bad_char(value)
    if bad is not None:
        raise AclError(f"{what} {value!r}: must not contain {bad}")
    return value


def check_realm(realm: str) -> str:
    """The realm as the orchestrator accepts it, minus what an ACL line cannot hold."""
    if not realm:
        raise AclError("realm: empty")
    for c in realm:
        if c in WILDCARDS:
            raise AclError(f"realm {realm!r}: must not contain {c!r}")
        if c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F:
            raise AclError(f"realm {realm!r}: must not contain whitespace or control characters")
    return realm


def check_identities(identities: Sequence[Identity]) -> None:
    """Every name valid, every user name once, every runtime owned by one login only.

    The orchestrator treats ``AB-CD...`` and ``abcd...`` as the same runtime,
    so two logins whose uuids differ only in spelling would both speak for it:
    refused.
    """
    users: dict[str, str] = {}
    owners: dict[str, str] = {}
    orchestrators = 0
    for ident in identities:
        if ident.role not in ROLES:
            raise AclError(f"unknown role {ident.role!r}")
        check_name(ident.username, f"{ident.role} uuid"
                   if ident.role in (RUNTIME, MANAGER, ARENA_RUNTIME)
                   else f"{ident.role} user name")
        if ident.role == ARENA_RUNTIME:
            check_name(ident.namespace, f"namespace of {ident.username!r}")
        if ident.username in users:
            raise AclError(f"user name {ident.username!r} is listed twice "
                           f"(as {users[ident.username]} and {ident.role})")
        users[ident.username] = ident.role
        orchestrators += ident.role == ORCHESTRATOR
        if ident.role in (RUNTIME, MANAGER, ARENA_RUNTIME):
            if not ident.uuids:
                raise AclError(f"{ident.role} {ident.username!r}: no runtime uuid")
            for uuid in ident.uuids:
                check_name(uuid, "runtime uuid")
                key = id_key(uuid)   # the orchestrator's own rule: any spelling, one runtime
                if key in owners:
                    raise AclError(f"runtime {uuid!r} is claimed by both {owners[key]!r} and "
                                   f"{ident.username!r}: each runtime must belong to one login")
                owners[key] = ident.username
        elif ident.uuids:
            raise AclError(f"{ident.role} {ident.username!r} cannot own runtime uuids")
    if orchestrators != 1:
        raise AclError(f"exactly one orchestrator login is needed, got {orchestrators}")


# -- the ACL -----------------------------------------------------------------------------
def arena_rules(realm: str, ident: Identity) -> list[tuple[str, str]]:
    """The ARENA topics of the orchestrator, or of one applauncher-runtime login."""
    a = ArenaTopics(realm)
    runtimes, requests, modules = a.subscriptions()
    output = [f"{modules}/-/stdout", f"{modules}/-/stderr"]
    if ident.role == ORCHESTRATOR:
        # registrations in, replies out; client requests in, creates out; module news in
        return [("readwrite", runtimes), ("readwrite", requests), ("read", modules),
                *(("read", t) for t in output)]
    if ident.role == ARENA_RUNTIME:
        return [("readwrite", a.runtime(ident.namespace, ident.username)),
                ("read", requests), ("write", modules),
                *(("write", t) for t in output), ("read", f"{modules}/-/stdin")]
    return []


def topic_rules(realm: str, ident: Identity, arena: bool = False) -> list[tuple[str, str]]:
    """(access, topic) pairs of one login: what its role needs and nothing more.

    orchestrator: everything under ``R/proc/``.
    runtime/manager, for each uuid U it speaks for:
      ``R/proc/reg/U`` readwrite: registers and deletes itself there, its last
      will is published there, and the orchestrator replies on that topic;
      ``R/proc/keepalive/U`` write: keepalives (nobody needs to read them back);
      ``R/proc/control/U`` readwrite: receives create/delete, sends acks and exits;
      and, once per login, write on the module output topics (``R/proc/stdio/+``, ...).
    client: ``R/proc/control`` readwrite (requests out, replies in), and reads
      ``R/proc/notif``, ``R/proc/log/orchestrator``, ``R/proc/orchestrator/status``.
    monitor: reads everything under ``R/proc/`` (operators' mosquitto_sub).
    arena-runtime, and the orchestrator when ``arena``: see :func:`arena_rules`.
    """
    t = Topics(realm)                   # the orchestrator's own layout: they cannot drift
    if ident.role == ORCHESTRATOR:
        return [("readwrite", t.everything), *(arena_rules(realm, ident) if arena else ())]
    if ident.role == ARENA_RUNTIME:
        return arena_rules(realm, ident)
    if ident.role in (RUNTIME, MANAGER):
        rules: list[tuple[str, str]] = []
        for uuid in ident.uuids:
            rules += [("readwrite", t.reg_for(uuid)),
                      ("write", t.keepalive_for(uuid)),
                      ("readwrite", t.control_for(uuid))]
        # its modules' output (docs/protocol.md 13): a topic names a module, not a
        # runtime, so any module's; write only (nobody's output is read back)
        rules += [("write", f"{realm}/{source.subscription}") for source in OUTPUT_SOURCES
                  if source.dialect != "arena"]       # ARENA runtimes: see arena_rules
        return rules
    if ident.role == CLIENT:
        return [("readwrite", t.control),
                ("read", t.notif),
                ("read", t.log),
                ("read", t.status)]
    if ident.role == MONITOR:
        return [("read", t.everything)]
    raise AclError(f"unknown role {ident.role!r}")


def _describe(ident: Identity) -> str:
    if ident.role == ARENA_RUNTIME:
        return f"ARENA runtime {ident.username} in namespace {ident.namespace}"
    if ident.role == MANAGER:
        hosted = [u for u in ident.uuids if u != ident.username]
        return f"manager {ident.username}, hosting " + (", ".join(hosted) or "no other runtime")
    return f"{ident.role} {ident.username}"


def token_topics(realm: str, identities: Sequence[Identity]) -> dict[str, object]:
    """Each ARENA-speaking login's rules as an ARENA token's ``publ``/``subs`` claims."""
    logins = []
    for ident in identities:
        if ident.role not in (ORCHESTRATOR, ARENA_RUNTIME):
            continue
        rules = topic_rules(realm, ident, arena=True)
        logins.append({"role": ident.role, "username": ident.username,
                       "publ": [t for access, t in rules if access in ("write", "readwrite")],
                       "subs": [t for access, t in rules if access in ("read", "readwrite")]})
    return {"realm": realm, "logins": logins}


def build_acl(realm: str, identities: Sequence[Identity], extra: str = "",
              arena: bool = False) -> str:
    """The mosquitto ``acl_file`` text: one ``user`` block per login, no ``pattern`` lines.

    Nothing comes before the first ``user`` line, so an anonymous login (should
    ``allow_anonymous`` ever be on) may use no topic at all. ``extra`` (site
    rules, e.g. for modules' own channels) is appended after the blocks.
    """
    check_realm(realm)
    check_identities(identities)
    lines = [f"# SilverLine MQTT access control, realm {realm!r}.",
             "# Written by `python -m orchestrator.acl`: change the inventory and run it",
             "# again rather than editing this file. Nothing before the first `user`",
             "# line: anonymous logins get no topic at all.",
             ""]
    for ident in identities:
        lines.append(f"# {_describe(ident)}")
        lines.append(f"user {ident.username}")
        lines += [f"topic {access} {topic}"
                  for access, topic in topic_rules(realm, ident, arena)]
        lines.append("")
    if extra.strip():
        lines += ["# -- site rules (--append) --", extra.rstrip("\n"), ""]
    return "\n".join(lines)


def check_extra(extra: str) -> str:
    """Appended rules must open with their own ``user``/``pattern`` line.

    A bare ``topic`` line there would silently join the last generated
    login's block and widen that login's rights.
    """
    for line in extra.splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if words[0] not in ("user", "pattern"):
            raise AclError("appended ACL rules must start with a `user` or `pattern` line "
                           f"(a leading {words[0]!r} line would extend the last generated "
                           "login's rights)")
        break
    return extra


# -- passwords ---------------------------------------------------------------------------
def new_password() -> str:
    """32 URL-safe characters (192 random bits): nothing to escape in any file."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """mosquitto 2's ``$7$<iterations>$<salt b64>$<PBKDF2-HMAC-SHA512 b64>``."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac(_HASH, password.encode("utf-8"), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def verify_password(hashed: str, password: str) -> bool:
    """Does ``password`` match a ``$7$`` hash (ours or mosquitto_passwd's)?"""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        raise ValueError("not a mosquitto $7$ hash")
    iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    mine = hashlib.pbkdf2_hmac(_HASH, password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(mine, digest)


def password_line(username: str, password: str, salt: bytes | None = None) -> str:
    """One ``password_file`` line."""
    check_name(username, "user name")
    return f"{username}:{hash_password(password, salt)}"


# -- inventory ---------------------------------------------------------------------------
def _arena_runtime_spec(spec: str) -> Identity:
    uuid, _, namespace = spec.partition(":")
    return Identity(ARENA_RUNTIME, uuid, (uuid,), namespace or "public")


def _manager_spec(spec: str) -> Identity:
    head, sep, tail = spec.partition(":")
    hosted = [u for u in tail.split(",") if u] if sep else []
    if not sep or not hosted:
        raise AclError(f"--manager {spec!r}: expected MANAGER_UUID:RUNTIME_UUID[,RUNTIME_UUID...]")
    return Identity(MANAGER, head, (head, *hosted))


def read_inventory(lines: Iterable[str], source: str = "inventory") -> list[Identity]:
    """Parse an inventory: ``runtime UUID``, ``manager UUID RT...``, ``client NAME``,
    ``monitor NAME``, one per line; ``#`` starts a comment."""
    found: list[Identity] = []
    for number, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        role, args = words[0], words[1:]
        where = f"{source}:{number}"
        if role == RUNTIME and len(args) == 1:
            found.append(Identity(RUNTIME, args[0], (args[0],)))
        elif role == MANAGER and len(args) >= 2:
            found.append(Identity(MANAGER, args[0], tuple(args)))
        elif role in (CLIENT, MONITOR) and len(args) == 1:
            found.append(Identity(role, args[0]))
        elif role == ARENA_RUNTIME and len(args) in (1, 2):
            found.append(Identity(ARENA_RUNTIME, args[0], (args[0],),
                                  args[1] if len(args) == 2 else "public"))
        else:
            raise AclError(f"{where}: expected `runtime UUID`, `manager UUID RUNTIME_UUID...`, "
                           f"`client NAME`, `monitor NAME` or `arena-runtime UUID "
                           f"[NAMESPACE]`, got {raw.strip()!r}")
    return found


# -- files -------------------------------------------------------------------------------
def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write a file whole or not at all, created with its final mode (no window
    in which a secret is readable by others)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_passwords(out: Path) -> dict[str, str]:
    """user name -> password from an earlier run's credentials file, if any."""
    path = out / CREDENTIALS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AclError(f"cannot read {path}: {e}; move it away to start afresh "
                       "(every login then gets a new password)") from None
    try:
        return {str(c["username"]): str(c["password"]) for c in doc["logins"]}
    except (KeyError, TypeError):
        raise AclError(f"{path} is not a credentials file written by this tool") from None


def write_outputs(out: Path, realm: str, identities: Sequence[Identity],
                  passwords: Mapping[str, str], extra: str = "", arena: bool = False) -> None:
    """Write the four files (five with ``arena``). ``passwords`` must hold one for every login."""
    acl = build_acl(realm, identities, extra, arena)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    passwd = "".join(password_line(i.username, passwords[i.username]) + "\n"
                     for i in identities)
    creds = {"realm": realm,
             "logins": [{"role": i.role, "username": i.username,
                         "password": passwords[i.username],
                         **({"runtimes": list(i.uuids)} if i.uuids else {})}
                        for i in identities]}
    orchestrator = next(i for i in identities if i.role == ORCHESTRATOR)
    # secrets first: if a later write fails, the broker files are the old ones and a
    # rerun reuses the passwords just saved
    _write_atomically(out / CREDENTIALS_FILE, json.dumps(creds, indent=2) + "\n", 0o600)
    _write_atomically(out / ORCHESTRATOR_PWD_FILE, passwords[orchestrator.username] + "\n", 0o600)
    _write_atomically(out / PASSWD_FILE, passwd, 0o600)
    _write_atomically(out / ACL_FILE, acl, 0o644)
    if arena:
        _write_atomically(out / ARENA_TOPICS_FILE,
                          json.dumps(token_topics(realm, identities), indent=2) + "\n", 0o644)


# -- command line ------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.acl",
        description="Write a least-privilege mosquitto ACL, password file and the "
                    "matching credentials for the orchestrator, each runtime and each client.",
        epilog="Inventory lines: `runtime UUID`, `manager UUID RUNTIME_UUID...`, "
               "`client NAME`, `monitor NAME`; `#` comments. Re-running keeps existing "
               "passwords (from OUT/credentials.json) unless --rotate names the login.")
    p.add_argument("--out", required=True, type=Path,
                   help="directory for silverline.acl, silverline.passwd, credentials.json "
                        "and orchestrator.pwd (created 0700 if missing)")
    p.add_argument("--config", help="the orchestrator's config.json: realm and "
                                    "mqtt_username default to its values")
    p.add_argument("--realm", help="first topic level (default: the config's, else 'realm')")
    p.add_argument("--orchestrator-user", metavar="NAME",
                   help="the orchestrator's MQTT user name (default: the config's "
                        "mqtt_username, else 'arts')")
    p.add_argument("--runtime", action="append", default=[], metavar="UUID",
                   help="a runtime; its MQTT user name is its uuid (repeatable)")
    p.add_argument("--manager", action="append", default=[], metavar="UUID:RT[,RT...]",
                   help="a runtime-manager host and the runtimes it hosts, one login for "
                        "all of them (repeatable)")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="a client (starts and stops modules) (repeatable)")
    p.add_argument("--monitor", action="append", default=[], metavar="NAME",
                   help="a read-only login that sees all of <realm>/proc/# (repeatable)")
    p.add_argument("--arena", action="store_true",
                   help="give the orchestrator ARENA's R/g/... and R/s/... topics too, and "
                        "write arena-topics.json (implied by --arena-runtime)")
    p.add_argument("--arena-runtime", action="append", default=[], metavar="UUID[:NAMESPACE]",
                   help="an ARENA applauncher-runtime, its login its uuid; namespace "
                        "default public (repeatable)")
    p.add_argument("--inventory", type=Path, metavar="FILE",
                   help="more logins, one per line (see below)")
    p.add_argument("--append", type=Path, metavar="FILE",
                   help="site ACL rules appended verbatim; must open with a user/pattern line")
    p.add_argument("--rotate", action="append", default=[], metavar="NAME",
                   help="give this login a new password (repeatable)")
    p.add_argument("--rotate-all", action="store_true", help="new passwords for every login")
    return p


def _defaults_from_config(path: str | None) -> tuple[str, str | None]:
    if path is None:
        return "realm", "arts"
    try:
        config, _ = load_config(path)
    except ConfigError as e:
        raise AclError(str(e)) from None
    return config.realm, config.mqtt_username


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 on an error)."""
    args = _parser().parse_args(argv)
    try:
        realm, config_user = _defaults_from_config(args.config)
        realm = check_realm(args.realm if args.realm is not None else realm)
        orchestrator_user = args.orchestrator_user or config_user
        if not orchestrator_user:
            raise AclError("the config has no mqtt_username: give --orchestrator-user")
        identities = [Identity(ORCHESTRATOR, orchestrator_user)]
        identities += [Identity(RUNTIME, u, (u,)) for u in args.runtime]
        identities += [_manager_spec(s) for s in args.manager]
        identities += [Identity(CLIENT, n) for n in args.client]
        identities += [Identity(MONITOR, n) for n in args.monitor]
        identities += [_arena_runtime_spec(s) for s in args.arena_runtime]
        if args.inventory is not None:
            try:
                text = args.inventory.read_text(encoding="utf-8")
            except OSError as e:
                raise AclError(f"cannot read inventory {args.inventory}: {e.strerror}") from None
            identities += read_inventory(text.splitlines(), str(args.inventory))
        extra = ""
        if args.append is not None:
            try:
                extra = check_extra(args.append.read_text(encoding="utf-8"))
            except OSError as e:
                raise AclError(f"cannot read {args.append}: {e.strerror}") from None
        check_identities(identities)
        names = {i.username for i in identities}
        unknown = sorted(set(args.rotate) - names)
        if unknown:
            raise AclError(f"--rotate: no such login: {', '.join(unknown)}")
        old = {} if args.rotate_all else load_passwords(args.out)
        passwords: dict[str, str] = {}
        kept = 0
        for ident in identities:
            if ident.username in old and ident.username not in args.rotate:
                passwords[ident.username] = old[ident.username]
                kept += 1
            else:
                passwords[ident.username] = new_password()
        dropped = sorted(set(old) - names)
        arena = args.arena or any(i.role == ARENA_RUNTIME for i in identities)
        write_outputs(args.out, realm, identities, passwords, extra, arena)
    except AclError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(identities)} logins for realm {realm!r} "
          f"({len(identities) - kept} new passwords, {kept} kept"
          + (f"; dropped: {', '.join(dropped)}" if dropped else "") + ")")
    for name, what in ((ACL_FILE, "mosquitto acl_file"), (PASSWD_FILE, "mosquitto password_file"),
                       (CREDENTIALS_FILE, "plaintext passwords to hand out, 0600"),
                       (ORCHESTRATOR_PWD_FILE, "the orchestrator's \"pwd\" file, 0600"),
                       *(((ARENA_TOPICS_FILE, "ARENA token publ/subs claims per login"),)
                         if arena else ())):
        print(f"  {args.out / name}: {what}")
    print("Install the first two on the broker and reload it (SIGHUP / systemctl reload mosquitto).")
    return 0

