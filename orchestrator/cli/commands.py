"""The commands: each reads over REST or acts over MQTT, prints, returns 0 or raises."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from .bus import Bus, new_id
from .errors import REFUSED, UNREACHABLE, CliError
from .render import age, as_json, detail, event_line, listing, short, table
from .rest import Rest
from .settings import Settings

__all__ = ["COMMANDS"]


def _rest(settings: Settings) -> Rest:
    return Rest(settings.rest, settings.token)


def _runtime_names(rest: Rest) -> Callable[[str | None], str]:
    """uuid -> name, from one list read (dead runtimes too)."""
    body = rest.get("/api/runtimes/", status="all", children="false") or {}
    names = {r["uuid"]: r["name"] for r in body.get("runtimes", [])}
    return lambda uuid: names.get(uuid, short(uuid)) if uuid else "-"


def _find(rest: Rest, kind: str, q: str) -> dict[str, Any]:
    found = rest.get(f"/api/{kind}s/{q}/")
    if not found:
        raise CliError(f"no {kind} {q!r}", REFUSED)
    return found


def _runtime_uuid(settings: Settings, q: str) -> str:
    """The uuid of runtime ``q`` (uuid, name or short id); ``q`` itself when REST does
    not know it (the orchestrator then answers for itself)."""
    try:
        found = _rest(settings).get(f"/api/runtimes/{q}/")
    except CliError:               # no REST here: MQTT alone still takes a uuid or name
        return q
    return found["uuid"] if found else q


# -- reading ------------------------------------------------------------------------------
def runtimes(args: Any, settings: Settings) -> int:
    rest = _rest(settings)
    body = rest.get("/api/runtimes/", status=args.status, api=args.api, children="false")
    items = (body or {}).get("runtimes", [])
    if args.output == "json":
        print(as_json(items))
        return 0
    rows = [(short(r["uuid"]), r["name"], r["status"] + (",drained" if r.get("drained") else ""),
             f"{r.get('nmodules', 0)}/{r.get('max_nmodules') or '∞'}", listing(r.get("apis")),
             age(r.get("last_seen")), r.get("dead_reason") or "")
            for r in items]
    print(table(rows, ("ID", "NAME", "STATUS", "MODULES", "APIS", "SEEN", "DEAD REASON")))
    return 0


def modules(args: Any, settings: Settings) -> int:
    rest = _rest(settings)
    parent = _find(rest, "runtime", args.on)["uuid"] if args.on else None
    body = rest.get("/api/modules/", status=args.status, parent=parent, name=args.name,
                    api=args.api)
    items = (body or {}).get("modules", [])
    if args.output == "json":
        print(as_json(items))
        return 0
    name_of = _runtime_names(rest)
    rows = [(short(m["uuid"]), m["name"], m["status"], name_of(m.get("parent")),
             m.get("filename") or "-", m.get("fault_crash"), m.get("waiting") or "")
            for m in items]
    print(table(rows, ("ID", "NAME", "STATUS", "RUNTIME", "FILE", "ON CRASH", "WAITING")))
    return 0


def get(args: Any, settings: Settings) -> int:
    rest = _rest(settings)
    kinds = [args.kind] if args.kind else ["runtime", "module"]
    for kind in kinds:
        found = rest.get(f"/api/{kind}s/{args.name}/")
        if found:
            break
    else:
        raise CliError(f"no {' or '.join(kinds)} {args.name!r}", REFUSED)
    if args.output == "json":
        print(as_json(found))
    elif kind == "runtime":
        _print_runtime(found)
    else:
        _print_module(found, _runtime_names(rest))
    return 0


def _print_runtime(r: dict[str, Any]) -> None:
    print(detail([
        ("Runtime", r["name"]), ("UUID", r["uuid"]), ("Status", r["status"]),
        ("Drained", "yes" if r.get("drained") else "no"), ("Dead reason", r.get("dead_reason")),
        ("Type", r.get("runtime_type")), ("APIs", r.get("apis")),
        ("Modules", f"{r.get('nmodules', 0)} running of {r.get('max_nmodules') or 'unlimited'}, "
                    f"{r.get('nwaiting', 0)} waiting"),
        ("Registered", r.get("registered_at")), ("Last seen", age(r.get("last_seen"))),
        ("Manager", r.get("manager"))]))
    kids = r.get("children") or []
    if kids:
        print()
        print(table([(short(m["uuid"]), m["name"], m["status"], m.get("filename") or "-",
                      m.get("waiting") or "") for m in kids],
                    ("ID", "MODULE", "STATUS", "FILE", "WAITING")))


def _print_module(m: dict[str, Any], name_of: Callable[[str | None], str]) -> None:
    print(detail([
        ("Module", m["name"]), ("UUID", m["uuid"]), ("Status", m["status"]),
        ("Waiting", m.get("waiting")), ("Runtime", name_of(m.get("parent"))),
        ("File", m.get("filename")), ("File type", m.get("filetype")),
        ("APIs", m.get("apis")), ("Args", m.get("args")), ("On crash", m.get("fault_crash")),
        ("Created", m.get("created_at")), ("Acked", m.get("acked_at"))]))


# -- acting -------------------------------------------------------------------------------
def run(args: Any, settings: Settings) -> int:
    data: dict[str, Any] = {"type": "module", "uuid": new_id(), "filename": args.file,
                            "name": args.name or args.file.rsplit("/", 1)[-1].split(".")[0],
                            "filetype": args.filetype, "args": args.arg or [],
                            "fault_crash": "restart" if args.restart else "ignore"}
    if args.on:                    # a short id works too: REST resolves it to the uuid
        data["parent"] = _runtime_uuid(settings, args.on)
    if args.api:
        data["apis"] = args.api
    with Bus(settings) as bus:
        module = bus.request("create", data)
    if args.output == "json":
        print(as_json(module))
        return 0
    label = f"module {module['name']} ({short(module['uuid'])})"
    try:        # names and the reason read back over REST; the reply has only uuids
        rest = _rest(settings)
        where = _runtime_names(rest)(module.get("parent"))
        waiting = (rest.get(f"/api/modules/{module['uuid']}/") or {}).get("waiting")
    except CliError:
        where, waiting = short(module.get("parent")), None
    if module.get("status") == "queued":
        print(f"{label} queued: {waiting or 'waiting for room'}")
    else:
        print(f"{label} started on runtime {where}")
    return 0


def stop(args: Any, settings: Settings) -> int:
    module = _find(_rest(settings), "module", args.module)
    with Bus(settings) as bus:
        gone = bus.request("delete", {"type": "module", "uuid": module["uuid"]})
    print(f"module {gone.get('name')} ({short(gone.get('uuid'))}): {gone.get('status')}")
    return 0


def _runtime_action(action: str) -> Callable[[Any, Settings], int]:
    def act(args: Any, settings: Settings) -> int:
        runtime = _find(_rest(settings), "runtime", args.runtime)
        with Bus(settings) as bus:
            done = bus.request(action, {"type": "runtime", "uuid": runtime["uuid"]})
        if args.output == "json":
            print(as_json(done))
            return 0
        label = f"runtime {done.get('name')} ({short(done.get('uuid'))})"
        if action == "forget":
            print(f"{label} forgotten; {len(done.get('ended', []))} modules that waited "
                  f"for it ended")
            return 0
        print(f"{label} {'drained' if done.get('drained') else 'open for placements'}")
        for m in done.get("moved", []):
            print(f"  moved  {m['name']} ({short(m['uuid'])}) to {short(m['to'])}")
        for m in done.get("stayed", []):
            print(f"  stayed {m['name']} ({short(m['uuid'])}): {m['reason']}")
        return 0
    return act


# -- following ----------------------------------------------------------------------------
def _follow(rest: Rest, path: str, show: Callable[[dict[str, Any]], None],
            last_id: str | None = None, **params: Any) -> int:
    """Print frames until interrupted; reconnect after a lost connection, resuming."""
    while True:
        try:
            for frame in rest.stream(path, last_id, **params):
                if frame.get("event") == "resync":
                    print("# missed events are no longer retained; reload the lists",
                          file=sys.stderr)
                elif frame.get("event") == "truncated":
                    print("# some output was let go before it could be shown", file=sys.stderr)
                elif isinstance(frame.get("data"), dict):
                    show(frame["data"])
                last_id = frame.get("id", last_id)
                sys.stdout.flush()
            params.pop("history", None)
            params.pop("tail", None)
        except CliError as e:
            if e.status != UNREACHABLE or last_id is None:
                raise
            print(f"# {e}; retrying", file=sys.stderr)
        except (OSError, ValueError) as e:     # a connection cut mid-stream
            print(f"# connection lost ({e}); retrying", file=sys.stderr)
        time.sleep(1.0)


def watch(args: Any, settings: Settings) -> int:
    rest = _rest(settings)
    body = rest.get("/api/runtimes/", status="all", children="false") or {}
    names = {r["uuid"]: r["name"] for r in body.get("runtimes", [])}

    def name_of(uuid: str | None) -> str:
        return names.get(uuid, short(uuid)) if uuid else "-"

    def show(event: dict[str, Any]) -> None:
        if args.output == "json":
            print(as_json(event))
            return
        runtime = event.get("runtime")
        if runtime:                        # runtimes that register while we watch
            names[runtime["uuid"]] = runtime["name"]
        print(event_line(event, name_of))
    return _follow(rest, "/api/events", show, types=args.types, history=args.history)


def logs(args: Any, settings: Settings) -> int:
    rest = _rest(settings)
    path = f"/api/modules/{args.module}/logs"
    show: Callable[[dict[str, Any]], None] = (
        (lambda line: print(as_json(line))) if args.output == "json"
        else (lambda line: print(line.get("text", ""))))
    if args.follow:
        if rest.get(f"/api/modules/{args.module}/") is None and \
                rest.lines(path, tail=0) is None:
            raise CliError(f"no module {args.module!r}", REFUSED)
        return _follow(rest, path, show, follow="1", tail=args.tail)
    lines = rest.lines(path, tail=args.tail)
    if lines is None:
        raise CliError(f"no module {args.module!r}", REFUSED)
    for line in lines:
        show(line)
    return 0


COMMANDS: dict[str, Callable[[Any, Settings], int]] = {
    "runtimes": runtimes, "modules": modules, "get": get, "run": run, "stop": stop,
    "drain": _runtime_action("drain"), "undrain": _runtime_action("undrain"),
    "forget": _runtime_action("forget"), "watch": watch, "logs": logs,
}
