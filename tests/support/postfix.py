"""A private Postfix instance for end-to-end tests.

The instance uses Debian's Postfix binaries with its own configuration, queue and data directories
under one base directory, listens on 127.0.0.1 only, delivers its virtual domains into mbox files
under ``BASE/mail`` and never looks anything up in DNS nor delivers anywhere else (every non-local
transport is ``error:``). It must be started as root (``postfix start`` needs it).

Layout of the base directory::

    BASE/conf/main.cf, master.cf, vmailbox   configuration (written here)
    BASE/queue/                              queue_directory (pid/master.pid, private/, public/ …)
    BASE/data/                               data_directory
    BASE/mail/<user>                         one mbox file per mailbox user
    BASE/maillog                             Postfix's log (postlogd)
"""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import json
import mailbox
import os
import pwd
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from tests.support.logfile import read_from, size_of

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/postqueue"
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/postconf"

DEFAULT_USERS: tuple[str, ...] = ("alice", "bob", "postmaster")

# Every running instance, so that an interpreter exit without __exit__ still stops them.
_RUNNING: set[PostfixInstance] = set()
_RUNNING_LOCK = threading.Lock()


class PostfixError(RuntimeError):
    """Postfix could not be started, stopped or queried."""


def postfix_available() -> str | None:
    """Return why a private Postfix cannot run here, or None when it can."""
    if not Path(POSTFIX).exists():
        return f"{POSTFIX} not found (Debian package 'postfix')"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no 'postfix' user on this system"
    return None


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on host that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def postfix_version() -> tuple[int, ...]:
    """Return the installed Postfix version, e.g. (3, 7, 11)."""
    out = subprocess.run(
        [POSTCONF, "-d", "-h", "mail_version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return tuple(int(part) for part in out.split(".") if part.isdigit())


def _check_traversable(path: Path, user: str = "postfix") -> None:
    """Raise PostfixError unless every directory from / down to path is searchable by user."""
    pw = pwd.getpwnam(user)
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        st = current.stat()
        if st.st_uid == pw.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == pw.pw_gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise PostfixError(
                f"{current} is not searchable by user {user!r}; Postfix daemons could not reach "
                f"{path}. Use a base directory under /tmp with mode 0755 (pytest's tmp_path is "
                "mode 0700)."
            )


class PostfixInstance:
    """A private Postfix (config, queue, data and mail under one base directory) for tests.

    base_dir: created if needed and must be searchable by the postfix user; None makes (and later
    removes) a fresh directory under /tmp. milter: Postfix smtpd_milters syntax, e.g.
    ``inet:127.0.0.1:9000`` or ``unix:/path``. catchall: a mailbox that receives every unknown
    local part (virtual_mailbox_maps ``@domain``), so that Postfix accepts any recipient in its
    domains and leaves the verdict to the milter. main_cf overrides any generated setting.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        smtp_port: int | None = None,
        milter: str | None = None,
        domains: Sequence[str] | str = ("example.test",),
        users: Sequence[str] = DEFAULT_USERS,
        main_cf: Mapping[str, str] | None = None,
        mynetworks: str = "192.0.2.1/32",
        hostname: str = "mx.example.test",
        catchall: str | None = None,
        start_timeout: float = 30.0,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the instance; nothing is written or started until start().

        sasl_users (login -> password, logins as user@realm): adds a submission listener on
        its own loopback port (``submission_port``) with SMTP AUTH from a Cyrus sasldb, and
        ``{daemon_name}`` = submission for the milter."""
        self._own_base = base_dir is None
        self._base_arg = base_dir
        self._fixed_port = smtp_port is not None
        self.smtp_port = smtp_port or free_tcp_port()
        self.milter = milter
        self.domains: tuple[str, ...] = (domains,) if isinstance(domains, str) else tuple(domains)
        self.users: tuple[str, ...] = tuple(users)
        self.extra_main_cf: dict[str, str] = dict(main_cf or {})
        self.mynetworks = mynetworks
        self.hostname = hostname
        self.catchall = catchall
        self.start_timeout = start_timeout
        self.sasl_users: dict[str, str] = dict(sasl_users or {})
        self.submission_port = free_tcp_port() if self.sasl_users else 0
        self.base: Path = Path(base_dir) if base_dir is not None else Path()
        self._master_pid: int | None = None
        self._started = False

    # -- paths ----------------------------------------------------------------------------

    @property
    def conf_dir(self) -> Path:
        """Return the config_directory (main.cf, master.cf)."""
        return self.base / "conf"

    @property
    def queue_dir(self) -> Path:
        """Return the queue_directory."""
        return self.base / "queue"

    @property
    def data_dir(self) -> Path:
        """Return the data_directory."""
        return self.base / "data"

    @property
    def mail_dir(self) -> Path:
        """Return the directory of the mbox files (virtual_mailbox_base)."""
        return self.base / "mail"

    @property
    def maillog(self) -> Path:
        """Return the path of Postfix's log file."""
        return self.base / "maillog"

    @property
    def address(self) -> tuple[str, int]:
        """Return (host, port) of the SMTP listener."""
        return ("127.0.0.1", self.smtp_port)

    def mailbox_path(self, user: str) -> Path:
        """Return the mbox file of a mailbox user."""
        return self.mail_dir / user

    # -- configuration --------------------------------------------------------------------

    def main_cf_settings(self) -> dict[str, str]:
        """Return the main.cf settings this instance is started with."""
        nobody = pwd.getpwnam("nobody")
        settings: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.domains[0] if self.domains else "example.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": self.mynetworks,
            # No DNS, ever, and no delivery beyond our own mailboxes.
            "disable_dns_lookups": "yes",
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "default_transport": "smtp",
            "relay_transport": "relay",
            "relayhost": "",
            "fallback_transport": "",
            # Local delivery into mbox files, one per user.
            "virtual_mailbox_domains": ", ".join(self.domains),
            "virtual_mailbox_base": str(self.mail_dir),
            "virtual_mailbox_maps": f"texthash:{self.conf_dir / 'vmailbox'}",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "virtual_minimum_uid": "100",
            "virtual_transport": "virtual",
            # Milter.
            "smtpd_milters": self.milter or "",
            "non_smtpd_milters": "",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "milter_connect_timeout": "10s",
            "milter_command_timeout": "20s",
            "milter_content_timeout": "30s",
            # Logging into a file the tests can read.
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.base),
            # Quiet and fast.
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "in_flow_delay": "0s",
            "smtpd_error_sleep_time": "0s",
            "delay_warning_time": "0h",
            "queue_run_delay": "5s",
            "minimal_backoff_time": "5s",
            "maximal_backoff_time": "30s",
            "readme_directory": "no",
            "html_directory": "no",
        }
        if self.sasl_users:
            settings["cyrus_sasl_config_path"] = str(self.conf_dir / "sasl")
        settings.update(self.extra_main_cf)
        return settings

    @property
    def submission_address(self) -> tuple[str, int]:
        """Return (host, port) of the submission listener (with sasl_users only)."""
        return ("127.0.0.1", self.submission_port)

    def _submission_service(self) -> list[str]:
        """The master.cf lines of the submission listener: AUTH from sasldb, no TLS (loopback
        tests), and Postfix itself letting an unauthenticated MAIL through, so that the test
        sees mxguard refuse it (as it must when Postfix is configured wrong)."""
        if not self.sasl_users:
            return []
        options = {
            "syslog_name": "postfix/submission",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_tls_security_level": "none",
            "smtpd_recipient_restrictions": "permit_sasl_authenticated,reject",
            "milter_macro_daemon_name": "submission",
        }
        row = (f"127.0.0.1:{self.submission_port}", "inet", "n", "-", "n", "-", "-", "smtpd")
        lines = ["{:<24} {:<10} {:<5} {:<5} {:<5} {:<6} {:<5} {}".format(*row)]
        return lines + [f"  -o {name}={value}" for name, value in options.items()]

    def _write_sasl(self) -> None:
        """smtpd.conf and a sasldb with the users, readable by the postfix user only."""
        sasl_dir = self.conf_dir / "sasl"
        sasl_dir.mkdir(exist_ok=True)
        sasldb = sasl_dir / "sasldb2"
        (sasl_dir / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
            f"sasldb_path: {sasldb}\n"
        )
        for login, password in self.sasl_users.items():
            user, _, realm = login.partition("@")
            command = ["saslpasswd2", "-p", "-c", "-f", str(sasldb), "-u", realm, user]
            subprocess.run(command, input=password, text=True, check=True, capture_output=True)
        postfix = pwd.getpwnam("postfix")
        for path in (sasl_dir, sasldb):
            os.chown(path, postfix.pw_uid, postfix.pw_gid)
        sasl_dir.chmod(0o750)
        sasldb.chmod(0o640)

    def _master_cf(self) -> str:
        """Return master.cf: every service unchrooted, smtpd on 127.0.0.1:PORT only."""
        rows = [
            (f"127.0.0.1:{self.smtp_port}", "inet", "n", "-", "n", "-", "-", "smtpd"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
            # Outbound delivery is impossible by construction: the services that the smtp and
            # relay transports name run the error(8) agent, which bounces instead of connecting.
            # The transport names stay, so milter macros ({mail_mailer} = smtp, {mail_host} =
            # the sender's domain) look as they do on a production MX.
            ("smtp", "unix", "-", "-", "n", "-", "-", "error"),
            ("relay", "unix", "-", "-", "n", "-", "-", "error"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("local", "unix", "-", "n", "n", "-", "-", "local"),
            ("virtual", "unix", "-", "n", "n", "-", "-", "virtual"),
            ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        lines = ["# master.cf of a private test instance, written by tests/support/postfix.py"]
        lines += ["{:<24} {:<10} {:<5} {:<5} {:<5} {:<6} {:<5} {}".format(*row) for row in rows]
        lines += self._submission_service()
        return "\n".join(lines) + "\n"

    def _vmailbox(self) -> str:
        """Return the virtual_mailbox_maps table: every user in every domain."""
        lines = [f"{user}@{domain}\t{user}" for domain in self.domains for user in self.users]
        if self.catchall:
            lines += [f"@{domain}\t{self.catchall}" for domain in self.domains]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        """Create the directories and write main.cf, master.cf and the mailbox table."""
        if self._own_base:
            self.base = Path(tempfile.mkdtemp(prefix="mxguard-postfix-", dir="/tmp"))
        else:
            assert self._base_arg is not None
            self.base = Path(self._base_arg)
            self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        _check_traversable(self.base)
        for directory in (self.conf_dir, self.queue_dir):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
        # The virtual delivery agent runs as nobody and creates the mbox (and .lock) files.
        nobody = pwd.getpwnam("nobody")
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        self.mail_dir.chmod(0o755)
        main_cf = "".join(f"{k} = {v}\n" for k, v in self.main_cf_settings().items())
        (self.conf_dir / "main.cf").write_text(
            "# main.cf of a private test instance, written by tests/support/postfix.py\n" + main_cf
        )
        (self.conf_dir / "master.cf").write_text(self._master_cf())
        (self.conf_dir / "vmailbox").write_text(self._vmailbox())
        if self.sasl_users:
            self._write_sasl()

    # -- life cycle -----------------------------------------------------------------------

    def _postfix(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the postfix command against this instance's configuration."""
        return subprocess.run(
            [POSTFIX, "-c", str(self.conf_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(),
            check=False,
        )

    def _env(self) -> dict[str, str]:
        """Return the environment for Postfix commands (a clean PATH, our config)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        env["MAIL_CONFIG"] = str(self.conf_dir)
        return env

    def start(self) -> PostfixInstance:
        """Write the configuration, start Postfix and wait for its 220 greeting."""
        if self._started:
            return self
        reason = postfix_available()
        if reason:
            raise PostfixError(reason)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                return self._start_once()
            except PostfixError as exc:
                # Another process took the free port we picked: pick again.
                if "Address already in use" not in str(exc) or attempt + 1 == attempts:
                    raise
                self.smtp_port = free_tcp_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> PostfixInstance:
        """Write the configuration and start; on failure stop and raise with the log."""
        self._write_config()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._started = True
        try:
            result = self._postfix("start", timeout=60)
            if result.returncode != 0:
                raise PostfixError(
                    f"postfix start failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                )
            self._wait_until_ready()
        except BaseException as exc:
            log = self.log_text()
            self.stop()
            if isinstance(exc, PostfixError):
                raise PostfixError(f"{exc}\n--- maillog ---\n{log}") from None
            raise
        return self

    def _read_master_pid(self) -> int | None:
        """Return the pid in queue/pid/master.pid, or None."""
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _wait_until_ready(self) -> None:
        """Wait until the master runs and the SMTP listener answers with 220."""
        deadline = time.monotonic() + self.start_timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            pid = self._master_pid or self._read_master_pid()
            if pid is not None:
                self._master_pid = pid
                if not _pid_alive(pid):
                    raise PostfixError(f"the Postfix master (pid {pid}) exited during start")
                try:
                    with socket.create_connection(self.address, timeout=2) as sock:
                        greeting = sock.makefile("rb").readline()
                        sock.sendall(b"QUIT\r\n")
                    if greeting.startswith(b"220"):
                        return
                    last_error = f"greeting {greeting!r}"
                except OSError as exc:
                    last_error = str(exc)
            time.sleep(0.05)
        raise PostfixError(
            f"Postfix did not answer 220 on 127.0.0.1:{self.smtp_port} within "
            f"{self.start_timeout}s (last: {last_error})"
        )

    def running(self) -> bool:
        """Return whether the master process of this instance is alive."""
        pid = self._master_pid or self._read_master_pid()
        return pid is not None and _pid_alive(pid)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Postfix (postfix stop, else abort, else SIGKILL) and remove an own base dir."""
        if not self._started:
            return
        try:
            masters = self._masters()
            children = [child for pid in masters for child in _children_of(pid)]
            # Even without a known master (start interrupted early), postfix stop is harmless.
            try:
                self._postfix("stop", timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._postfix("abort", timeout=10)
            for pid in masters + self._masters():
                if not _wait_dead(pid, 5.0):
                    _kill(pid)
                    _wait_dead(pid, 5.0)
            # Daemons exit when the master's status pipe closes; make sure they did.
            for child in children:
                if not _wait_dead(child, 2.0):
                    _kill(child)
        finally:
            self._started = False
            self._master_pid = None
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            if self._own_base:
                shutil.rmtree(self.base, ignore_errors=True)

    def _masters(self) -> list[int]:
        """Return the live master processes of this instance (pid file, else a /proc scan)."""
        found = {pid for pid in (self._master_pid, self._read_master_pid()) if pid}
        marker = f"MAIL_CONFIG={self.conf_dir}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/comm", "rb") as fh:
                    if fh.read().strip() != b"master":
                        continue
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if marker in fh.read().split(b"\0"):
                        found.add(int(entry))
            except OSError:
                continue
        return sorted(pid for pid in found if _pid_alive(pid))

    def __enter__(self) -> PostfixInstance:
        """Start the instance."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the instance, whatever happened."""
        self.stop()

    # -- inspection -----------------------------------------------------------------------

    def log_text(self, since: int = 0) -> str:
        """Return Postfix's log (from byte offset since), or '' when there is none yet."""
        return read_from(self.maillog, since)

    def log_size(self) -> int:
        """Return the current size of the log, to pass to log_text(since=...) later."""
        return size_of(self.maillog)

    def mailbox(self, user: str) -> list[EmailMessage]:
        """Return the messages in a user's mbox file, oldest first; [] if there is none."""
        path = self.mailbox_path(user)
        if not path.exists():
            return []
        box = mailbox.mbox(str(path), create=False)
        try:
            # The virtual agent holds fcntl and dot locks while it appends: wait our turn.
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    box.lock()
                    break
                except mailbox.ExternalClashError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.02)
            try:
                raw = [box.get_bytes(key) for key in box.iterkeys()]
            finally:
                box.unlock()
        finally:
            box.close()
        return [
            email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
            for data in raw
        ]

    def wait_for_delivery(self, user: str, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        """Wait until user's mailbox holds at least count messages; return them."""
        deadline = time.monotonic() + timeout
        path = self.mailbox_path(user)
        last_size = -1
        messages: list[EmailMessage] = []
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size != last_size:
                messages = self.mailbox(user)
                last_size = size
                if len(messages) >= count:
                    return messages
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{user}: {len(messages)} message(s) delivered after {timeout}s, expected "
                    f"{count}; queue: {self.queue_ids()}\n--- maillog ---\n{self.log_text()}"
                )
            time.sleep(0.05)

    def queue_ids(self) -> list[str]:
        """Return the queue ids of every message in the queue (postqueue -j)."""
        result = subprocess.run(
            [POSTQUEUE, "-c", str(self.conf_dir), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            env=self._env(),
            check=False,
        )
        if result.returncode != 0:
            raise PostfixError(f"postqueue -j failed: {result.stderr.strip()}")
        return [json.loads(line)["queue_id"] for line in result.stdout.splitlines() if line]

    def wait_for_empty_queue(self, timeout: float = 15.0) -> None:
        """Wait until no message is left in the queue."""
        deadline = time.monotonic() + timeout
        while True:
            ids = self.queue_ids()
            if not ids:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"queue not empty after {timeout}s: {ids}\n--- maillog ---\n{self.log_text()}"
                )
            time.sleep(0.1)

    def flush(self) -> None:
        """Ask Postfix to attempt delivery of every queued message now (postqueue -f)."""
        result = subprocess.run(
            [POSTQUEUE, "-c", str(self.conf_dir), "-f"],
            capture_output=True,
            text=True,
            timeout=30,
            env=self._env(),
            check=False,
        )
        if result.returncode != 0:
            raise PostfixError(f"postqueue -f failed: {result.stderr.strip()}")

    def smtp(self, timeout: float = 30.0) -> smtplib.SMTP:
        """Return an smtplib client connected to this instance (caller closes it)."""
        return smtplib.SMTP(*self.address, local_hostname="client.example", timeout=timeout)


def _pid_alive(pid: int) -> bool:
    """Return whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _children_of(pid: int) -> list[int]:
    """Return the pids whose parent is pid."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _wait_dead(pid: int, timeout: float) -> bool:
    """Wait until pid is gone; return whether it is."""
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _kill(pid: int) -> None:
    """Send SIGKILL to pid, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@atexit.register
def _stop_all() -> None:
    """Stop every instance still running when the interpreter exits."""
    with _RUNNING_LOCK:
        instances = list(_RUNNING)
    for instance in instances:
        with contextlib.suppress(Exception):
            instance.stop(timeout=10)
