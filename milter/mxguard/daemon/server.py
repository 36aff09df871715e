"""Start libmilter: register the callbacks, open the socket, drop privileges, serve, reload."""

from __future__ import annotations

import ctypes
import dataclasses
import grp
import logging
import os
import pwd
import queue
import signal
import socket
import sys
import threading
from typing import Any, NoReturn

import Milter

import milter
from mxguard.core import config, metrics
from mxguard.core.errors import ConfigError
from mxguard.core.options import specs
from mxguard.daemon import logsetup, preload, selftest, sockets
from mxguard.daemon.adapter import MxguardMilter
from mxguard.daemon.runtime import RuntimeHolder, build_runtime
from mxguard.daemon.sockets import unix_path
from mxguard.daemon.statedir import give_to, with_usable_state
from mxguard.tools import postfixview

log = logging.getLogger("mxguard")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
LIBMILTER_ENDED = 0  # put in place of a signal number when libmilter's loop returns

# Header edits, the envelope edits of BATV (sender rewriting, tagged recipients), and the
# quarantine that [dmarc] quarantine_action = quarantine asks for.
ACTIONS = (
    milter.ADDHDRS
    | milter.CHGHDRS
    | milter.CHGFROM
    | milter.ADDRCPT
    | milter.DELRCPT
    | milter.QUARANTINE
)


def _register_callbacks(holder: RuntimeHolder) -> None:
    """Point libmilter's callbacks at a fresh MxguardMilter per connection."""
    Milter.factory = lambda: MxguardMilter(holder)
    milter.set_flags(ACTIONS)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, name: ctx.getpriv().hello(name))
    milter.set_envfrom_callback(lambda ctx, *args: ctx.getpriv().envfrom_bytes(*args))
    milter.set_envrcpt_callback(lambda ctx, *args: ctx.getpriv().envrcpt_bytes(*args))
    milter.set_header_callback(lambda ctx, name, value: ctx.getpriv().header_bytes(name, value))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        "mxguard",
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


MAX_PACKET = 1 << 20


def _raise_packet_limit() -> None:
    """Let libmilter accept commands up to 1 MB instead of 64 KB.

    Postfix passes a header field of up to header_size_limit (100 KB by default) in one
    command; at libmilter's default limit such a field ends the milter session with an error,
    and the MTA falls back to milter_default_action instead of getting our verdict. pymilter
    does not wrap smfi_setmaxdatasize, but its extension module exports it.
    """
    try:
        library = ctypes.CDLL(milter.__file__)
        set_size = library.smfi_setmaxdatasize
    except (OSError, AttributeError):
        log.warning("libmilter has no smfi_setmaxdatasize: commands over 64 KB are refused")
        return
    set_size.restype = ctypes.c_size_t
    set_size.argtypes = [ctypes.c_size_t]
    set_size(MAX_PACKET)


def _disable_nagle(socket_spec: str) -> None:
    """Set TCP_NODELAY on libmilter's listening TCP socket; accepted connections inherit it.

    libmilter writes each header edit as its own small packet; with Nagle's algorithm the
    second one waits for the MTA's delayed ACK (up to 40 ms per message). pymilter has no call
    for this, so the listening socket is found among our file descriptors by its address.
    """
    kind, _, rest = socket_spec.partition(":")
    if kind not in ("inet", "inet6"):
        return
    port = int(rest.partition("@")[0])
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=int(name))
        except OSError:
            continue  # not a socket
        try:
            if (
                candidate.type == socket.SOCK_STREAM
                and candidate.family
                in (
                    socket.AF_INET,
                    socket.AF_INET6,
                )
                and candidate.getsockname()[1] == port
            ):
                candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
        except OSError:
            continue
        finally:
            candidate.detach()  # the descriptor stays libmilter's
    log.warning("could not set TCP_NODELAY on %s: expect ~40 ms per message", socket_spec)


def account(user: str) -> tuple[int, int] | None:
    """(uid, gid) of ``[milter] user`` when running as root, else None; ConfigError if the
    user does not exist."""
    if not user:
        return None
    if os.geteuid() != 0:
        if pwd.getpwuid(os.geteuid()).pw_name != user:  # systemd's User= did it already
            log.warning("[milter] user = %s ignored: not running as root", user)
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"[milter] user: expected an existing user, got {user!r}") from None
    return entry.pw_uid, entry.pw_gid


def drop_privileges(user: str, owner: tuple[int, int] | None) -> None:
    """Become ``user``, with its primary and supplementary groups (setgroups, setgid, setuid)."""
    if owner is None:
        return
    uid, gid = owner
    groups = os.getgrouplist(user, gid)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as %s (groups %s)", user, ",".join(grp.getgrgid(g).gr_name for g in groups))


def notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state, when it started us; else nothing."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as channel:
            channel.sendto(state.encode(), address)
    except OSError as error:
        log.warning("systemd notification %r failed: %s", state, error)


def _until_stopped(requests: queue.SimpleQueue[int], path: str, holder: RuntimeHolder) -> int:
    """Serve signals in the main thread until a stop: SIGUSR1 reloads; SIGTERM, SIGINT or
    SIGHUP (or libmilter ending by itself) stops. Nothing a reload meets ends this loop."""
    while True:
        signum = requests.get()
        if signum in STOP_SIGNALS:
            log.info("%s: stopping", signal.Signals(signum).name)
            return 0
        if signum == LIBMILTER_ENDED:
            log.error("libmilter stopped serving")
            return 1
        notify("RELOADING=1")
        try:
            status = reload(path, holder)
        except Exception:
            metrics.RELOADS.labels("refused").inc()
            log.exception("reload failed, keeping the running configuration")
            status = "reload failed: see the log"
        notify(f"READY=1\nSTATUS={status}")


def reload(path: str, holder: RuntimeHolder) -> str:
    """Read ``path`` again and make it current (connections keep the generation they started
    with); refuse it, one log line per problem, when it is invalid. Returns systemd's STATUS."""
    running = holder.current
    try:
        settings = keep_restart_options(with_usable_state(config.load(path)), running.settings)
        runtime = build_runtime(settings, running)
        report = selftest.check(settings, runtime.pipeline)
        if report.problems:
            holder.discard(runtime)
            raise ConfigError("\n".join(report.problems))
    except ConfigError as error:
        metrics.RELOADS.labels("refused").inc()
        for problem in str(error).splitlines():
            log.error("reload refused, keeping the running configuration: %s", problem)
        return "reload refused: the configuration is invalid"
    logsetup.configure(settings.log.level, settings.log.target, settings.log.facility)
    holder.replace(runtime)
    metrics.RELOADS.labels("ok").inc()
    log.info("configuration reloaded from %s", path)
    return "configuration reloaded"


def keep_restart_options(new: config.Settings, running: config.Settings) -> config.Settings:
    """``new`` with the running value of every option that only a restart can change (the
    socket is open, privileges are dropped), each change logged as needing a restart."""
    replaced: dict[str, Any] = {}
    for section, (cls, _doc) in config.sections().items():
        if section in new.checks:
            continue  # no check option needs a restart
        fresh, current = getattr(new, section), getattr(running, section)
        kept = {}
        for spec in specs(cls):
            if spec.restart and getattr(fresh, spec.name) != getattr(current, spec.name):
                log.warning(
                    "[%s] %s changed to %s: needs a restart; keeping %s",
                    section,
                    spec.name,
                    spec.kind.format(getattr(fresh, spec.name)) or "(empty)",
                    spec.kind.format(getattr(current, spec.name)) or "(empty)",
                )
                kept[spec.name] = getattr(current, spec.name)
        if kept:
            replaced[section] = dataclasses.replace(fresh, **kept)
    return dataclasses.replace(new, **replaced) if replaced else new


def _run_libmilter(requests: queue.SimpleQueue[int]) -> None:
    """libmilter's loop, in a thread of its own (see serve); tell the main thread if it ends."""
    try:
        milter.main()
    except Exception:
        log.exception("libmilter failed")
    requests.put(LIBMILTER_ENDED)


def _drain(holder: RuntimeHolder, timeout: float) -> None:
    """Let the transactions in flight finish, for up to ``timeout`` seconds."""
    running = holder.in_flight.count
    if running:
        log.info("stopping: waiting up to %gs for %d transaction(s) in flight", timeout, running)
    left = holder.in_flight.drain(timeout)
    if left:
        log.warning("stopping with %d transaction(s) unfinished after %gs", left, timeout)


def _postfix_line(spec: str) -> str:
    """What main.cf must say for this socket, as Postfix (chrooted or not) reaches it."""
    queue = postfixview.queue_directory()
    value = postfixview.smtpd_milters_value(spec, queue)
    if unix_path(spec) is not None and not value.startswith("unix:/"):
        return f"for Postfix: smtpd_milters = {value}"
    return (
        f"for Postfix: smtpd_milters = {value} (an unchrooted smtpd only: Debian's chrooted "
        f"smtpd reaches a socket under {queue} only; see README, Setting up Postfix)"
    )


def serve(settings: config.Settings) -> int:
    """Run the milter until SIGTERM (or SIGINT, SIGHUP), then let the transactions in flight
    finish, for up to [milter] stop_timeout, and exit; return early only when startup fails."""
    holder = RuntimeHolder(build_runtime(settings))
    # Blocked before any thread starts, so that every thread inherits the mask: only the
    # main thread takes these signals, once it unblocks them after libmilter has started.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGUSR1})
    _register_callbacks(holder)
    _raise_packet_limit()
    spec = sockets.usable_spec(settings.milter.socket)
    try:
        owner = account(settings.milter.user)
        created = sockets.prepare(spec)
    except ConfigError as error:
        log.error("%s: %s", settings.path, error)
        return 2
    milter.setconn(spec)
    milter.settimeout(int(settings.milter.timeout))
    try:
        milter.opensocket(False)  # a stale file is gone already; a live one stopped us above
    except milter.error:
        log.error("cannot open the milter socket %s (in use, or no permission?)", spec)
        return 1
    sockets.finish(spec, owner, created)
    opened = sockets.identity(spec)
    give_to(settings.state.url, owner)
    _disable_nagle(spec)
    # Everything that could be imported or read after the drop is loaded now, and the
    # self-test's first run, still privileged, takes every path a transaction takes.
    preload.preload()
    failure = selftest.run_transactions(settings, holder.current.pipeline)
    if failure:
        log.error("self-test failed before the privilege drop: %s", failure)
        sockets.withdraw(spec, opened)
        return 2
    drop_privileges(settings.milter.user, owner)
    # The checks' data files were read as root; unreadable_files proves the user can read
    # them again at a reload, so the prepared pipeline serves here without a second read.
    report = selftest.check(settings, holder.current.pipeline, holder.current.store)
    for warning in report.warnings:
        log.warning("%s", warning)
    if report.problems:
        for problem in report.problems:
            log.error("%s", problem)
        log.error("not starting: mail would fail as user %s (see above)", settings.milter.user)
        sockets.withdraw(spec, opened)
        return 2
    # Metrics first: "listening on" is the line that says the milter is up (tests and
    # admins wait for it), so what it says about metrics must already be in the log.
    metrics.start(settings.metrics.port)
    log.info("listening on %s", spec)
    log.info("%s", _postfix_line(spec))
    # libmilter runs in a thread of its own, with these signals blocked like every other
    # thread, and the main thread takes them: the kernel gives a process-wide signal to the
    # main thread first when it does not block it, so libmilter's own signal thread never
    # sees a SIGTERM. libmilter's own stop would end its worker pool at once, dropping the
    # transactions in flight; here they finish first.
    requests: queue.SimpleQueue[int] = queue.SimpleQueue()
    threading.Thread(
        target=_run_libmilter, args=(requests,), name="mxguard-libmilter", daemon=True
    ).start()
    for signum in (*STOP_SIGNALS, signal.SIGUSR1):
        signal.signal(signum, lambda number, _frame: requests.put(number))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS | {signal.SIGUSR1})
    notify(f"READY=1\nSTATUS=listening on {spec}")
    status = _until_stopped(requests, settings.path, holder)
    notify("STOPPING=1")
    sockets.withdraw(spec, opened)
    _drain(holder, settings.milter.stop_timeout)
    holder.close()
    log.info("stopped")
    _exit(status)


def _exit(status: int) -> NoReturn:
    """Exit now, without the interpreter's shutdown: libmilter's threads still run, and one
    that calls into Python while the interpreter finalizes would hang it."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
