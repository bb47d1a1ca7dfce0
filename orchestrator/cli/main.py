"""``silverline``: argument parsing and the one place errors become exit statuses."""

from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS
from .errors import CliError
from .settings import settings_from

__all__ = ["main", "parser"]

STATUSES = "a status (alive, dead, queued, exiting, killed), a comma list, or all"


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="table (default) or json")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="silverline",
        description="Operate a SilverLine orchestrator: read over its REST API, act over MQTT.",
        epilog="Exit status: 0 done, 1 refused or not found, 2 bad usage or config, "
               "3 broker or REST unreachable, 4 no reply in time.")
    top.add_argument("--config", help="the service's config.json (default: $SILVERLINE_CONFIG, "
                                      "else ./config.json, else the defaults)")
    top.add_argument("--broker", help="MQTT broker HOST[:PORT] (default: the config's mqtt)")
    top.add_argument("--realm", help="topic realm (default: the config's realm)")
    top.add_argument("--user", help="MQTT user name (default: the config's mqtt_username)")
    top.add_argument("--password-file", help="file holding the MQTT password (default: pwd)")
    top.add_argument("--rest", help="REST base URL (default: http://<http>:<http_port>)")
    top.add_argument("--token", help="REST bearer token (default: $SILVERLINE_TOKEN, "
                                     "else the config's rest_token)")
    top.add_argument("--timeout", type=float, default=10.0,
                     help="seconds to wait for the broker and for a reply (default 10)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("runtimes", help="list runtimes")
    p.add_argument("-s", "--status", default="alive", help=f"{STATUSES} (default alive)")
    p.add_argument("--api", help="only runtimes offering this api")
    _output(p)

    p = sub.add_parser("modules", help="list modules")
    p.add_argument("-s", "--status", default="alive", help=f"{STATUSES} (default alive)")
    p.add_argument("--on", metavar="RUNTIME", help="only modules of this runtime (uuid or name)")
    p.add_argument("--name", help="only modules with this name")
    p.add_argument("--api", help="only modules asking for this api")
    _output(p)

    p = sub.add_parser("get", help="one runtime or module, in detail")
    p.add_argument("kind", nargs="?", choices=("runtime", "module"),
                   help="which kind (default: a runtime, else a module)")
    p.add_argument("name", help="uuid, name or short id (the last characters of the uuid)")
    _output(p)

    p = sub.add_parser("run", help="start a module; waits for the orchestrator's reply")
    p.add_argument("file", help="the module's file, as the runtime knows it")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--on", metavar="RUNTIME", help="on this runtime (uuid or name)")
    where.add_argument("--api", action="append", metavar="API",
                       help="let the scheduler pick a runtime offering it (repeatable)")
    p.add_argument("--name", help="module name (default: the file's base name)")
    p.add_argument("--restart", action="store_true",
                   help="move it to another runtime when its runtime dies (fault_crash restart)")
    p.add_argument("--arg", action="append", help="an argument for the module (repeatable)")
    p.add_argument("--filetype", default="WA", help="WA (default), PY, ...")
    _output(p)

    p = sub.add_parser("stop", help="stop a module")
    p.add_argument("module", help="uuid, name or short id")

    for name, text in (("drain", "place nothing more on a runtime; move its restartable "
                                 "modules away"),
                       ("undrain", "let the scheduler place modules on a runtime again"),
                       ("forget", "remove a dead or ghost runtime")):
        p = sub.add_parser(name, help=text)
        p.add_argument("runtime", help="uuid, name or short id")
        _output(p)

    p = sub.add_parser("watch", help="follow the event stream, one line per change")
    p.add_argument("--types", help="comma list of event types, or runtime / module")
    p.add_argument("--history", type=int, default=20,
                   help="start with the last N events the server retained (default 20)")
    _output(p)

    p = sub.add_parser("logs", help="a module's output")
    p.add_argument("module", help="uuid, name or short id")
    p.add_argument("-f", "--follow", action="store_true", help="then follow new lines")
    p.add_argument("--tail", type=int, help="only the last N lines")
    _output(p)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, settings_from(args))
    except CliError as e:
        print(f"silverline: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:      # e.g. piped into head
        return 0
