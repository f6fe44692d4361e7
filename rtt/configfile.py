"""The apps TOML file from the operator's side: write a fresh one (`rtt init`), and explain every
problem of an existing one (`rtt check-config`) with the same models the node validates it with,
so a file that checks clean is a file `rtt serve` accepts."""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from pathlib import Path

from pydantic import BaseModel, ValidationError

from rtt.settings import AppsFile, Features, Limits

APP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SECRET_FIELDS = ("secret", "password", "servers")  # their values are never echoed back


def _defaults(model: type[BaseModel]) -> str:
    """Every field of `model` with its default, commented out: the file documents the defaults
    without pinning them."""
    lines = []
    for name, field in model.model_fields.items():
        value = str(field.default).lower() if isinstance(field.default, bool) else field.default
        lines.append(f"# {name} = {value}")
    return "\n".join(lines)


def template(app: str) -> str:
    """A commented apps file for one app, every secret freshly generated."""
    if not APP_ID.fullmatch(app):
        raise ValueError(f"app id {app!r}: use 1-64 letters, digits, '-' or '_'")
    client, server, rong, admin = (secrets.token_urlsafe(32) for _ in range(4))
    return f"""\
# rtt apps file (API.md §1). Start a node with:  rtt serve --config rtt.toml
# Check it after editing with:                  rtt check-config rtt.toml
# Every secret below was generated for this file: keep it private (it is created mode 0600).

[apps.{app}]
# signs the clients' connection tokens (JWT HS256): `rtt token --app {app} --profile P`
secret = "{client}"
# the RongCloud-compatible door (App-Key header, signed with app_secret)
app_key = "{app}-key"
app_secret = "{rong}"
# profile ids that name the app itself; clients can never send to them
system_identities = ["System"]

[apps.{app}.servers]
# backend services calling /s2sdispatcher: serverName = serverSecret (`rtt send` uses one)
backend = "{server}"

[apps.{app}.users.admin]
# an API user (HTTP Basic) of the Nexudus-compatible door; roles name what it may do
password = "{admin}"
roles = ["admin"]

[apps.{app}.features]
# all on by default; a disabled feature's operations answer 40601
{_defaults(Features)}

[apps.{app}.limits]
# the defaults, commented out; uncomment a line to change it
{_defaults(Limits)}
"""


def write_new(path: Path, text: str) -> None:
    """Create `path` with `text`, readable by its owner only; FileExistsError if it exists (an
    existing file's secrets are never overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def problems(path: Path) -> list[str]:
    """Everything wrong with the apps file at `path`, one line each naming the app and field;
    empty if `rtt serve --config path` would accept it."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        return [f"cannot read it: {e.strerror or e}"]
    except tomllib.TOMLDecodeError as e:
        return [f"not valid TOML: {e}"]
    try:
        apps = AppsFile.model_validate(document).apps
    except ValidationError as e:
        return [_explain(error) for error in e.errors()]
    return [] if apps else ["apps: no app is defined; add an [apps.<id>] table"]


def _explain(error: object) -> str:
    """One pydantic error as `app 'demo': limits.max_frame_bytes: <what> (got <value>)`."""
    assert isinstance(error, dict)
    loc = [str(part) for part in error["loc"]]
    if len(loc) >= 2 and loc[0] == "apps":
        where = f"app {loc[1]!r}: " + (".".join(loc[2:]) or "the app table")
    else:
        where = ".".join(loc) or "the file"
    value = error.get("input")
    secret = any(word in part for part in loc for word in SECRET_FIELDS)
    plain = isinstance(value, str | int | float | bool) and not secret
    shown = f" (got {value!r})" if plain else ""
    return f"{where}: {error['msg']}{shown}"
