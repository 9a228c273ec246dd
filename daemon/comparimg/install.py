"""`comparimg install-service`: write the systemd unit and a starter configuration, then enable it.

The unit text lives here as templates; `systemd/*.service` in the repository are these templates rendered
with the default values (a test keeps them equal). The "make the files" functions are pure; `install`
is the thin part that writes them and runs or prints the `systemctl` commands.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from comparimg.atomic_files import write_text_atomically
from comparimg.config import SYSTEM_CONFIG_FILE, SYSTEM_STATE_DIR

SYSTEM_UNIT = """\
# ComparImg daemon as a system service. Install with `comparimg install-service` (or copy to
# /etc/systemd/system/), set User= to the account that owns the photos, then:
#   systemctl daemon-reload && systemctl enable --now comparimg.service
# Photo folders outside /home, /media, /mnt and /srv need an extra ReadWritePaths= line (drop-in).
[Unit]
Description=ComparImg duplicate-image finder
After=local-fs.target network-online.target remote-fs.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User=@USER@
Group=@GROUP@
ExecStart=@EXEC@ run --config @CONFIG@
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
RestartPreventExitStatus=65 78
TimeoutStartSec=300
TimeoutStopSec=30
WatchdogSec=60
StateDirectory=comparimg
StateDirectoryMode=0700
ConfigurationDirectory=comparimg
Environment=PYTHONUNBUFFERED=1
UMask=0077
LimitNOFILE=65536

# Hardening: the daemon reads and moves photos, writes its state directory, listens on TCP.
# @resources stays allowed: hashing workers set their own memory limit (setrlimit).
# IPAddressAllow=localhost matches the default listen address; widen it in a drop-in with http.listen.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
PrivateDevices=yes
PrivateTmp=yes
PrivateIPC=yes
PrivateUsers=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=@READ_WRITE@
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
DevicePolicy=closed
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @mount @debug @cpu-emulation @obsolete @raw-io @reboot @swap @clock @module
SystemCallErrorNumber=EPERM
IPAddressDeny=any
IPAddressAllow=localhost
Delegate=no

[Install]
WantedBy=multi-user.target
"""

USER_UNIT = """\
# ComparImg daemon for one person's session (`systemctl --user`). Install with
# `comparimg install-service --user` (or copy to ~/.config/systemd/user/), then:
#   systemctl --user daemon-reload && systemctl --user enable --now comparimg.service
# Index, token and trash go to ~/.local/state/comparimg ($XDG_STATE_HOME/comparimg), where the daemon and
# every `comparimg` client look by the same rule; so no StateDirectory= here.
[Unit]
Description=ComparImg duplicate-image finder (user session)

[Service]
Type=notify
NotifyAccess=main
ExecStart=@EXEC@ run --config @CONFIG@
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
RestartPreventExitStatus=65 78
TimeoutStartSec=300
TimeoutStopSec=30
WatchdogSec=60
Environment=PYTHONUNBUFFERED=1
UMask=0077
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native

[Install]
WantedBy=default.target
"""

STARTER_CONFIG = """\
# ComparImg starter configuration, written by `comparimg install-service`.
# Every setting in effect, the defaults of those left out included: `comparimg check-config THIS_FILE`
# (config/comparimg.example.yaml in the source documents each one).
# Reload after editing:  @RELOAD@

# Folders to watch, recursively (reference: true keeps every file there, never trashes).
roots:
@ROOTS@

# The index, the token and the duplicates JSON default to the state folder: /var/lib/comparimg for the
# system service, ~/.local/state/comparimg otherwise (where `comparimg status` looks for the token).

watch:
  settle_seconds: 2.0   # a file is hashed once unchanged for this long

http:
  listen: 127.0.0.1:8765
@TOKEN@"""

DEFAULT_EXEC = "/usr/local/bin/comparimg"
DEFAULT_SYSTEM_CONFIG = str(SYSTEM_CONFIG_FILE)
DEFAULT_USER_CONFIG = "%E/comparimg/comparimg.yaml"
DEFAULT_READ_WRITE = ("-/home", "-/media", "-/mnt", "-/srv")
UNIT_NAME = "comparimg.service"


@dataclass(frozen=True)
class Plan:
    """What `install-service` will write and run."""

    unit_path: Path
    unit_text: str
    config_path: Path
    config_text: str
    commands: tuple[tuple[str, ...], ...]


def render_system_unit(
    exec_start: str = DEFAULT_EXEC,
    config: str = DEFAULT_SYSTEM_CONFIG,
    user: str = "comparimg",
    group: str = "comparimg",
    read_write: tuple[str, ...] = DEFAULT_READ_WRITE,
) -> str:
    """Given the command, config file, account and writable folders, return the system unit text."""
    return _fill(
        SYSTEM_UNIT,
        EXEC=exec_start,
        CONFIG=_unit_path(config),
        USER=user,
        GROUP=group,
        READ_WRITE=" ".join(read_write),
    )


def render_user_unit(exec_start: str = DEFAULT_EXEC, config: str = DEFAULT_USER_CONFIG) -> str:
    """Given the command and config file, return the `systemctl --user` unit text."""
    return _fill(USER_UNIT, EXEC=exec_start, CONFIG=_unit_path(config))


def render_starter_config(roots: list[str], user_mode: bool) -> str:
    """Given the folders to watch, return a starter YAML configuration."""
    reload = "systemctl --user reload comparimg" if user_mode else "systemctl reload comparimg"
    lines = "\n".join(f"  - path: {_yaml_string(r)}\n    reference: false" for r in roots)
    # Named for the system service, so that `comparimg status` (which reads this file, but not the unit's
    # $STATE_DIRECTORY) finds the token; it is where the daemon puts it anyway.
    token = "" if user_mode else f"  token_file: {SYSTEM_STATE_DIR / 'token'}\n"
    return _fill(STARTER_CONFIG, RELOAD=reload, ROOTS=lines, TOKEN=token)


def systemctl_commands(user_mode: bool) -> tuple[tuple[str, ...], ...]:
    """Return the systemctl commands that load and start the unit."""
    base = ("systemctl", "--user") if user_mode else ("systemctl",)
    return ((*base, "daemon-reload"), (*base, "enable", "--now", UNIT_NAME))


def exec_start_command() -> str:
    """Return how systemd should start this installation's `comparimg` (the script, or the interpreter)."""
    script = shutil.which("comparimg")
    if script:
        return str(Path(script).resolve())
    return f"{sys.executable} -m comparimg"


def read_write_paths(roots: list[str]) -> tuple[str, ...]:
    """Given the roots, return ReadWritePaths= entries: the usual places plus any root outside them."""
    usual = [p.lstrip("-") for p in DEFAULT_READ_WRITE]
    extra = [f"-{r}" for r in roots if not any(r == u or r.startswith(u + "/") for u in usual)]
    return (*DEFAULT_READ_WRITE, *extra)


def plan_install(
    *,
    user_mode: bool,
    prefix: Path,
    home: Path,
    account: str,
    group: str,
    config: str | None,
    exec_start: str,
) -> Plan:
    """Given the mode, a root prefix (`/` normally), the account's home and names, an optional config path
    and the start command, return the files to write and the commands to run."""
    roots = [str(home / "Pictures")]
    if user_mode:
        unit_path = prefix / _strip(home) / ".config/systemd/user" / UNIT_NAME
        config_path = Path(config) if config else home / ".config/comparimg/comparimg.yaml"
        unit = render_user_unit(exec_start, str(config_path) if config else DEFAULT_USER_CONFIG)
    else:
        unit_path = prefix / "etc/systemd/system" / UNIT_NAME
        config_path = Path(config or DEFAULT_SYSTEM_CONFIG)
        unit = render_system_unit(exec_start, str(config_path), account, group, read_write_paths(roots))
    return Plan(
        unit_path=unit_path,
        unit_text=unit,
        config_path=prefix / _strip(config_path.absolute()),
        config_text=render_starter_config(roots, user_mode),
        commands=systemctl_commands(user_mode),
    )


def install(
    *, user_mode: bool, config: str | None, prefix: str | None, enable: bool, run_as: str | None = None
) -> int:
    """Given the `install-service` options, write the unit and (if absent) the starter config, then print
    or run the systemctl commands. Return the exit status. Raise OSError when a file cannot be written."""
    account = run_as or os.environ.get("SUDO_USER") or getpass.getuser()
    entry = pwd.getpwnam(account)
    plan = plan_install(
        user_mode=user_mode,
        prefix=Path(prefix or "/"),
        home=Path(entry.pw_dir) if (run_as or not user_mode) else Path.home(),
        account=account,
        group=_group_name(entry.pw_gid),
        config=config,
        exec_start=exec_start_command(),
    )
    write_text_atomically(plan.unit_path, plan.unit_text, 0o644)
    print(f"wrote {plan.unit_path}")
    if plan.config_path.exists():
        print(f"kept existing {plan.config_path}")
    else:
        write_text_atomically(plan.config_path, plan.config_text, 0o640 if not user_mode else 0o600)
        print(f"wrote {plan.config_path}")
    return run_or_print(plan.commands, enable)


def run_or_print(commands: tuple[tuple[str, ...], ...], enable: bool) -> int:
    """Given systemctl commands, run them when `enable`, else print them. Return the exit status."""
    if not enable:
        print("now run:")
        for command in commands:
            print("  " + shlex.join(command))
        return 0
    for command in commands:
        print("+ " + shlex.join(command))
        done = subprocess.run(command, check=False)
        if done.returncode != 0:
            return done.returncode
    return 0


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


def _unit_path(path: str) -> str:
    # systemd splits ExecStart= on spaces and expands '%'; quote what needs it.
    return shlex.quote(path) if " " in path else path


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strip(path: Path) -> Path:
    return Path(str(path).lstrip("/"))
