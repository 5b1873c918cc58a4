"""Load and validate the daemon's YAML configuration once, at start, failing fast.

Every problem in the file is reported at once, each as ``FILE:LINE:COL: field: message``, so an
admin fixes a typo in one pass. Secrets may come from the environment instead of the file:
``PBX_ROUTER_ARI_PASSWORD``, ``PBX_ROUTER_DATABASE_URL`` and ``PBX_ROUTER_ADMIN_TOKEN`` (the
environment wins). Placeholders ("change-me", "secret", the examples' values) and secrets
shorter than ``MIN_SECRET_LENGTH`` are errors like any other, with the line they are on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_ARI_PASSWORD = "PBX_ROUTER_ARI_PASSWORD"
ENV_DATABASE_URL = "PBX_ROUTER_DATABASE_URL"
ENV_ADMIN_TOKEN = "PBX_ROUTER_ADMIN_TOKEN"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AriConfig(_Section):
    url: str = Field("http://127.0.0.1:8088", description="Asterisk HTTP server (without /ari)")
    username: str = "pbx-router"
    password: str = Field("", description=f"or set {ENV_ARI_PASSWORD}")
    app: str = Field("pbx-router", description="Stasis application name used in extensions.conf")
    request_timeout: float = Field(5.0, gt=0, le=60)
    ping_interval: float = Field(20.0, gt=0, le=300, description="websocket keepalive ping")
    reconnect_min: float = Field(0.5, gt=0)
    reconnect_max: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/").removesuffix("/ari")


class DatabaseConfig(_Section):
    url: str | None = Field(
        None, description=f"postgresql://... ; empty = embedded server in data_dir; or {ENV_DATABASE_URL}"
    )
    pool_max: int = Field(10, ge=1, le=200)
    spool_max_records: int = Field(1_000_000, ge=1000)


class RetentionConfig(_Section):
    days: int = Field(365, ge=1, le=36500, description="call records, transcripts and spooled records "
                      "older than this many days are deleted")
    interval_hours: float = Field(24.0, ge=0.01, le=168, description="how often the purge runs (also once at start)")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class DialplanTarget(_Section):
    type: Literal["dialplan"] = "dialplan"
    context: str
    extension: str = "s"
    priority: int = Field(1, ge=1)


class EndpointTarget(_Section):
    type: Literal["endpoint"]
    endpoint: str = Field(description="e.g. PJSIP/agent1")
    timeout: float = Field(30.0, gt=0, le=600, description="ring this long before the fallback")

    @field_validator("endpoint")
    @classmethod
    def _tech_resource(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError("must be TECH/resource, e.g. PJSIP/agent1")
        return v


RouteTarget = Annotated[DialplanTarget | EndpointTarget, Field(discriminator="type")]


class CallsConfig(_Section):
    greeting: list[str] = Field(
        default_factory=lambda: ["sound:hello-world"],
        description="media URIs played after answer (sound:, number:, digits:, recording:)",
    )
    default_route: RouteTarget = Field(
        default_factory=lambda: DialplanTarget(context="pbx-router-fallback"),
        description="where every call goes once greeted (until rules are configured)",
    )
    fallback: DialplanTarget = Field(
        default_factory=lambda: DialplanTarget(context="pbx-router-fallback"),
        description="safe place for a caller when anything goes wrong: a human",
    )
    greeting_timeout: float = Field(60.0, gt=0, description="longest a greeting may play")
    max_concurrent: int = Field(500, ge=1, description="calls beyond this go straight to fallback")

    @field_validator("greeting")
    @classmethod
    def _media_uris(cls, v: list[str]) -> list[str]:
        for uri in v:
            scheme = uri.split(":", 1)[0] if ":" in uri else ""
            if scheme not in {"sound", "number", "digits", "characters", "recording", "tone"}:
                raise ValueError(f"{uri!r} is not an ARI media URI (sound:NAME, number:N, ...)")
        return v


class ShutdownConfig(_Section):
    drain_timeout: float = Field(10.0, ge=0, le=600, description="seconds in-flight calls get to finish routing")


class MediaConfig(_Section):
    rtp_host: str = "127.0.0.1"
    rtp_port_min: int = Field(40000, ge=1024, le=65535)
    rtp_port_max: int = Field(40999, ge=1024, le=65535)
    format: Literal["slin16", "slin", "ulaw", "alaw"] = "slin16"

    @model_validator(mode="after")
    def _range(self) -> MediaConfig:
        if self.rtp_port_max < self.rtp_port_min:
            raise ValueError("rtp_port_max must be >= rtp_port_min")
        return self


class SpeechConfig(_Section):
    enabled: bool = Field(True, description="listen to callers (needs rules); off = keypad only")
    engine: Literal["moonshine", "pocketsphinx", "vosk", "vosk-server"] = "moonshine"
    model_path: str | None = Field(None, description=(
        "vosk: model directory (e.g. models/vosk-model-small-en-us-0.15); moonshine: a prepared "
        "model directory (default: built from the moonshine-cpp wheel into the cache)"))
    server_url: str | None = Field(None, description="ws://host:2700 for vosk-server")
    workers: int = Field(2, ge=1, le=64, description="recogniser worker processes/threads")
    expected_sessions: int = Field(8, ge=0, le=1000, description="decoders built ahead of the first calls")
    end_silence_ms: int = Field(600, ge=200, le=3000, description="silence that ends an utterance")
    early_final_ms: int = Field(250, ge=0, le=3000, description=(
        "a pause this long starts recognition before the end is confirmed; used if the caller "
        "stays silent, withdrawn if they go on (0 = off)"))
    max_utterance_ms: int = Field(15000, ge=1000, le=60000)
    no_input_ms: int = Field(6000, ge=1000, le=60000, description="silence after a prompt = no input")


class AdminConfig(_Section):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="loopback only; other addresses are refused")
    port: int = Field(8089, ge=0, le=65535)
    token: str = Field("", description=f"bearer token for the admin API; or {ENV_ADMIN_TOKEN}")

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        if v not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the admin API binds to loopback only (127.0.0.1, ::1, localhost)")
        return v


class Config(_Section):
    ari: AriConfig = Field(default_factory=AriConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    data_dir: str = "./var"
    log: LogConfig = Field(default_factory=LogConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    rules: str | None = Field(None, description="path of the routing rules YAML (relative to this file)")

    source: str | None = Field(None, exclude=True, description="file this was loaded from")

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Cross-field problems pydantic cannot see field by field: (path, message)."""
        out: list[tuple[tuple[str, ...], str]] = []
        if self.admin.enabled and not self.admin.token:
            out.append((("admin", "token"), f"required when the admin API is enabled (or set {ENV_ADMIN_TOKEN}; "
                                            "or admin: {enabled: false})"))
        return out

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


class ConfigError(Exception):
    """The configuration cannot be used. ``errors`` holds one ``FILE:LINE:COL: ...`` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- YAML with positions ---------------------------------------------------------------------


class _PositionLoader(yaml.SafeLoader):
    """SafeLoader that remembers where every mapping key and value starts."""


def _load_with_positions(text: str, filename: str) -> tuple[Any, dict[tuple[Any, ...], tuple[int, int]]]:
    positions: dict[tuple[Any, ...], tuple[int, int]] = {}
    loader = _PositionLoader(text)
    loader.name = filename
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()

    def walk(n: yaml.Node | None, path: tuple[Any, ...]) -> None:
        if n is None:
            return
        positions.setdefault(path, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                positions[path + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                positions[path + (key, "__value__")] = (v.start_mark.line + 1, v.start_mark.column + 1)
                walk(v, path + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, path + (i,))

    walk(node, ())
    data = yaml.load(text, Loader=yaml.SafeLoader) if node is not None else None  # noqa: S506 (SafeLoader)
    return data, positions


def _locate(positions: Mapping[tuple[Any, ...], tuple[int, int]], loc: tuple[Any, ...]) -> tuple[int, int]:
    # Walk back from the full path to the nearest ancestor that appears in the file.
    path = tuple(loc)
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return positions.get((), (1, 1))


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts the discriminator value into the path (default_route.endpoint.timeout);
    # the admin's file has no such level.
    out: list[Any] = []
    for i, part in enumerate(loc):
        if i and loc[i - 1] in {"default_route", "fallback"} and part in {"dialplan", "endpoint"}:
            continue
        out.append(part)
    return tuple(out)


def parse_config(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None, *, check_secrets: bool = True
) -> Config:
    """Parse and validate ``text``; raise :class:`ConfigError` listing every problem.
    ``check_secrets=False``: tools that only read the admin API's address (the staff CLI) do
    not need the daemon's ARI password, and refusing a weak one is the daemon's job."""
    env = os.environ if env is None else env
    try:
        data, positions = _load_with_positions(text, filename)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([f"{filename}:{line}:{col}: YAML syntax: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}:1:1: YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1:1: the file must be a mapping of sections (ari:, calls:, ...)"])

    data = _apply_env(data, env)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = _strip_union_tags(tuple(err["loc"]))
            line, col = _locate(positions, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (typo?)"
            errors.append(f"{filename}:{line}:{col}: {_format_loc(loc)}: {msg}")
        raise ConfigError(errors) from None
    problems = cfg.problems() + (secret_problems(cfg, env) if check_secrets else [])
    if problems:
        errors = []
        for loc, msg in problems:
            line, col = _locate(positions, loc)
            errors.append(f"{filename}:{line}:{col}: {_format_loc(loc)}: {msg}")
        raise ConfigError(errors)
    return cfg.model_copy(update={"source": filename})


# --- secrets ---------------------------------------------------------------------------------

MIN_SECRET_LENGTH = 16
# What examples, tutorials and hurried admins leave in place. Compared after folding case,
# dropping everything but letters and digits, and undoing digit-for-letter swaps, so
# "Change-Me", "CHANGE_ME!", "s3cret" and "passw0rd" are all caught.
_PLACEHOLDER_WORDS = frozenset({
    "secret", "password", "passwd", "pass", "admin", "token", "test", "default", "example",
    "letmein", "qwerty", "none", "null", "todo", "fixme", "xxx", "asterisk", "pbxrouter",
})
# Anywhere inside the value: examples/pbx-router.yaml's "change-me"/"change-me-too" and
# asterisk_conf/ari.conf's "CHANGE-ME-ari-password" included.
_PLACEHOLDER_PARTS = ("changeme", "replaceme", "placeholder", "yourpassword", "yourtoken", "putyour")
_UNLEET = str.maketrans("013457@$", "oieastas")


def is_placeholder_secret(value: str) -> bool:
    """True for values that are obviously not a real secret (see ``_PLACEHOLDER_*``)."""
    folded = "".join(ch for ch in value.lower() if ch.isalnum() or ch in "@$")
    plain = folded.translate(_UNLEET)
    letters = "".join(ch for ch in plain if ch.isalnum())
    if not letters or len(set(letters)) == 1:  # "", "xxxxxxxx", "0000000000000000"
        return True
    return letters in _PLACEHOLDER_WORDS or any(part in letters for part in _PLACEHOLDER_PARTS)


def _secret_problem(value: str, *, min_length: int | None, env_name: str, from_env: bool) -> str | None:
    where = f" (from ${env_name})" if from_env else ""
    how = f"use a long random value, e.g. `openssl rand -hex 24`, preferably in ${env_name}"
    if is_placeholder_secret(value):
        return f"is a placeholder{where}, not a secret: {how}"
    if min_length is not None and len(value) < min_length:
        return f"is {len(value)} characters long{where}; at least {min_length} are required: {how}"
    return None


def secret_problems(cfg: Config, env: Mapping[str, str]) -> list[tuple[tuple[str, ...], str]]:
    """Placeholder and short secrets: (path, message) like ``Config.problems``. An example value
    left in place is worse than a missing one: it looks configured and anyone can guess it."""
    out: list[tuple[tuple[str, ...], str]] = []
    if not cfg.ari.password:
        out.append((("ari", "password"), f"required: the password of the ari.conf user (set {ENV_ARI_PASSWORD}, "
                                         "or ari.password here)"))
    else:
        problem = _secret_problem(cfg.ari.password, min_length=MIN_SECRET_LENGTH, env_name=ENV_ARI_PASSWORD,
                                  from_env=bool(env.get(ENV_ARI_PASSWORD)))
        if problem:
            out.append((("ari", "password"), problem))
    if cfg.admin.enabled and cfg.admin.token:
        problem = _secret_problem(cfg.admin.token, min_length=MIN_SECRET_LENGTH, env_name=ENV_ADMIN_TOKEN,
                                  from_env=bool(env.get(ENV_ADMIN_TOKEN)))
        if problem:
            out.append((("admin", "token"), problem))
    if cfg.database.url:
        try:
            db_password = urlsplit(cfg.database.url).password
        except ValueError:
            db_password = None  # not a URL we can read; asyncpg will say why at connect time
        if db_password:
            # The database's own password policy decides its length; only placeholders here.
            problem = _secret_problem(db_password, min_length=None, env_name=ENV_DATABASE_URL,
                                      from_env=bool(env.get(ENV_DATABASE_URL)))
            if problem:
                out.append((("database", "url"), "the password in it " + problem))
    return out


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    data = dict(data)

    def section(name: str) -> dict[str, Any]:
        sec = data.get(name)
        sec = dict(sec) if isinstance(sec, dict) else ({} if sec is None else sec)
        data[name] = sec
        return sec

    if env.get(ENV_ARI_PASSWORD):
        sec = section("ari")
        if isinstance(sec, dict):
            sec["password"] = env[ENV_ARI_PASSWORD]
    if env.get(ENV_DATABASE_URL):
        sec = section("database")
        if isinstance(sec, dict):
            sec["url"] = env[ENV_DATABASE_URL]
    if env.get(ENV_ADMIN_TOKEN):
        sec = section("admin")
        if isinstance(sec, dict):
            sec["token"] = env[ENV_ADMIN_TOKEN]
    return data


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *, check_secrets: bool = True) -> Config:
    """Read ``path`` and validate it. Relative ``data_dir``/``rules`` resolve against the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}:1:1: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}:1:1: not UTF-8 text: {exc.reason}"]) from None
    cfg = parse_config(text, str(p), env, check_secrets=check_secrets)
    base = p.resolve().parent
    updates: dict[str, Any] = {}
    if not Path(cfg.data_dir).is_absolute():
        updates["data_dir"] = str((base / cfg.data_dir).resolve())
    if cfg.rules and not Path(cfg.rules).is_absolute():
        updates["rules"] = str((base / cfg.rules).resolve())
    return cfg.model_copy(update=updates) if updates else cfg
