"""
SMTP server throughput: mtaguard against Postfix, aiosmtpd and twisted.mail.

Postfix's C{smtp-source} (a C client, so the client is not the bottleneck)
sends 20 concurrent sessions of 4 KB and 100 KB messages, reusing each
connection (C{-d}), to every server in turn, interleaved over several
rounds in one run.  For each run it records messages per second and the
server's CPU time per message (user+sys from /proc, children included for
Postfix's process family).  Then, on the Python servers, the RSS of 1,000
idle connected sessions, and the throughput of a clean client while 2,000
idle connections are open.

Servers, all on 127.0.0.1:
  - mtaguard-queue: C{twistd -n mtaguard -c DIR}, the durable queue (fsync
    of file and directory before 250), default logging to a file, relay
    recipients from mynetworks, so messages stay queued (no delivery).
  - mtaguard-memory: mtaguard's SMTPServerFactory.forDelivery with a
    discarding twisted.mail IMessageDelivery.
  - postfix: a private instance (its own config dir, queue and master) with
    smtpd -> cleanup -> queue file fsync; recipients are put on hold by
    C{check_recipient_access static:HOLD}, so like mtaguard it queues
    durably and delivers nothing.  Needs root (it is started with
    C{postfix -c DIR start}).
  - aiosmtpd: aiosmtpd.smtp.SMTP with a handler that discards.
  - twisted.mail: twisted.mail.smtp.ESMTP with a discarding
    IMessageDelivery.

Usage:
  .venv/bin/python bench/smtpd_throughput.py [--rounds N] [--profile]
  [--idle N] [--skip-postfix]

(aiosmtpd and py-spy are benchmark-only: pip install aiosmtpd py-spy into
the venv.)
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
TICKS = os.sysconf("SC_CLK_TCK")
SESSIONS = 20
#: (label, message size, messages per run)
SIZES = [("4 KB", 4096, 4000), ("100 KB", 102400, 1000)]


# --- servers run as subcommands of this script -------------------------------


def serveAiosmtpd(port: int) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Ok: discarded"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Discard(), hostname="aiosmtpd.test.example"),
            host=HOST, port=port, backlog=1024,
        )
        print("listening", flush=True)
        await server.serve_forever()

    asyncio.run(main())


def _discardingDelivery() -> Any:
    from twisted.internet.defer import succeed
    from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
    from zope.interface import implementer

    @implementer(IMessageSMTP)
    class Discard:
        def lineReceived(self, line: bytes) -> None:
            pass

        def eomReceived(self) -> Any:
            return succeed(None)

        def connectionLost(self) -> None:
            pass

    @implementer(IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
            return b"Received: from bench"

        def validateFrom(self, helo: Any, origin: Any) -> Any:
            return origin

        def validateTo(self, user: Any) -> Any:
            return Discard

    return Delivery()


def serveTwistedMail(port: int) -> None:
    from twisted.internet import reactor
    from twisted.mail import smtp

    delivery = _discardingDelivery()

    class Factory(smtp.SMTPFactory):
        protocol = smtp.ESMTP

        def buildProtocol(self, addr: Any) -> Any:
            p = super().buildProtocol(addr)
            p.delivery = delivery
            return p

    reactor.listenTCP(port, Factory(), backlog=1024, interface=HOST)  # type: ignore[attr-defined]
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def serveMtaguardMemory(port: int) -> None:
    sys.path.insert(0, ROOT)
    from twisted.internet import reactor

    from mtaguard.smtpd import SMTPServerFactory

    factory = SMTPServerFactory.forDelivery(_discardingDelivery(), clock=reactor)
    reactor.listenTCP(port, factory, backlog=1024, interface=HOST)  # type: ignore[attr-defined]
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


SUBCOMMANDS: dict[str, Callable[[int], None]] = {
    "serve-aiosmtpd": serveAiosmtpd,
    "serve-twisted-mail": serveTwistedMail,
    "serve-mtaguard-memory": serveMtaguardMemory,
}


# --- measurement ---------------------------------------------------------------


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def waitListening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.settimeout(5)
                s.recv(512)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def statOf(pid: int) -> tuple[int, int, int]:
    """
    (ppid, own user+sys ticks, reaped children's user+sys ticks)
    """
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of the stat line).
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def rssKB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    name = ""
    port = 0
    pid = 0
    family = False  # count descendants (Postfix)

    def cpuSeconds(self) -> float:
        if not self.family:
            _, own, _ = statOf(self.pid)
            return own / TICKS
        parents: dict[int, int] = {}
        stats: dict[int, tuple[int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid, own, children = statOf(int(entry))
                except (OSError, IndexError):
                    continue
                parents[int(entry)] = ppid
                stats[int(entry)] = (own, children)
        total = 0
        for pid, (own, children) in stats.items():
            ancestor = pid
            while ancestor not in (0, 1) and ancestor != self.pid:
                ancestor = parents.get(ancestor, 0)
            if ancestor == self.pid:
                # The master's reaped children are in its cutime/cstime.
                total += own + (children if pid == self.pid else 0)
        return total / TICKS

    def stop(self) -> None:
        raise NotImplementedError


class ChildServer(Server):
    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None,
                 log: str | None = None) -> None:
        self.name = name
        self.port = port
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=ROOT, start_new_session=True,
        )
        self.pid = self.process.pid
        waitListening(port)

    def stop(self) -> None:
        stopProcess(self.process)


def stopProcess(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """
    SIGTERM a server child, then SIGKILL it if it has not exited after
    C{timeout} seconds.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def startMtaguardQueue(work: str) -> ChildServer:
    directory = os.path.join(work, "mtaguard")
    for sub in ("queue", "data", "xdg"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    port = freePort()
    with open(os.path.join(directory, "main.cf"), "w") as handle:
        handle.write(
            "compatibility_level = 3.6\n"
            "myhostname = mx.test.example\n"
            "mydomain = test.example\n"
            "mynetworks = 127.0.0.0/8\n"
            f"queue_directory = {directory}/queue\n"
            f"data_directory = {directory}/data\n"
        )
    with open(os.path.join(directory, "master.cf"), "w") as handle:
        # Process limit 0 (none): the idle-connection test opens 2,000.
        handle.write(f"{HOST}:{port} inet n - n - 0 smtpd\n")
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_DATA_HOME=os.path.join(directory, "xdg"))
    return ChildServer(
        "mtaguard-queue",
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "mtaguard", "-c", directory],
        port, env=env, log=os.path.join(directory, "mtaguard.log"),
    )


def startSubcommand(name: str, command: str) -> ChildServer:
    port = freePort()
    return ChildServer(name, [sys.executable, os.path.abspath(__file__), command, str(port)], port)


#: The internal services every private Postfix instance here needs.
POSTFIX_INTERNAL_SERVICES = (
    "cleanup unix n - n - 0 cleanup\n"
    "qmgr unix n - n 300 1 qmgr\n"
    "rewrite unix - - n - - trivial-rewrite\n"
    "bounce unix - - n - 0 bounce\n"
    "defer unix - - n - 0 bounce\n"
    "trace unix - - n - 0 bounce\n"
    "proxymap unix - - n - - proxymap\n"
    "proxywrite unix - - n - 1 proxymap\n"
    "anvil unix - - n - 1 anvil\n"
    "scache unix - - n - 1 scache\n"
    "postlog unix-dgram n - n - 1 postlogd\n"
)


def privatePostfix(work: str, name: str, mainCf: str, masterCf: str) -> tuple[str, str, int]:
    """
    Set up and start a private Postfix instance under C{work}/C{name}: its
    own configuration, spool and data directories, listening on loopback
    only and logging to C{maillog} there.

    @param mainCf: main.cf lines beyond those (host names, restrictions).
    @param masterCf: master.cf lines beyond Postfix's internal services.
    @return: the instance's directory, its configuration directory and its
        master's process ID.
    """
    base = os.path.join(work, name)
    config = os.path.join(base, "etc")
    for sub in ("etc", "spool", "data"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    # The daemons run as the postfix user: let it reach its files.
    os.chmod(work, 0o755)
    os.chmod(base, 0o755)
    shutil.chown(os.path.join(base, "data"), "postfix")
    with open(os.path.join(config, "main.cf"), "w") as handle:
        handle.write(
            mainCf
            + f"queue_directory = {base}/spool\n"
            f"data_directory = {base}/data\n"
            "inet_interfaces = 127.0.0.1\n"
            "inet_protocols = ipv4\n"
            f"maillog_file = {base}/maillog\n"
            f"maillog_file_prefixes = {base}\n"
            "alias_maps =\nalias_database =\n"
        )
    with open(os.path.join(config, "master.cf"), "w") as handle:
        handle.write(masterCf + POSTFIX_INTERNAL_SERVICES)
    # The master and its children inherit this script's limits.
    return base, config, startPostfix(config, base)


def startPostfix(config: str, base: str) -> int:
    """
    Start a private Postfix instance (C{postfix -c CONFIG start}, under
    C{script} for the terminal it wants) whose spool is under C{base}.

    @return: its master's process ID.
    @raise RuntimeError: if it does not start within 20 seconds.
    """
    result = subprocess.run(
        ["script", "-qc", f"postfix -c {config} start", "/dev/null"],
        capture_output=True, timeout=60,
    )
    pidFile = os.path.join(base, "spool", "pid", "master.pid")
    deadline = time.monotonic() + 20
    while not os.path.exists(pidFile) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not os.path.exists(pidFile):
        raise RuntimeError(f"postfix did not start: {result.stdout!r}")
    with open(pidFile) as handle:
        return int(handle.read().strip())


def stopPostfix(config: str) -> None:
    """
    Stop a private Postfix instance started by L{startPostfix}.
    """
    subprocess.run(
        ["script", "-qc", f"postfix -c {config} stop", "/dev/null"],
        capture_output=True, timeout=60,
    )


class PostfixServer(Server):
    """
    A private Postfix instance under C{work}/postfix.
    """

    def __init__(self, work: str) -> None:
        self.name = "postfix"
        self.family = True
        self.port = freePort()
        base, self.config, self.pid = privatePostfix(
            work,
            "postfix",
            "compatibility_level = 3.6\n"
            "myhostname = pf.test.example\n"
            "mydomain = test.example\n"
            "mydestination =\n"
            "mynetworks = 127.0.0.0/8\n"
            "smtpd_recipient_restrictions = check_recipient_access static:HOLD,"
            " permit_mynetworks, reject_unauth_destination\n",
            f"{HOST}:{self.port} inet n - n - - smtpd\n",
        )
        self.hold = os.path.join(base, "spool", "hold")
        waitListening(self.port)

    def stop(self) -> None:
        stopPostfix(self.config)


def smtpSource(port: int, size: int, messages: int, sessions: int = SESSIONS) -> float:
    """
    Run smtp-source; return the wall time.
    """
    started = time.monotonic()
    result = subprocess.run(
        [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
         "-f", "a@example.org", "-t", "bob@remote.example", f"{HOST}:{port}"],
        capture_output=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {result.stdout!r} {result.stderr!r}")
    return elapsed


def measure(server: Server, size: int, messages: int) -> tuple[float, float]:
    """
    (msgs/s, server CPU µs per message) of one smtp-source run.
    """
    before = server.cpuSeconds()
    elapsed = smtpSource(server.port, size, messages)
    # Let the server finish what it does after the last reply (logging).
    time.sleep(0.2)
    cpu = server.cpuSeconds() - before
    return messages / elapsed, cpu / messages * 1e6


def openIdle(port: int, count: int, timeout: float = 60.0) -> list[socket.socket]:
    """
    Open C{count} connections and read each greeting (so each one is an
    accepted, greeted session).
    """
    sockets: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    batch = 100
    while len(sockets) < count:
        fresh = []
        for _ in range(min(batch, count - len(sockets))):
            s = socket.create_connection((HOST, port), timeout=10)
            s.setblocking(False)
            fresh.append(s)
        pending = {s.fileno(): s for s in fresh}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no greeting on {len(pending)} connections")
            for fd, _ in poller.poll(1000):
                if pending[fd].recv(4096):
                    poller.unregister(fd)
                    del pending[fd]
                else:
                    raise RuntimeError("idle connection closed by the server")
        sockets.extend(fresh)
    return sockets


def closeAll(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()


def idleCost(server: Server, count: int) -> float:
    """
    RSS in KB per idle session.
    """
    time.sleep(0.3)
    before = rssKB(server.pid)
    sockets = openIdle(server.port, count)
    time.sleep(0.5)
    after = rssKB(server.pid)
    closeAll(sockets)
    return (after - before) / count


def profileMtaguard(server: Server, seconds: float, out: str) -> list[tuple[str, float, float]]:
    """
    py-spy samples of the server during a 4 KB run: the top functions by
    own (leaf) and total time, in percent of samples.
    """
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    profiler = subprocess.Popen(
        [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)),
         "--rate", "250", "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    end = time.monotonic() + seconds - 1.5
    while time.monotonic() < end:
        smtpSource(server.port, 4096, 2000)
    profiler.wait(seconds + 30)
    own, total, samples = readSpyProfile(out)
    return [
        (frame, 100.0 * n / samples, 100.0 * total[frame] / samples)
        for frame, n in own.most_common(20)
    ] + [("-- inclusive --", 0.0, 0.0)] + [
        (frame, 100.0 * own[frame] / samples, 100.0 * n / samples)
        for frame, n in total.most_common(40) if "mtaguard" in frame
    ][:20]


def readSpyProfile(
    path: str, tid: int | None = None
) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """
    Read a C{py-spy record --format raw} file.

    @param tid: keep only the samples of this thread (C{py-spy --threads}
        puts C{thread (TID)} first in each stack); all samples if L{None}.
    @return: samples per frame as the innermost one (own), per frame
        anywhere on the stack (inclusive), and the number of samples.
        Frames are C{function (file)}, the file relative to the project.
    """
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    marker = None if tid is None else f"thread ({tid})"
    with open(path) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            names = stack.split(";")
            if marker is not None:
                if not stack.startswith(marker):
                    continue
                names = names[1:]
            frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].replace(ROOT + "/", "") + ")"
                      for f in names]
            if not frames:
                continue
            n = int(count)
            samples += n
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
    return own, total, samples


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=2000, help="idle connections for the clean-client test")
    parser.add_argument("--profile", action="store_true", help="py-spy mtaguard-queue and -memory, 4 KB")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--only", help="comma-separated server names")
    arguments = parser.parse_args()

    limit = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0]
    idle = min(arguments.idle, max(100, limit - 200))
    work = tempfile.mkdtemp(prefix="mtaguard-bench-")
    started = time.monotonic()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC,"
          f" {os.cpu_count()} CPUs, fd limit {limit}, work dir {work}", flush=True)
    servers: list[Server] = []
    try:
        makers: list[tuple[str, Callable[[], Server]]] = [
            ("mtaguard-queue", lambda: startMtaguardQueue(work)),
            ("mtaguard-memory", lambda: startSubcommand("mtaguard-memory", "serve-mtaguard-memory")),
            ("postfix", lambda: PostfixServer(work)),
            ("aiosmtpd", lambda: startSubcommand("aiosmtpd", "serve-aiosmtpd")),
            ("twisted.mail", lambda: startSubcommand("twisted.mail", "serve-twisted-mail")),
        ]
        only = set(arguments.only.split(",")) if arguments.only else None
        for name, make in makers:
            if name == "postfix" and (arguments.skip_postfix or os.geteuid() != 0):
                print("# postfix skipped (needs root, or --skip-postfix)")
                continue
            if only is not None and name not in only:
                continue
            servers.append(make())
        # Warm up each server (imports, first queue files, caches).
        for server in servers:
            smtpSource(server.port, 4096, 200)
        results: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
        for round in range(arguments.rounds):
            for label, size, messages in SIZES:
                order = servers[round % len(servers):] + servers[: round % len(servers)]
                for server in order:
                    rate, cpu = measure(server, size, messages)
                    results[(server.name, label)].append((rate, cpu))
                    print(f"round {round + 1} {label:>6} {server.name:<16} {rate:8.0f} msg/s"
                          f" {cpu:8.0f} us CPU/msg", flush=True)
        print()
        print("| size | server | msgs/s (median) | server CPU µs/msg | "
              + " | ".join(f"vs {s.name}" for s in servers) + " |")
        print("|---|---|---:|---:|" + "---:|" * len(servers))
        table: dict[tuple[str, str], tuple[float, float]] = {}
        for label, _, _ in SIZES:
            for server in servers:
                runs = results[(server.name, label)]
                table[(server.name, label)] = (median([r for r, _ in runs]), median([c for _, c in runs]))
            for server in servers:
                rate, cpu = table[(server.name, label)]
                ratios = " | ".join(f"{rate / table[(other.name, label)][0]:.2f}×" for other in servers)
                print(f"| {label} | {server.name} | {rate:,.0f} | {cpu:,.0f} | {ratios} |")
        print()
        # Idle sessions: RSS per session, then a clean client with many open.
        print("| server | RSS per idle session (1,000) | clean 4 KB msgs/s | with "
              f"{idle:,} idle | ratio |")
        print("|---|---:|---:|---:|---:|")
        for server in servers:
            if server.family:
                continue
            perSession = idleCost(server, 1000)
            clean, _ = measure(server, 4096, 2000)
            sockets = openIdle(server.port, idle)
            try:
                loaded, _ = measure(server, 4096, 2000)
            finally:
                closeAll(sockets)
            clean2, _ = measure(server, 4096, 2000)
            base = (clean + clean2) / 2
            print(f"| {server.name} | {perSession:.2f} KB | {base:,.0f} | {loaded:,.0f} |"
                  f" {loaded / base:.2f}× |", flush=True)
        if arguments.profile:
            for server in servers:
                if not server.name.startswith("mtaguard"):
                    continue
                print(f"\n## py-spy, {server.name}, 4 KB x 20 sessions: own% total%")
                for frame, ownShare, totalShare in profileMtaguard(
                    server, 12, os.path.join(work, f"{server.name}.txt")
                ):
                    print(f"{ownShare:5.1f} {totalShare:5.1f}  {frame}")
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as error:  # keep stopping the others
                print(f"# stopping {server.name}: {error}")
        shutil.rmtree(work, ignore_errors=True)
        print(f"# {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in SUBCOMMANDS:
        SUBCOMMANDS[sys.argv[1]](int(sys.argv[2]))
    else:
        main()
