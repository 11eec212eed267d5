"""``gatewayd``: run the daemon, migrate, check a config, send a test MT, the daemons' status, the
demo, the simulator, the panel and panel accounts.

``--config FILE`` (default ``$GATEWAYD_CONFIG``) goes before or after the command, for every command
that reads a configuration. Every command logs through the daemon's formatter: each line carries its
time, plain or JSON as ``[log]`` says. Exit statuses: 0 success, 1 failure at run time, 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from echat.apikeys import APIKeyCommandError, add_apikey_commands, handle_apikey_command
from echat.audit import add_audit_commands, check_audit_trail, describe
from echat.reports import add_reports_commands, rebuild
from echat.status import add_status_command
from echat.users import add_user_commands, handle_user_command
from gatewayd.config import Config, ConfigError, load_config
from gatewayd.logging import configure_logging
from simulator.cli import add_simulator_command, run_simulator
from simulator.profiles import simulator_table_problems

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_CONFIG_HELP = "TOML configuration (default $GATEWAYD_CONFIG; without it, the demo set-up)"


def _config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config`` after a command: given there, it wins over one given before the command."""
    parser.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS, help=_CONFIG_HELP)


def _config_path(args: argparse.Namespace) -> str | None:
    """The configuration named after the command, else before it, else by $GATEWAYD_CONFIG."""
    given: str | None = args.config or args.config_before
    return given if given is not None else os.environ.get("GATEWAYD_CONFIG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayd", description="eChat Gateway: the SMPP chat gateway daemon."
    )
    parser.add_argument("--config", "-c", metavar="FILE", dest="config_before", help=_CONFIG_HELP)
    parser.set_defaults(config=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the daemon (SIGTERM drains and stops, SIGHUP reloads carriers)"
    )
    _config_argument(run)
    run.add_argument("--log-level", help="override [log] level (DEBUG, INFO, WARNING, ERROR)")
    run.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    run.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="uvloop (default, when installed: more MOs a second per bind) or Python's own asyncio loop",
    )
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to this version's")
    _config_argument(migrate)
    migrate.set_defaults(handler=_migrate)

    check = commands.add_parser("check-config", help="validate a configuration file and list every problem")
    _config_argument(check)
    check.set_defaults(handler=_check_config)

    send = commands.add_parser(
        "send", help="queue an MT (for testing a route); --wait prints its final status"
    )
    _config_argument(send)
    send.add_argument("to", help="destination MSISDN (E.164, or national for the carrier's country)")
    send.add_argument("text", help="message text")
    send.add_argument("--carrier", help="carrier name (default: the subscriber's, else by country)")
    send.add_argument("--source", help="source short code (default: the carrier's first)")
    send.add_argument("--wait", action="store_true", help="wait for the final status and print it")
    send.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")
    send.set_defaults(handler=_send)

    demo = commands.add_parser(
        "demo", help="simulator + daemon (+ panel) in one process, no services needed (no --config)"
    )
    demo.add_argument("--var", default="var", help="directory for the demo's SQLite file (default ./var)")
    demo.add_argument("--mo-rate", type=float, default=2.0, help="generated MOs per second (default 2)")
    demo.add_argument("--no-panel", action="store_true", help="do not start the web panel")
    demo.set_defaults(handler=_demo)

    _add_delegated_commands(commands)
    return parser


def _add_delegated_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simulator`` belongs to its package and the user commands to `echat.users`; they are wired in
    here."""
    simulator = add_simulator_command(commands)
    simulator.set_defaults(handler=_simulator)

    panel = commands.add_parser("panel", help="serve the web panel on [panel] listen")
    _config_argument(panel)
    panel.set_defaults(handler=_panel)

    user = add_user_commands(commands, _config_argument)
    user.set_defaults(handler=_user)

    audit = add_audit_commands(commands, _config_argument)
    audit.set_defaults(handler=_audit)

    reports = add_reports_commands(commands, _config_argument)
    reports.set_defaults(handler=_reports)

    status = add_status_command(commands, _config_argument)
    status.set_defaults(handler=_status)

    apikey = add_apikey_commands(commands, _config_argument)
    apikey.set_defaults(handler=_apikey)


def _load(args: argparse.Namespace) -> Config | None:
    """The configuration, with logging set up as its ``[log]`` says; None (reported) when invalid."""
    try:
        config = load_config(_config_path(args))
    except ConfigError as error:
        print(f"gatewayd {args.command}: {error}", file=sys.stderr)
        return None
    configure_logging(config.log.level, json_lines=config.log.json_lines)
    return config


def _schema_ready(command: str, url: str) -> bool:
    """Whether the database's schema is this version's; if not, says so (naming `gatewayd migrate`)."""
    from gatewayd.logging import redact_url
    from gatewayd.schema import check_at_head
    from gatewayd.store.errors import SchemaVersionError

    try:
        asyncio.run(check_at_head(url))
    except SchemaVersionError as error:
        print(f"gatewayd {command}: {error}", file=sys.stderr)
        return False
    except (OSError, ConnectionError) as error:
        print(f"gatewayd {command}: cannot reach the database {redact_url(url)}: {error}", file=sys.stderr)
        return False
    return True


def _config_at_head(args: argparse.Namespace, command: str) -> Config | int:
    """The configuration of a command that works on the database, or its exit status when the
    configuration is invalid (usage) or the database's schema is not this version's (failure)."""
    config = _load(args)
    if config is None:
        return EXIT_USAGE
    if not _schema_ready(command, config.database.url):
        return EXIT_FAILURE
    return config


# --- run -------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_USAGE
    configure_logging(args.log_level or config.log.level, json_lines=args.log_json or config.log.json_lines)
    with asyncio.Runner(loop_factory=_loop_factory(args.event_loop)) as runner:
        return runner.run(_run_daemon(config, _config_path(args)))


#: The event loops ``gatewayd run`` can run on.
EVENT_LOOPS = ("uvloop", "asyncio")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and installed (the lock pins it; not on Windows), else asyncio's.
    bench/per_bind.py measured a bind's MO rate 17-30 % higher on it (issue 11)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_daemon(config: Config, path: str | None) -> int:
    import logging

    from gatewayd.cluster import InstanceTaken
    from gatewayd.daemon import Daemon
    from gatewayd.logging import log_event
    from gatewayd.notify import SystemdNotifier
    from gatewayd.store.errors import SchemaVersionError
    from routing.errors import InvalidQuirks

    log = logging.getLogger("gatewayd")
    notifier = SystemdNotifier.from_environment()
    daemon = Daemon(config, notifier=notifier)
    loop = asyncio.get_running_loop()

    def reload() -> None:
        notifier.reloading()
        try:
            fresh = load_config(path)
        except ConfigError as error:
            log_event(
                log, "config.reload_refused", logging.ERROR, problems=len(error.problems), error=str(error)
            )
            notifier.ready(status="reload refused: configuration invalid")
            return
        daemon.reload(fresh)
        notifier.ready(status="reloaded")
        log_event(log, "config.reloaded", carriers=len(fresh.carriers))

    loop.add_signal_handler(signal.SIGTERM, daemon.stop)
    loop.add_signal_handler(signal.SIGINT, daemon.stop)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await daemon.run()
    except SchemaVersionError as error:
        print(f"gatewayd run: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except InvalidQuirks as error:
        print(f"gatewayd run: {error}", file=sys.stderr)
        return EXIT_USAGE
    except InstanceTaken as error:
        print(f"gatewayd run: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        log_event(log, "daemon.failed", logging.ERROR, error=str(error))
        return EXIT_FAILURE
    finally:
        notifier.close()
    return EXIT_OK


# --- migrate / check-config ------------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_USAGE
    from gatewayd.logging import redact_url
    from gatewayd.schema import head_revision, upgrade

    try:
        asyncio.run(upgrade(config.database.url))
    except (OSError, ConnectionError) as error:
        print(
            f"gatewayd migrate: cannot reach the database {redact_url(config.database.url)}: {error}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"database {redact_url(config.database.url)} is at revision {head_revision()}")
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    """The daemon's configuration, and the ``[simulator]`` table it may hold (``gatewayd simulator``'s,
    which the daemon leaves alone): every problem of both at once."""
    path = _config_path(args)
    try:
        config, problems = load_config(path), []
    except ConfigError as error:
        config, problems = None, list(error.problems)
    if path is not None and not any(problem.key == "<file>" for problem in problems):
        problems += simulator_table_problems(path)
    if problems or config is None:
        print(f"gatewayd check-config: {ConfigError(problems)}", file=sys.stderr)
        return EXIT_USAGE
    binds = sum(bind.count for carrier in config.carriers for bind in carrier.binds)
    where = str(config.source) if config.source else "built-in demo configuration"
    print(
        f"{where}: ok ({len(config.carriers)} carrier(s), {binds} bind(s), "
        f"{len(config.services)} service(s), database {config.database.redacted_url}, "
        f"bus {config.bus.redacted_url})"
    )
    return EXIT_OK


# --- send ------------------------------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    config = _config_at_head(args, args.command)
    if isinstance(config, int):
        return config
    return asyncio.run(_send_async(config, args))


async def _send_async(config: Config, args: argparse.Namespace) -> int:
    from gatewayd.outbox import MTRequest, Outbox, OutboxError, OutboxSettings, held_note, wait_final
    from gatewayd.store.engine import create_engine, session_factory
    from gatewayd.store.enums import MTStatus
    from gatewayd.store.errors import MTRefused
    from gatewayd.store.store import Store

    engine = create_engine(config.database.url, pool_size=1, max_overflow=0)
    sessions = session_factory(engine)
    try:
        try:
            outbox = Outbox(
                OutboxSettings.from_config(config),
                sessions=sessions,
                inserts=Store.for_engine(engine).mt_inserts,
            )
            request = MTRequest(args.to, args.text, carrier=args.carrier, source=args.source)
            queued = await outbox.queue(request)
        except (OutboxError, MTRefused) as error:
            print(f"gatewayd send: {error}", file=sys.stderr)
            return EXIT_FAILURE
        mt_id, until, zone = queued.mt_id, queued.held_until, queued.prepared.zone
        held = f", {held_note(until, zone)}" if until is not None and zone is not None else ""
        print(f"MT {mt_id} queued{held}")
        if not args.wait:
            return EXIT_OK
        if until is not None:
            # its final status comes after the quiet hours: waiting would only end in the time-out's
            # misleading "is `gatewayd run` running?"; not delivered, so not a success either
            print(f"MT {mt_id}: held for the client's quiet hours, not waiting for it", file=sys.stderr)
            return EXIT_FAILURE
        try:
            async with asyncio.timeout(args.timeout):
                final = await wait_final(sessions, mt_id)
        except TimeoutError:
            print(
                f"MT {mt_id}: no final status after {args.timeout:g}s (is `gatewayd run` running?)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        detail = f" ({final.detail})" if final.detail else ""
        print(f"MT {mt_id} {final.status.value}{detail}")
        return EXIT_OK if final.status is MTStatus.DELIVERED else EXIT_FAILURE
    finally:
        await engine.dispose()


# --- demo, panel, user -----------------------------------------------------------------------------


def _simulator(args: argparse.Namespace) -> int:
    """The simulator's own command, reading (a [simulator] table of) the configuration named before
    the command when none is named after it."""
    args.config = args.config or args.config_before
    return run_simulator(args)


def _demo(args: argparse.Namespace) -> int:
    if args.config_before is not None:
        print(
            "gatewayd demo: takes no --config: it runs its built-in set-up "
            "(`gatewayd run --config FILE` runs the daemon on yours)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from echat.demo import run_demo

    return run_demo(Path(args.var), mo_rate=args.mo_rate, with_panel=not args.no_panel)


def _panel(args: argparse.Namespace) -> int:
    config = _config_at_head(args, args.command)
    if isinstance(config, int):
        return config
    from gatewayd.bus import EventBus, create_bus
    from panel.serve import serve_panel, settings_from_config

    def bus_factory(url: str) -> EventBus:
        return create_bus(
            url, topic_prefix=config.bus.topic_prefix, client_id=f"{config.bus.client_id}-panel"
        )

    def announce(url: str) -> None:
        public = f" (public URL {config.panel.public_url})" if config.panel.public_url else ""
        print(f"panel on {url}/{public}", flush=True)

    settings = settings_from_config(config)
    asyncio.run(serve_panel(settings, bus_factory, http=config.panel.http, on_listening=announce))
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    config = _config_at_head(args, f"{args.command} {args.audit_command}")
    if isinstance(config, int):
        return config
    check = asyncio.run(check_audit_trail(config.database.url))
    print(describe(check), file=sys.stdout if check.intact else sys.stderr)
    return EXIT_OK if check.intact else EXIT_FAILURE


def _reports(args: argparse.Namespace) -> int:
    config = _config_at_head(args, f"{args.command} {args.reports_command}")
    if isinstance(config, int):
        return config
    start = asyncio.run(rebuild(config.database.url, args.since))
    print(f"reports: rollups rebuilt from {start:%Y-%m-%d %H:%M} UTC")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    config = _config_at_head(args, args.command)
    if isinstance(config, int):
        return config
    from echat.status import print_status, read_view

    view = asyncio.run(read_view(config.database.url))
    return EXIT_OK if print_status(config, view, as_json=args.json) else EXIT_FAILURE


def _apikey(args: argparse.Namespace) -> int:
    config = _config_at_head(args, f"{args.command} {args.apikey_command}")
    if isinstance(config, int):
        return config
    try:
        print(asyncio.run(handle_apikey_command(args, config.database.url)))
    except APIKeyCommandError as error:
        print(f"gatewayd {args.command} {args.apikey_command}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _user(args: argparse.Namespace) -> int:
    config = _config_at_head(args, f"{args.command} {args.user_command}")
    if isinstance(config, int):
        return config
    from gatewayd.bus import create_bus

    # Sessions a command ends are announced to the panels; an in-process bus reaches no other process.
    bus = None
    if not config.bus.url.startswith("memory:"):
        bus = create_bus(
            config.bus.url, topic_prefix=config.bus.topic_prefix, client_id=f"{config.bus.client_id}-user"
        )
    from gatewayd.routes import routed_pools

    return asyncio.run(handle_user_command(args, config.database.url, bus, routed_pools=routed_pools(config)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Until a command reads its configuration (which may say otherwise), log plain lines at INFO.
    configure_logging("INFO")
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
