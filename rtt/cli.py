"""`rtt serve` runs one node; `rtt token` mints a connection token for a profile."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging.config
import resource
import sys

import uvicorn

from rtt import collector, tokens
from rtt.app import server_config
from rtt.http_protocol import sockets_at_most
from rtt.logs import log_config
from rtt.settings import Settings, SettingsError, settings_from

# descriptors a node needs besides client sockets: its listener, the database and its WAL,
# the Redis pool (64), the event loop's own, stdio, with room to spare
FD_RESERVE = 256


def _print_demo(settings: Settings) -> None:
    secrets = settings.generated_secrets
    print(
        "rtt: no --config given, serving the development app 'demo' with these secrets"
        " (printed once, new on every start):\n"
        f"  client secret (JWT HS256) : {secrets['secret']}\n"
        f"  S2S server 'backend'      : {secrets['server_secret']}\n"
        f"  RongCloud demo-key secret : {secrets['app_secret']}\n"
        f"  API user 'admin' password : {secrets['admin_password']}",
        file=sys.stderr,
        flush=True,
    )


def _settings(config: str | None, **options: object) -> Settings:
    """The node's settings, or exit with the message naming the variable that is wrong."""
    try:
        return settings_from(config, **options)
    except SettingsError as e:
        sys.exit(f"rtt: {e}")


def _fit_open_files(settings: Settings) -> Settings:
    """Raise the soft open-files limit (toward the hard one) so that the connection ceiling,
    not the fd limit, is what a flood of connections meets: at the fd limit the node could not
    accept anyone, /healthz included. A ceiling that still does not fit is lowered to what
    does, and said."""
    needed = sockets_at_most(settings.max_connections) + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft >= needed:
        return settings
    fits = max(1, (soft - FD_RESERVE) * 4 // 5)
    print(
        f"rtt: RTT_MAX_CONNECTIONS={settings.max_connections} needs {needed} open files, but"
        f" this process may open {soft} (ulimit -n): serving at most {fits} connections",
        file=sys.stderr,
        flush=True,
    )
    return settings.model_copy(update={"max_connections": fits})


def serve(args: argparse.Namespace) -> None:
    settings = _settings(
        args.config,
        host=args.host,
        port=args.port,
        engine=args.engine,
        redis_url=args.redis_url,
        database=args.database,
    )
    if settings.generated_secrets:
        _print_demo(settings)
    settings = _fit_open_files(settings)
    config = server_config(settings, log_config=log_config(args.log_level))
    collector.tune()
    uvicorn.Server(config).run()


def token(args: argparse.Namespace) -> None:
    settings = _settings(args.config)
    if settings.generated_secrets:
        sys.exit(
            "rtt token: needs --config (or RTT_CONFIG): the demo app's secret changes every start"
        )
    app = settings.apps.get(args.app)
    if app is None:
        sys.exit(f"rtt token: no app {args.app!r} in {settings.config_path}")
    try:
        print(tokens.mint(args.app, app, args.profile, args.ttl)[0])
    except tokens.TokenError as e:
        sys.exit(f"rtt token: {e}")


def push_worker(args: argparse.Namespace) -> None:
    """A push dispatcher in its own process (rtt/worker.py)."""
    from rtt.worker import push_worker as run_worker

    settings = _settings(
        args.config, engine=args.engine, redis_url=args.redis_url, database=args.database
    )
    logging.config.dictConfig(log_config(args.log_level))
    asyncio.run(run_worker(settings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rtt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="run one rtt node")
    s.add_argument("--config", help="apps TOML file (default: RTT_CONFIG, else a demo app)")
    s.add_argument("--host", help="bind address (RTT_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (RTT_PORT, default 8080)")
    s.add_argument("--engine", choices=["local", "redis"], help="RTT_ENGINE, default local")
    s.add_argument("--redis-url", help="RTT_REDIS_URL for --engine redis")
    s.add_argument("--database", help="SQLite file of the local engine (RTT_DATABASE, rtt.db)")
    s.add_argument("--log-level", default="info")
    s.set_defaults(run=serve)
    t = commands.add_parser("token", help="print a connection token (JWT) for a profile")
    t.add_argument("--app", required=True)
    t.add_argument("--profile", required=True)
    t.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    t.add_argument("--config", help="apps TOML file (default: RTT_CONFIG)")
    t.set_defaults(run=token)
    w = commands.add_parser("push-worker", help="drain the push outbox in a separate process")
    w.add_argument("--config", help="apps TOML file (default: RTT_CONFIG)")
    w.add_argument("--engine", choices=["local", "redis"], help="RTT_ENGINE, default local")
    w.add_argument("--redis-url", help="RTT_REDIS_URL for --engine redis")
    w.add_argument("--database", help="SQLite file of the local engine (RTT_DATABASE)")
    w.add_argument("--log-level", default="info")
    w.set_defaults(run=push_worker)
    args = parser.parse_args(argv)
    args.run(args)
