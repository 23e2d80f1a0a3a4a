"""
postscreen in front of smtpd: mtaguard against Postfix's postscreen.

One mtaguard (C{twistd -n mtaguard -c DIR}, durable queue) and one private
Postfix 3.7 instance, each with two ports on 127.0.0.1 served by the same
process family:

  - C{smtpd}: C{127.0.0.1:P1 inet n - n - 0 smtpd}, the SMTP server alone;
  - C{postscreen}: C{127.0.0.1:P2 inet n - n - 1 postscreen} in front of
    C{smtpd pass - - n - - smtpd}.

Clean client: Postfix's C{smtp-source} from 127.0.0.1, 20 concurrent
sessions of 4 KB messages, in two forms: C{reuse} (C{-d}, 20 connections
carry all messages, so postscreen is paid 20 times per run) and
C{per-connection} (no C{-d}: one connection, so one postscreen decision,
per message).  127.0.0.1 is not in C{mynetworks} (10.255.255.0/24), so
postscreen's C{permit_mynetworks} does not allowlist it: it goes through
the verdict cache.  Before measuring, 127.0.0.1 passes every enabled test
once on each postscreen (wait out the greet wait, then EHLO/MAIL/RCPT in
the dummy engine, told C{450 4.3.2} to come back); every later connection
must be C{PASS OLD}, which the script checks in both servers' logs.
Recipients are in C{relay_domains} (C{remote.example}); mtaguard has no
C{smtp} transport in master.cf, so the mail stays queued, and Postfix puts
it on hold (C{check_recipient_access static:HOLD}): both fsync a queue
file before the 250 and deliver nothing.

Zombies: N (default 10,000) connections from 127.0.1.x (mtaguard) or
127.0.2.x (Postfix), 500 per source address, that connect and never send a
byte.  With the normal configuration they would pass the greet wait in
silence and be handed to smtpd; to keep them in postscreen both servers run
with C{postscreen_pipelining_enable = yes} (a deep test), so a silent client
sits in the dummy SMTP engine after its C{220 } until
C{postscreen_command_time_limit} (300 s).  The script waits until every
zombie has that C{220 } line and the server's CPU time stops growing, then
reads postscreen's RSS (mtaguard: the twistd process; Postfix: the
postscreen process) and measures the clean client again (both modes,
IDLE_RUNS times); IDLE_RUNS - 1 runs before opening and after closing the
zombies (once the server is idle again) are the idle-free figure.  The
machine is shared, so each server has an identical twin (a second mtaguard,
a second private Postfix) that never gets zombies: every run on the first
is followed by the same run on the twin, and the ratio of ratios (first /
twin with zombies, over first / twin without) cancels most of what other
load on the machine did meanwhile.  For 10,000 held connections both run with
C{postscreen_client_connection_count_limit = 0} and
C{postscreen_pre_queue_limit = 20000} (stress mode starts at 90% of it,
and would cut the command time limit to 10 s).

Everything else is the default configuration (postscreen_greet_wait 6 s,
cache btree:$data_directory/postscreen_cache: SQLite for mtaguard).

Usage (as root, for the private Postfix):
  .venv/bin/python bench/postscreen_throughput.py [--rounds N] [--zombies N]
  [--messages N] [--profile] [--skip-postfix] [--source DIR] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import resource
import select
import shutil
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

median = statistics.median

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtpd_throughput import (  # noqa: E402
    privatePostfix,
    readSpyProfile,
    stopPostfix,
    stopProcess,
    HOST,
    ROOT,
    SMTP_SOURCE,
    TICKS,
    freePort,
    rssKB,
    statOf,
    waitListening,
)

SESSIONS = 20
SIZE = 4096
#: The file descriptor limit of this script and of the servers.
FD_LIMIT = 65536
#: Zombies per source address.
PER_SOURCE = 500
#: Socket option: bind() picks no port until connect() (Linux).
IP_BIND_ADDRESS_NO_PORT = 24
MODES = ("reuse", "per-connection")
#: smtp-source runs with the zombies held (and IDLE_RUNS - 1 before
#: opening and after closing them).
IDLE_RUNS = 4

#: main.cf lines both servers share.
COMMON_MAIN_CF = (
    "compatibility_level = 3.6\n"
    "mydomain = test.example\n"
    "mydestination =\n"
    # 127.0.0.1 must not be allowlisted by permit_mynetworks.
    "mynetworks = 10.255.255.0/24\n"
    "relay_domains = remote.example\n"
    "postscreen_pipelining_enable = yes\n"
    "postscreen_client_connection_count_limit = 0\n"
    "postscreen_pre_queue_limit = 20000\n"
)


def raiseFdLimit() -> None:
    """
    Raise the soft file descriptor limit to C{FD_LIMIT}, or to the hard
    limit when that is lower and cannot be raised (a container without
    CAP_SYS_RESOURCE, even as root).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, max(FD_LIMIT, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connectOnly(port: int, timeout: float = 30.0) -> None:
    """
    Wait until something accepts on C{port}, without reading (so
    postscreen sees only a hang-up from an address no test uses).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.socket()
            s.bind(("127.0.0.254", 0))
            s.settimeout(1)
            s.connect((HOST, port))
            s.close()
            return
        except OSError:
            s.close()
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Instance:
    name = ""
    smtpdPort = 0
    postscreenPort = 0
    zombieNet = ""

    def cpuSeconds(self) -> float:
        raise NotImplementedError

    def postscreenPid(self) -> int:
        raise NotImplementedError

    def logCounts(self) -> dict[str, int]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def _logCounts(path: str) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    patterns = {
        "CONNECT [127.0.0.1]": "CONNECT from [127.0.0.1]:",
        "PASS OLD [127.0.0.1]": "PASS OLD [127.0.0.1]:",
        "PASS NEW [127.0.0.1]": "PASS NEW [127.0.0.1]:",
        # The dummy engine's 450 (a client that was tested again).
        "RCPT reject [127.0.0.1]": "reject: RCPT from [127.0.0.1]",
        "PREGREET": "PREGREET ",
        "COMMAND TIME LIMIT": "COMMAND TIME LIMIT",
        "STRESS": "STRESS mode",
        "ports busy": "ports busy",
        "too many connections": "too many connections",
    }
    try:
        with open(path, errors="replace") as handle:
            for line in handle:
                for key, text in patterns.items():
                    if text in line:
                        counts[key] += 1
    except FileNotFoundError:
        pass
    return dict(counts)


class MtaguardInstance(Instance):
    def __init__(self, work: str, source: str = ROOT, name: str = "mtaguard") -> None:
        self.name = name
        self.zombieNet = "127.0.1"
        directory = os.path.join(work, name)
        for sub in ("queue", "data", "xdg"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        self.smtpdPort, self.postscreenPort = freePort(), freePort()
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write(
                COMMON_MAIN_CF
                + "myhostname = mx.test.example\n"
                f"queue_directory = {directory}/queue\n"
                f"data_directory = {directory}/data\n"
            )
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write(
                f"{HOST}:{self.smtpdPort} inet n - n - 0 smtpd\n"
                f"{HOST}:{self.postscreenPort} inet n - n - 1 postscreen\n"
                "smtpd pass - - n - - smtpd\n"
            )
        self.log = os.path.join(directory, "mtaguard.log")
        env = dict(os.environ, PYTHONPATH=source, XDG_DATA_HOME=os.path.join(directory, "xdg"))
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "mtaguard", "-c", directory],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            env=env, cwd=source, start_new_session=True, preexec_fn=raiseFdLimit,
        )
        self.pid = self.process.pid
        waitListening(self.smtpdPort)
        connectOnly(self.postscreenPort)

    def cpuSeconds(self) -> float:
        return statOf(self.pid)[1] / TICKS

    def postscreenPid(self) -> int:
        return self.pid

    def logCounts(self) -> dict[str, int]:
        return _logCounts(self.log)

    def stop(self) -> None:
        stopProcess(self.process, 30)


class PostfixInstance(Instance):
    """
    A private Postfix instance under C{work}/postfix with postscreen.
    """

    def __init__(self, work: str, name: str = "postfix") -> None:
        self.name = name
        self.zombieNet = "127.0.2"
        self.smtpdPort, self.postscreenPort = freePort(), freePort()
        base, self.config, self.pid = privatePostfix(
            work,
            name,
            COMMON_MAIN_CF
            + f"myhostname = {name}.test.example\n"
            "smtpd_recipient_restrictions = check_recipient_access static:HOLD,"
            " permit_mynetworks, reject_unauth_destination\n",
            f"{HOST}:{self.smtpdPort} inet n - n - - smtpd\n"
            f"{HOST}:{self.postscreenPort} inet n - n - 1 postscreen\n"
            "smtpd pass - - n - - smtpd\n"
            "dnsblog unix - - n - 0 dnsblog\n"
            "tlsproxy unix - - n - 0 tlsproxy\n",
        )
        self.log = os.path.join(base, "maillog")
        waitListening(self.smtpdPort)
        connectOnly(self.postscreenPort)

    def _family(self) -> dict[int, tuple[int, int, str]]:
        parents: dict[int, int] = {}
        stats: dict[int, tuple[int, int, str]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid, own, children = statOf(int(entry))
                    with open(f"/proc/{entry}/comm") as handle:
                        comm = handle.read().strip()
                except (OSError, IndexError):
                    continue
                parents[int(entry)] = ppid
                stats[int(entry)] = (own, children, comm)
        family = {}
        for pid, stat in stats.items():
            ancestor = pid
            while ancestor not in (0, 1) and ancestor != self.pid:
                ancestor = parents.get(ancestor, 0)
            if ancestor == self.pid:
                family[pid] = stat
        return family

    def cpuSeconds(self) -> float:
        total = 0
        for pid, (own, children, _) in self._family().items():
            total += own + (children if pid == self.pid else 0)
        return total / TICKS

    def postscreenPid(self) -> int:
        for pid, (_, _, comm) in self._family().items():
            if comm == "postscreen":
                return pid
        raise RuntimeError("no postscreen process")

    def logCounts(self) -> dict[str, int]:
        return _logCounts(self.log)

    def stop(self) -> None:
        stopPostfix(self.config)


# --- clients -----------------------------------------------------------------


def smtpSource(port: int, messages: int, reuse: bool) -> float:
    """
    Run smtp-source from 127.0.0.1; return the wall time.
    """
    argv = [SMTP_SOURCE, "-s", str(SESSIONS), "-m", str(messages), "-l", str(SIZE),
            "-f", "a@example.org", "-t", "bob@remote.example", f"{HOST}:{port}"]
    if reuse:
        argv.insert(1, "-d")
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, timeout=300)
    elapsed = time.monotonic() - started
    if result.returncode != 0 or result.stdout.strip() or result.stderr.strip():
        raise RuntimeError(f"smtp-source: rc {result.returncode} {result.stdout[:500]!r} {result.stderr[:500]!r}")
    return elapsed


def measure(instance: Instance, port: int, messages: int, reuse: bool) -> tuple[float, float]:
    """
    (msgs/s, server CPU µs per message) of one smtp-source run.
    """
    before = instance.cpuSeconds()
    elapsed = smtpSource(port, messages, reuse)
    time.sleep(0.2)
    cpu = instance.cpuSeconds() - before
    return messages / elapsed, cpu / messages * 1e6


def _readUntil(s: socket.socket, pattern: "re.Pattern[bytes]", timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not pattern.search(data):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed after {data!r}")
        data += chunk
    return data


FINAL_220 = re.compile(rb"(^|\n)220 ")


def warmUp(port: int, greetWait: float = 6.0) -> str:
    """
    Make 127.0.0.1 pass every enabled test once (pregreet: stay silent
    through the greet wait; pipelining: EHLO, MAIL, RCPT one at a time in
    the dummy engine, which answers RCPT with 450 4.3.2), then check that the
    next connection is handed to smtpd at once (no C{220-} teaser).
    """
    with socket.create_connection((HOST, port), timeout=30) as s:
        banner = _readUntil(s, FINAL_220, greetWait + 10)
        transcript = [banner]
        for command, final in ((b"EHLO bench.example", re.compile(rb"(^|\n)250 ")),
                               (b"MAIL FROM:<a@example.org>", re.compile(rb"(^|\n)\d{3} ")),
                               (b"RCPT TO:<bob@remote.example>", re.compile(rb"(^|\n)\d{3} "))):
            s.sendall(command + b"\r\n")
            transcript.append(_readUntil(s, final, 10))
        s.sendall(b"QUIT\r\n")
    if not transcript[-1].startswith(b"450"):
        raise RuntimeError(f"warm-up on {port} did not end with 450: {transcript!r}")
    time.sleep(0.5)  # the cache update is written asynchronously
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=30) as s:
        greeting = _readUntil(s, FINAL_220, 5)
        s.sendall(b"QUIT\r\n")
    if not greeting.startswith(b"220 "):
        raise RuntimeError(f"127.0.0.1 is not PASS OLD on {port}: {greeting!r}")
    return f"{(time.monotonic() - started) * 1000:.1f} ms to 220"


def openZombies(port: int, count: int, net: str, timeout: float = 120.0) -> list[socket.socket]:
    """
    Open C{count} connections from C{net}.1, C{net}.2, ... that never send
    anything; return once each has received postscreen's final C{220 }
    line (the greet wait is over and it sits in the dummy engine).
    """
    sockets: list[socket.socket] = []
    received: dict[int, bytes] = {}
    done: set[int] = set()
    poller = select.poll()
    byFd: dict[int, socket.socket] = {}

    def pump(wait: int) -> None:
        for fd, _ in poller.poll(wait):
            chunk = byFd[fd].recv(4096)
            if not chunk:
                raise RuntimeError(f"zombie closed by the server after {received[fd]!r}")
            received[fd] += chunk
            if FINAL_220.search(received[fd]):
                done.add(fd)
                poller.unregister(fd)

    deadline = time.monotonic() + timeout
    batch = 100
    while len(sockets) < count:
        fresh = []
        for _ in range(min(batch, count - len(sockets))):
            source = f"{net}.{len(sockets) // PER_SOURCE + 1}"
            s = socket.socket()
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            s.settimeout(10)
            s.connect((HOST, port))
            s.setblocking(False)
            sockets.append(s)
            fresh.append(s)
            byFd[s.fileno()] = s
            received[s.fileno()] = b""
            poller.register(s.fileno(), select.POLLIN)
        # Wait until the batch is accepted (each gets the teaser or the 220).
        while any(not received[s.fileno()] for s in fresh):
            if time.monotonic() > deadline:
                raise RuntimeError("zombies not accepted in time")
            pump(1000)
    while len(done) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count - len(done)} zombies without a 220 in time")
        pump(1000)
    return sockets


def closeAll(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()


def waitIdle(instance: Instance, since: float, limit: float = 60.0) -> tuple[float, float]:
    """
    Wait until the server's CPU time stops growing (less than 20 ms in
    half a second), so that work left over from opening or closing the
    zombies does not land in the next measurement.

    @return: (CPU seconds used since C{since}, seconds waited)
    """
    started = time.monotonic()
    last = instance.cpuSeconds()
    while time.monotonic() - started < limit:
        time.sleep(0.5)
        now = instance.cpuSeconds()
        if now - last < 0.02:
            break
        last = now
    return now - since, time.monotonic() - started


def profile(pid: int, seconds: int, out: str, load: Callable[[], None]) -> list[str]:
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    profiler = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
         "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    end = time.monotonic() + seconds - 1.5
    while time.monotonic() < end:
        load()
    profiler.wait(seconds + 30)
    own, total, samples = readSpyProfile(out)
    lines = [f"{100 * n / samples:5.1f} {100 * total[f] / samples:5.1f}  {f}" for f, n in own.most_common(15)]
    lines.append("-- inclusive, mtaguard frames --")
    lines += [f"{100 * own[f] / samples:5.1f} {100 * n / samples:5.1f}  {f}"
              for f, n in total.most_common(60) if "mtaguard" in f][:20]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="messages per smtp-source run")
    parser.add_argument("--zombies", type=int, default=10000)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy mtaguard during per-connection runs, without and with the zombies")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--source", default=ROOT,
                        help="the mtaguard source tree to run (default: this checkout), e.g. a"
                        " `git archive` of one commit, so others' uncommitted edits do not leak in")
    arguments = parser.parse_args()

    raiseFdLimit()
    work = tempfile.mkdtemp(prefix="mtaguard-psbench-")
    started = time.monotonic()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs,"
          f" fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, load {os.getloadavg()[0]:.2f},"
          f" work dir {work}, mtaguard from {os.path.abspath(arguments.source)}", flush=True)
    instances: list[Instance] = []
    twins: dict[str, Instance] = {}
    try:
        instances.append(MtaguardInstance(work, os.path.abspath(arguments.source)))
        # A second, identical server of each kind that never gets zombies:
        # its runs, interleaved with the first one's, show what the
        # machine's other load did meanwhile.
        twins: dict[str, Instance] = {
            "mtaguard": MtaguardInstance(work, os.path.abspath(arguments.source), name="mtaguard-twin")}
        if arguments.skip_postfix or os.geteuid() != 0:
            print("# postfix skipped (needs root, or --skip-postfix)")
        else:
            instances.append(PostfixInstance(work))
            twins["postfix"] = PostfixInstance(work, name="postfix-twin")
        # Warm the verdict caches (in parallel: each waits out a greet wait).
        notes: dict[str, str] = {}
        errors: list[BaseException] = []

        def warm(instance: Instance) -> None:
            try:
                notes[instance.name] = warmUp(instance.postscreenPort)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=warm, args=(i,)) for i in [*instances, *twins.values()]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        for instance in instances:
            print(f"# {instance.name}: 127.0.0.1 warmed, then PASS OLD ({notes[instance.name]})", flush=True)
            for port in (instance.smtpdPort, instance.postscreenPort):
                smtpSource(port, 200, reuse=False)
        before = {i.name: i.logCounts() for i in instances}

        results: dict[tuple[str, str, str], list[tuple[float, float]]] = collections.defaultdict(list)
        for round in range(arguments.rounds):
            for mode in MODES:
                for instance in instances[round % len(instances):] + instances[: round % len(instances)]:
                    ports = [("smtpd", instance.smtpdPort), ("postscreen", instance.postscreenPort)]
                    if round % 2:
                        ports.reverse()
                    for front, port in ports:
                        rate, cpu = measure(instance, port, arguments.messages, mode == "reuse")
                        results[(instance.name, mode, front)].append((rate, cpu))
                        print(f"round {round + 1} {mode:<14} {instance.name:<9} {front:<10}"
                              f" {rate:7.0f} msg/s {cpu:7.0f} us CPU/msg", flush=True)
        print()
        if not arguments.rounds:
            instances_for_table: list[Instance] = []
        else:
            instances_for_table = instances
        print(f"Clean client, {arguments.messages} × 4 KB, {SESSIONS} sessions, medians of"
              f" {arguments.rounds} rounds:")
        print()
        # Each round runs the two fronts back to back, so the per-round ratio
        # cancels most of the machine's drift between rounds; both are shown.
        print("| mode | server | smtpd alone msg/s | CPU µs/msg | postscreen → smtpd msg/s | CPU µs/msg |"
              " postscreen / smtpd | median of round ratios |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        table: dict[tuple[str, str, str], tuple[float, float]] = {}
        for mode in MODES:
            for instance in instances_for_table:
                for front in ("smtpd", "postscreen"):
                    runs = results[(instance.name, mode, front)]
                    table[(instance.name, mode, front)] = (median([r for r, _ in runs]),
                                                           median([c for _, c in runs]))
                s, sc = table[(instance.name, mode, "smtpd")]
                p, pc = table[(instance.name, mode, "postscreen")]
                paired = median([ps[0] / sm[0] for ps, sm in zip(results[(instance.name, mode, "postscreen")],
                                                                  results[(instance.name, mode, "smtpd")])])
                print(f"| {mode} | {instance.name} | {s:,.0f} | {sc:,.0f} | {p:,.0f} | {pc:,.0f} | {p / s:.2f}× |"
                      f" {paired:.2f}× |")
        print(flush=True)

        # Zombies held in postscreen.
        idle: dict[str, dict[str, Any]] = {}
        for instance in instances:
            row: dict[str, Any] = {}
            port = instance.postscreenPort
            twin = twins[instance.name]
            for mode in MODES:
                row[("clean", mode)] = []
                row[("twin before", mode)] = []
                for _ in range(IDLE_RUNS - 1):
                    row[("clean", mode)].append(measure(instance, port, arguments.messages, mode == "reuse"))
                    row[("twin before", mode)].append(
                            measure(twin, twin.postscreenPort, arguments.messages, mode == "reuse"))
            pid = instance.postscreenPid()
            time.sleep(0.5)
            rssBefore = rssKB(pid)
            opened = time.monotonic()
            cpu = instance.cpuSeconds()
            zombies = openZombies(port, arguments.zombies, instance.zombieNet)
            row["open s"] = time.monotonic() - opened
            row["open cpu"] = waitIdle(instance, cpu)[0]
            rssAfter = rssKB(pid)
            if instance.postscreenPid() != pid:
                raise RuntimeError("postscreen restarted")
            row["rss"] = (rssBefore, rssAfter)
            try:
                for mode in MODES:
                    row[("loaded", mode)] = []
                    row[("twin during", mode)] = []
                    for _ in range(IDLE_RUNS):
                        row[("loaded", mode)].append(measure(instance, port, arguments.messages, mode == "reuse"))
                        row[("twin during", mode)].append(
                                measure(twin, twin.postscreenPort, arguments.messages, mode == "reuse"))
                if arguments.profile and instance.name == "mtaguard":
                    row["profile loaded"] = profile(
                        pid, 12, os.path.join(work, "loaded.txt"),
                        lambda: smtpSource(port, 1000, reuse=False))
                # Every zombie must still be open (held by postscreen).
                poller = select.poll()
                for zombie in zombies:
                    poller.register(zombie.fileno(), select.POLLIN)
                row["zombies readable"] = len(poller.poll(0))
            finally:
                cpu = instance.cpuSeconds()
                closeAll(zombies)
            row["close cpu"], row["close s"] = waitIdle(instance, cpu)
            row["rss closed"] = rssKB(pid)
            for mode in MODES:
                row[("clean", mode)] += [measure(instance, port, arguments.messages, mode == "reuse")
                                         for _ in range(IDLE_RUNS - 1)]
            if arguments.profile and instance.name == "mtaguard":
                row["profile clean"] = profile(
                    pid, 12, os.path.join(work, "clean.txt"),
                    lambda: smtpSource(port, 1000, reuse=False))
            idle[instance.name] = row
            print(f"# {instance.name}: {arguments.zombies} zombies open (each past the greet wait) in"
                  f" {row['open s']:.1f} s, server CPU {row['open cpu']:.2f} s to open them and"
                  f" {row['close cpu']:.2f} s to close them (busy {row['close s']:.1f} s after the close);"
                  f" RSS {rssBefore} → {rssAfter} KB, {row['rss closed']} KB after"
                  f" closing them; all still open after the"
                  f" loaded runs: {row['zombies readable'] == 0}; "
                  + " ".join(f"{kind} {mode}: {', '.join(f'{r:.0f} ({c:.0f} us)' for r, c in row[(kind, mode)])}"
                             for kind in ("clean", "loaded") for mode in MODES), flush=True)

        print()
        print(f"With {arguments.zombies:,} idle connections held in postscreen (dummy engine after"
              f" the greet wait); medians of {IDLE_RUNS} runs with them and of {IDLE_RUNS - 1} runs just before"
              f" opening plus {IDLE_RUNS - 1} just after closing them:")
        print()
        print("| server | mode | clean msg/s | with zombies msg/s | ratio | CPU µs/msg clean → with zombies |"
              " postscreen RSS before → after | RSS per held connection |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for instance in instances:
            row = idle[instance.name]
            rssBefore, rssAfter = row["rss"]
            for mode in MODES:
                clean = median([r for r, _ in row[("clean", mode)]])
                loaded = median([r for r, _ in row[("loaded", mode)]])
                cleanCpu = median([c for _, c in row[("clean", mode)]])
                loadedCpu = median([c for _, c in row[("loaded", mode)]])
                print(f"| {instance.name} | {mode} | {clean:,.0f} | {loaded:,.0f} | {loaded / clean:.2f}× |"
                      f" {cleanCpu:,.0f} → {loadedCpu:,.0f} |"
                      f" {rssBefore / 1024:.1f} → {rssAfter / 1024:.1f} MB |"
                      f" {(rssAfter - rssBefore) / max(1, arguments.zombies):.2f} KB |")
        print()
        print("Control: the same runs on an identical second server (twin) that never holds zombies, each run"
              " right after the first one's (medians; ratio = first / twin):")
        print()
        print("| server | mode | first, no zombies | twin meanwhile | ratio | first, with zombies | twin meanwhile |"
              " ratio | with / without, against the twin |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for instance in instances:
            row = idle[instance.name]
            for mode in MODES:
                first0 = median([r for r, _ in row[("clean", mode)][: IDLE_RUNS - 1]])
                twin0 = median([r for r, _ in row[("twin before", mode)]])
                first1 = median([r for r, _ in row[("loaded", mode)]])
                twin1 = median([r for r, _ in row[("twin during", mode)]])
                print(f"| {instance.name} | {mode} | {first0:,.0f} | {twin0:,.0f} | {first0 / twin0:.2f}× | {first1:,.0f} |"
                      f" {twin1:,.0f} | {first1 / twin1:.2f}× | {(first1 / twin1) / (first0 / twin0):.2f}× |")
        for instance in instances:
            row = idle[instance.name]
            print(f"# {instance.name}-twin runs: " + " ".join(
                f"{kind} {mode}: {', '.join(f'{r:.0f} ({c:.0f} us)' for r, c in row[(kind, mode)])}"
                for kind in ("twin before", "twin during") for mode in MODES))
        print()
        for instance in instances:
            after = instance.logCounts()
            delta = {k: after.get(k, 0) - before[instance.name].get(k, 0) for k in after}
            print(f"# {instance.name} log lines during the measured runs: {delta}")
        for instance in instances:
            row = idle[instance.name]
            for key in ("profile clean", "profile loaded"):
                if key in row:
                    print(f"\n## py-spy {instance.name} per-connection runs, {key}: own% total%")
                    print("\n".join(row[key]))
    finally:
        for instance in [*instances, *twins.values()]:
            try:
                instance.stop()
            except Exception as error:
                print(f"# stopping {instance.name}: {error}")
        if not arguments.keep:
            shutil.rmtree(work, ignore_errors=True)
        print(f"# {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
