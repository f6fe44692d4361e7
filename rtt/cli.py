"""rtt: a self-hosted real-time system-messaging server.

`rtt serve` runs one node (`--workers N`: N node processes on one port); `rtt token` mints a
connection token for a profile; `rtt send` sends a system message from the terminal;
`rtt status` asks a node how it is doing; `rtt check-config` and `rtt init` check and write the
apps file; `rtt migrate-redis` moves a Redis of an older rtt to today's key layout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging.config
import os
import resource
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from rtt import configfile, interpreter, tokens
from rtt.app import server_config
from rtt.http_protocol import sockets_at_most
from rtt.logs import log_config
from rtt.settings import AppConfig, Settings, SettingsError, load_apps, settings_from

# descriptors a node needs besides client sockets: its listener, the database and its WAL,
# the Redis pool (64), the event loop's own, stdio, with room to spare
FD_RESERVE = 256
DEFAULT_URL = "http://127.0.0.1:8080"
HTTP_TIMEOUT = 10.0


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
        workers=args.workers,
    )
    if settings.generated_secrets:
        _print_demo(settings)
    settings = _fit_open_files(settings)
    if settings.workers > 1:
        from rtt.workers import supervise

        sys.exit(supervise(settings, log_config(args.log_level)))
    config = server_config(settings, log_config=log_config(args.log_level))
    interpreter.tune()
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


def _app_of(command: str, config: str | None, app_id: str) -> AppConfig:
    """The app `app_id` of the apps file, or exit saying what to fix."""
    config = config or os.environ.get("RTT_CONFIG")
    if not config:
        sys.exit(f"rtt {command}: needs --config (or RTT_CONFIG), the apps file with its secrets")
    try:
        apps = load_apps(Path(config))
    except (OSError, ValueError, ValidationError) as e:  # TOMLDecodeError is a ValueError
        sys.exit(f"rtt {command}: cannot use {config}: {e}\n(run: rtt check-config {config})")
    app = apps.get(app_id)
    if app is None:
        sys.exit(f"rtt {command}: no app {app_id!r} in {config} (it has: {', '.join(apps)})")
    return app


def _http(command: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request to a node (POST when there is a body); (HTTP status, decoded JSON), or exit
    saying why the node could not be asked."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:  # an answer all the same: rtt errors are JSON bodies
        status, raw = e.code, e.read()
    except (OSError, ValueError) as e:  # refused, timed out, a malformed --url
        sys.exit(f"rtt {command}: cannot reach {url}: {getattr(e, 'reason', e)}")
    try:
        return status, json.loads(raw)
    except ValueError:
        sys.exit(f"rtt {command}: {url} answered HTTP {status} with no JSON: is it an rtt node?")


def send(args: argparse.Namespace) -> None:
    app = _app_of("send", args.config, args.app)
    recipients = [p.strip() for p in args.to.split(",") if p.strip()]
    if not recipients:
        sys.exit("rtt send: --to names no profile (give ids separated by commas)")
    server = args.server or next(iter(app.servers), None)
    if server is None or server not in app.servers:
        sys.exit(f"rtt send: app {args.app!r} has no S2S server {args.server or ''!r} to sign in")
    body = {
        "appId": args.app,
        "serverName": server,
        "serverSecret": app.servers[server],
        "service": "messaging",
        "operation": "SYS_SEND_MESSAGE",
        "data": {
            "toProfileIds": recipients,
            "contentJson": {"text": args.text},
            "fromJson": {"id": None, "name": args.sender},
        },
    }
    status, answer = _http("send", args.url.rstrip("/") + "/s2sdispatcher", body)
    if isinstance(answer, dict) and answer.get("status") == 200:
        print(answer["data"]["msgId"])
        return
    if isinstance(answer, dict) and "reason_code" in answer:
        sys.exit(
            f"rtt send: refused: {answer.get('status')}/{answer['reason_code']}"
            f" {answer.get('status_message')}"
        )
    sys.exit(f"rtt send: unexpected answer (HTTP {status}): {answer}")


def status(args: argparse.Namespace) -> None:
    code, answer = _http("status", args.url.rstrip("/") + "/status")
    if not isinstance(answer, dict) or "engine" not in answer:
        sys.exit(f"rtt status: unexpected answer (HTTP {code}): {answer}")
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        engine, connections, outbox = answer["engine"], answer["connections"], answer["outbox"]
        health = "ready" if engine["ready"] else f"NOT READY ({engine['error']})"
        waiting = (
            f"{outbox['depth']} entries waiting, {outbox['dropped']} dropped by retention"
            if outbox
            else "unknown (engine not ready)"
        )
        print(
            f"node     {answer['node']} (rtt {answer['version']}) at {args.url}\n"
            f"engine   {engine['kind']}: {health}\n"
            f"sockets  {connections['sockets']} ({connections['profiles']} profiles)\n"
            f"outbox   {waiting}"
        )
    if answer["status"] != "ok":
        sys.exit(1)


def check_config(args: argparse.Namespace) -> None:
    found = configfile.problems(Path(args.file))
    for problem in found:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"{args.file}: OK")


def init(args: argparse.Namespace) -> None:
    path = Path(args.path)
    try:
        configfile.write_new(path, configfile.template(args.app))
    except FileExistsError:
        sys.exit(f"rtt init: {path} exists; not overwriting it (its secrets may be in use)")
    except (OSError, ValueError) as e:
        sys.exit(f"rtt init: {e}")
    print(
        f"rtt init: wrote {path} (app {args.app!r}, fresh secrets, mode 0600).\n"
        f"Start a node with: rtt serve --config {path}"
    )


def push_worker(args: argparse.Namespace) -> None:
    """A push dispatcher in its own process (rtt/worker.py)."""
    from rtt.worker import push_worker as run_worker

    settings = _settings(
        args.config, engine=args.engine, redis_url=args.redis_url, database=args.database
    )
    logging.config.dictConfig(log_config(args.log_level))
    asyncio.run(run_worker(settings))


def migrate_redis(args: argparse.Namespace) -> None:
    """Move a Redis written by an older rtt to today's key layout (migrate.py)."""
    from rtt.engines.redis import redis_client
    from rtt.engines.redis.migrate import NodesRunning, migrate

    url = args.redis_url or os.environ.get("RTT_REDIS_URL")
    if not url:
        sys.exit("rtt migrate-redis: needs --redis-url (or RTT_REDIS_URL)")

    async def run() -> None:
        client = redis_client(url, timeout=HTTP_TIMEOUT, pool_size=2)
        try:
            moved = await migrate(client)
        except NodesRunning as e:
            sys.exit(f"rtt migrate-redis: {e}")
        finally:
            await client.aclose()
        print(
            f"rtt migrate-redis: {moved.renamed} keys renamed,"
            f" {moved.folded} seqs moved into their boxes"
        )
        if moved.conflicts:
            sys.exit(
                f"rtt migrate-redis: {len(moved.conflicts)} keys left under their old names"
                f" because the new name is taken (first: {moved.conflicts[0]}); the epoch was"
                " not moved, so nodes still refuse to start: resolve them and run it again"
            )

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="rtt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="run one rtt node")
    s.add_argument("--config", help="apps TOML file (default: RTT_CONFIG, else a demo app)")
    s.add_argument("--host", help="bind address (RTT_HOST, default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (RTT_PORT, default 8080)")
    s.add_argument("--engine", choices=["local", "redis"], help="RTT_ENGINE, default local")
    s.add_argument("--redis-url", help="RTT_REDIS_URL for --engine redis")
    s.add_argument("--database", help="SQLite file of the local engine (RTT_DATABASE, rtt.db)")
    s.add_argument(
        "--workers",
        type=int,
        help="node processes sharing the port (RTT_WORKERS, default 1; more needs redis)",
    )
    s.add_argument("--log-level", default="info")
    s.set_defaults(run=serve)
    t = commands.add_parser("token", help="print a connection token (JWT) for a profile")
    t.add_argument("--app", required=True)
    t.add_argument("--profile", required=True)
    t.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    t.add_argument("--config", help="apps TOML file (default: RTT_CONFIG)")
    t.set_defaults(run=token)
    m = commands.add_parser(
        "send",
        help="send a system message to profiles through a running node",
        description="Send a system message (messaging/SYS_SEND_MESSAGE) to profiles, through a"
        " running node's /s2sdispatcher, signed in as one of the app's S2S servers from the"
        " apps file. Prints the new message's msgId; exits non-zero with the node's error.",
        epilog='example: rtt send --app demo --to p1,p2 --text "hello" --config rtt.toml',
    )
    m.add_argument("--app", required=True, help="the app id (a table [apps.<id>] of the file)")
    m.add_argument("--to", required=True, metavar="P1,P2", help="profile ids, comma separated")
    m.add_argument("--text", required=True, help='the message; sent as contentJson {"text"}')
    m.add_argument("--url", default=DEFAULT_URL, help=f"the node (default {DEFAULT_URL})")
    m.add_argument("--config", help="apps file with the S2S secret (default: RTT_CONFIG)")
    m.add_argument("--server", help="which of the app's S2S servers (default: its first)")
    m.add_argument(
        "--from", dest="sender", default="System", help="sender name shown (default System)"
    )
    m.set_defaults(run=send)
    st = commands.add_parser(
        "status",
        help="ask a node how it is doing",
        description="Print a node's name, version, engine and its health, the sockets"
        " connected to it and the push-outbox entries waiting, from its GET /status."
        " Exits 1 when the node's engine does not answer.",
    )
    st.add_argument("--url", default=DEFAULT_URL, help=f"the node (default {DEFAULT_URL})")
    st.add_argument("--json", action="store_true", help="print the raw JSON answer")
    st.set_defaults(run=status)
    c = commands.add_parser(
        "check-config",
        help="check an apps file without starting a node",
        description="Validate an apps TOML file with the rules `rtt serve` applies. Prints"
        " every problem on its own line naming the app and the field, and exits 1; prints OK"
        " and exits 0 when a node would accept the file.",
    )
    c.add_argument("file", help="the apps TOML file, e.g. rtt.toml")
    c.set_defaults(run=check_config)
    i = commands.add_parser(
        "init",
        help="write a new commented apps file with fresh secrets",
        description="Write a commented apps TOML file for one app, with freshly generated"
        " secrets, readable by you only. Refuses to overwrite an existing file.",
    )
    i.add_argument("--path", default="rtt.toml", help="where to write it (default rtt.toml)")
    i.add_argument("--app", default="demo", help="the app id to create (default demo)")
    i.set_defaults(run=init)

    w = commands.add_parser("push-worker", help="drain the push outbox in a separate process")
    w.add_argument("--config", help="apps TOML file (default: RTT_CONFIG)")
    w.add_argument("--engine", choices=["local", "redis"], help="RTT_ENGINE, default local")
    w.add_argument("--redis-url", help="RTT_REDIS_URL for --engine redis")
    w.add_argument("--database", help="SQLite file of the local engine (RTT_DATABASE)")
    w.add_argument("--log-level", default="info")
    w.set_defaults(run=push_worker)
    r = commands.add_parser(
        "migrate-redis",
        help="move a Redis written by an older rtt to today's key layout",
        description="Move, in place, what an older rtt wrote to today's key layout: an app's"
        " shared keys and the epoch to their hash-tagged names, each profile's seq into its"
        " box. Stop every node first; a node refuses to start on an older layout. Safe to run"
        " again.",
    )
    r.add_argument("--redis-url", help="the Redis (default: RTT_REDIS_URL)")
    r.set_defaults(run=migrate_redis)
    args = parser.parse_args(argv)
    args.run(args)
