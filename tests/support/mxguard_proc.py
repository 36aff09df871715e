"""Run the mxguard milter (or a stand-in such as bench/noop_milter.py) as a subprocess for tests.

The process gets an INI file written from a dict of sections; its stdout and stderr go to a log
file in the work directory. ``start()`` returns once the milter socket accepts connections, or
raises MilterStartError with the log when the process exits or the socket never opens.

The command is a list of strings in which ``{ini}`` and ``{socket}`` are replaced by the INI path
and by ``[milter] socket``; the default runs ``python -m mxguard run -c {ini}``.
"""

from __future__ import annotations

import atexit
import configparser
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tests.support.logfile import read_from, size_of

REPO_ROOT = Path(__file__).resolve().parents[2]
NOOP_MILTER = REPO_ROOT / "bench" / "noop_milter.py"

MXGUARD_COMMAND: tuple[str, ...] = (sys.executable, "-m", "mxguard", "run", "-c", "{ini}")
NOOP_COMMAND: tuple[str, ...] = (sys.executable, str(NOOP_MILTER), "{socket}")

IniConfig = Mapping[str, Mapping[str, object]]

# Every process started and not yet stopped, killed at interpreter exit as a last resort.
_LIVE: set[MxguardProcess] = set()


class MilterStartError(RuntimeError):
    """The milter process exited or did not open its socket in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on host that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def parse_milter_socket(spec: str) -> tuple[str, str | tuple[str, int]]:
    """Parse a libmilter socket spec into ("unix", path) or ("inet"|"inet6", (host, port))."""
    if spec.startswith("/"):
        return ("unix", spec)
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError(f"not a milter socket: {spec!r}")
    kind = kind.lower()
    if kind in ("unix", "local"):
        return ("unix", rest)
    if kind in ("inet", "inet6"):
        port, at, host = rest.partition("@")
        if not at:
            host = "::1" if kind == "inet6" else "127.0.0.1"
        if host in ("", "0.0.0.0", "*"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return (kind, (host.strip("[]"), int(port)))
    raise ValueError(f"unsupported milter socket type in {spec!r}")


def postfix_milter_spec(spec: str) -> str:
    """Translate a libmilter socket (inet:PORT@HOST, unix:/path) to Postfix's milter syntax."""
    kind, where = parse_milter_socket(spec)
    if kind == "unix":
        assert isinstance(where, str)
        return f"unix:{where}"
    assert isinstance(where, tuple)
    host, port = where
    return f"{kind}:[{host}]:{port}" if kind == "inet6" else f"inet:{host}:{port}"


def write_ini(path: Path, config: IniConfig) -> None:
    """Write a {section: {option: value}} mapping as an INI file (lists joined by commas)."""
    parser = configparser.ConfigParser(interpolation=None)
    for section, options in config.items():
        parser.add_section(section)
        for option, value in options.items():
            parser.set(section, option, _ini_value(value))
    with path.open("w") as fh:
        parser.write(fh)


def _ini_value(value: object) -> str:
    """Render one INI value: booleans as yes/no, sequences comma-separated."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(item) for item in value)
    return str(value)


class MxguardProcess:
    """The milter as a subprocess: INI file, log file, start/stop/kill/restart."""

    def __init__(
        self,
        config: IniConfig,
        work_dir: str | os.PathLike[str] | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 20.0,
        ready_line: str | None = None,
    ) -> None:
        """Describe the process; config must contain [milter] socket. ``ready_line``: the log
        text that says it serves (mxguard's "listening on", logged after its self-test; the
        socket accepts connections before that); None for the default command means that."""
        self.config: dict[str, dict[str, object]] = {
            section: dict(options) for section, options in config.items()
        }
        # Tests run as root with their state in root's temporary directories: no privilege
        # drop unless a test asks for one ([milter] user defaults to mxguard).
        self.config.get("milter", {}).setdefault("user", "")
        try:
            self.socket = str(self.config["milter"]["socket"])
        except KeyError:
            raise ValueError("config needs [milter] socket") from None
        parse_milter_socket(self.socket)
        self._own_dir = work_dir is None
        self.work_dir = (
            Path(work_dir)
            if work_dir is not None
            else Path(tempfile.mkdtemp(prefix="mxguard-proc-"))
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ini_path = self.work_dir / "mxguard.ini"
        self.log_path = self.work_dir / "mxguard.log"
        self.command: tuple[str, ...] = tuple(command or MXGUARD_COMMAND)
        self.ready_line = ready_line if command else (ready_line or "listening on ")
        self.env = dict(env) if env is not None else None
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def postfix_socket(self) -> str:
        """Return the milter socket in Postfix's smtpd_milters syntax."""
        return postfix_milter_spec(self.socket)

    @property
    def pid(self) -> int | None:
        """Return the pid of the running process, or None."""
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        """Return the command line with {ini} and {socket} filled in."""
        return [part.format(ini=self.ini_path, socket=self.socket) for part in self.command]

    def _environment(self) -> dict[str, str]:
        """Return the child's environment: ours, plus milter/ on PYTHONPATH, plus overrides."""
        env = dict(os.environ)
        src = str(REPO_ROOT / "milter")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.env:
            env.update(self.env)
        return env

    def start(self) -> MxguardProcess:
        """Write the INI, start the process and wait until its socket accepts connections."""
        if self.alive():
            return self
        write_ini(self.ini_path, self.config)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=str(REPO_ROOT),
                start_new_session=True,
            )
        _LIVE.add(self)
        try:
            self._wait_for_socket()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_for_socket(self) -> None:
        """Poll the milter socket until it accepts a connection."""
        assert self.proc is not None
        kind, where = parse_milter_socket(self.socket)
        deadline = time.monotonic() + self.start_timeout
        last_error = "no attempt"
        since = self.log_size()
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise MilterStartError(
                    f"milter exited with status {code} before opening {self.socket}\n"
                    f"--- milter log ---\n{self.log_text()}"
                )
            try:
                if self.ready_line and self.ready_line not in self.log_text(since):
                    raise OSError(f"no {self.ready_line!r} in the log yet")
                _probe(kind, where)
                return
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        raise MilterStartError(
            f"milter socket {self.socket} not accepting after {self.start_timeout}s "
            f"({last_error})\n--- milter log ---\n{self.log_text()}"
        )

    def alive(self) -> bool:
        """Return whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the process with SIGKILL (no clean-up on its side) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        _LIVE.discard(self)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Send SIGTERM, wait up to timeout, then SIGKILL; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        _LIVE.discard(self)
        return self.proc.returncode

    def restart(self) -> MxguardProcess:
        """Stop the process if it runs, then start it again with the same INI."""
        self.stop()
        return self.start()

    def signal(self, signum: int) -> None:
        """Send a signal (e.g. SIGUSR1 to reload) to the running process."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("milter process is not running")
        self.proc.send_signal(signum)

    def log_text(self, since: int = 0) -> str:
        """Return the process's captured output (from byte offset since)."""
        return read_from(self.log_path, since)

    def log_size(self) -> int:
        """Return the current size of the log, to pass to log_text(since=...) later."""
        return size_of(self.log_path)

    def __enter__(self) -> MxguardProcess:
        """Start the process."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the process; remove the work directory if it was a temporary one."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _probe(kind: str, where: str | tuple[str, int]) -> None:
    """Connect to a milter socket once and close again; raise OSError if nobody listens."""
    if kind == "unix":
        assert isinstance(where, str)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(where)
        return
    assert isinstance(where, tuple)
    family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(where)


@atexit.register
def _kill_leftovers() -> None:
    """Kill milter processes a test run left behind (it was interrupted, or forgot stop())."""
    for process in list(_LIVE):
        with contextlib.suppress(Exception):
            process.kill()
