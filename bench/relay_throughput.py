"""
Relay throughput: smtp-source -> mtaguard (durable queue) -> smtp-sink,
against mtaguard accepting alone and a private Postfix relaying the same
load to the same smtp-sink; and mtaguard's RSS while 10,000 messages wait
for a next hop that is down.

Postfix's C{smtp-source} sends N messages of 4 KB over 20 sessions,
reusing each connection (C{-d}).  Postfix's C{smtp-sink -c} is the next hop;
its running counter (C{mesg=N}) says how many messages it has received.
Every rate is messages / seconds, measured from the start of smtp-source:

  - mtaguard-relay: C{twistd -n mtaguard -c DIR} with the durable queue
    (file and directory fsync before 250), C{relayhost = [127.0.0.1]:SINK}
    and an C{smtp} transport in master.cf; the clock stops when the sink
    has received all N messages (and each recipient's done marker has been
    fsync'ed before its file was removed, which the script checks: C{active/}
    must be empty at the end).  "accept" beside it is when smtp-source
    finished, i.e. the rate of acceptance while relaying.
  - mtaguard-accept: the same configuration without an C{smtp} transport,
    so messages stay in the queue: the rate of acceptance alone (stops
    when smtp-source is done).
  - postfix-relay: a private Postfix 3.7 instance (own config, queue and
    master: smtpd -> cleanup -> qmgr -> smtp) with the same relayhost;
    the clock stops when the sink has received all N.  Needs root.

The three are interleaved and rotated over rounds in one run; medians are
printed with the ratios the issue asks for (relay >= 0.5x accept, relay >=
3x Postfix).  CPU is user+sys of the server from /proc (for Postfix: the
master, its live descendants and its reaped children).

Memory: a fourth mtaguard, its relayhost a port nobody listens on (the
next hop is down: every message is tried once, deferred and kept), gets
10,000 messages; its VmRSS is sampled at 0, 2,500, 5,000 and 10,000 queued
messages.

Usage (on the shared machine, serialised with the other benchmarks):
  flock /tmp/mtaguard-bench.lock .venv/bin/python bench/relay_throughput.py
  [--rounds N] [--messages N] [--queued N] [--profile] [--skip-postfix]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from smtpd_throughput import (  # noqa: E402
    privatePostfix,
    readSpyProfile,
    stopPostfix,
    HOST,
    ROOT,
    SESSIONS,
    ChildServer,
    Server,
    freePort,
    median,
    rssKB,
    smtpSource,
    waitListening,
)

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SIZE = 4096


class Sink:
    """
    Postfix's smtp-sink with running counters (C{-c}) written to a file.
    """

    _counter = re.compile(rb"mesg=(\d+)")

    def __init__(self, work: str) -> None:
        self.port = freePort()
        self.output = os.path.join(work, "sink.out")
        argv = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        argv += [f"{HOST}:{self.port}", "1024"]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        waitListening(self.port)

    def count(self) -> int:
        """
        Messages received so far (the last C{mesg=} counter).
        """
        with open(self.output, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 512))
            tail = handle.read()
        found = self._counter.findall(tail)
        return int(found[-1]) if found else 0

    def waitFor(self, target: int, timeout: float) -> float:
        """
        Wait until the counter reaches C{target}; return the monotonic time
        it was seen there.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.count() >= target:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink has {self.count()} messages, expected {target}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def startMtaguard(work: str, name: str, relayhost: str | None, transport: bool) -> ChildServer:
    """
    C{twistd -n mtaguard -c DIR} on a fresh queue.

    @param relayhost: C{relayhost}, or C{None} for none.
    @param transport: whether master.cf has an C{smtp} transport.
    """
    directory = os.path.join(work, name)
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
            "smtp_tls_security_level =\n"
            + (f"relayhost = {relayhost}\n" if relayhost else "")
        )
    with open(os.path.join(directory, "master.cf"), "w") as handle:
        handle.write(f"{HOST}:{port} inet n - n - 0 smtpd\n")
        if transport:
            handle.write("smtp unix - - n - - smtp\n")
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_DATA_HOME=os.path.join(directory, "xdg"))
    server = ChildServer(
        name,
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "mtaguard", "-c", directory],
        port, env=env, log=os.path.join(directory, "mtaguard.log"),
    )
    server.active = os.path.join(directory, "queue", "mtaguard", "active")  # type: ignore[attr-defined]
    return server


class PostfixRelay(Server):
    """
    A private Postfix instance under C{work}/postfix relaying everything to
    C{relayhost}.
    """

    def __init__(self, work: str, relayhost: str) -> None:
        self.name = "postfix-relay"
        self.family = True
        self.port = freePort()
        self.base, self.config, self.pid = privatePostfix(
            work,
            "postfix",
            "compatibility_level = 3.6\n"
            "myhostname = pf.test.example\n"
            "mydomain = test.example\n"
            "mydestination =\n"
            "mynetworks = 127.0.0.0/8\n"
            f"relayhost = {relayhost}\n"
            "smtp_tls_security_level =\n"
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
            f"{HOST}:{self.port} inet n - n - - smtpd\n"
            "verify unix - - n - 1 verify\n"
            "flush unix n - n 1000? 0 flush\n"
            "smtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\n"
            "error unix - - n - - error\n"
            "retry unix - - n - - error\n"
            "discard unix - - n - - discard\n"
            "tlsmgr unix - - n 1000? 1 tlsmgr\n",
        )
        waitListening(self.port)

    def stop(self) -> None:
        stopPostfix(self.config)


def queuedFiles(server: Server) -> int:
    active = getattr(server, "active", None)
    if active is None:
        return 0
    try:
        return len(os.listdir(active))
    except FileNotFoundError:
        return 0


def reactorSeconds(server: Server) -> float:
    """
    CPU seconds of the server's main thread (twistd's reactor thread), or
    0.0 for a server that is not one mtaguard process.
    """
    if server.family or not server.pid:
        return 0.0
    with open(f"/proc/{server.pid}/task/{server.pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The reactor thread's share of the last run's CPU, µs per message (the
#: rest is the worker threads': file writes, fsyncs, markers).
lastReactor = [0.0]


def relayRun(server: Server, sink: Sink, messages: int) -> tuple[float, float, float]:
    """
    One relay run: (msgs/s delivered to the sink, msgs/s accepted, server
    CPU µs per message).  The reactor thread's part is left in
    L{lastReactor}.
    """
    base = sink.count()
    before = server.cpuSeconds()
    reactorBefore = reactorSeconds(server)
    started = time.monotonic()
    accepted = smtpSource(server.port, SIZE, messages) + started
    done = sink.waitFor(base + messages, timeout=300)
    # Let the server finish what follows the last delivery (markers,
    # removals, logs) before reading its CPU time.
    deadline = time.monotonic() + 30
    while queuedFiles(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    cpu = server.cpuSeconds() - before
    lastReactor[0] = (reactorSeconds(server) - reactorBefore) / messages * 1e6
    left = queuedFiles(server)
    if left:
        raise RuntimeError(f"{server.name}: {left} files left in active/ after the run")
    return messages / (done - started), messages / (accepted - started), cpu / messages * 1e6


def acceptRun(server: Server, messages: int) -> tuple[float, float]:
    """
    (msgs/s accepted, server CPU µs per message).
    """
    before = server.cpuSeconds()
    reactorBefore = reactorSeconds(server)
    elapsed = smtpSource(server.port, SIZE, messages)
    time.sleep(0.2)
    cpu = server.cpuSeconds() - before
    lastReactor[0] = (reactorSeconds(server) - reactorBefore) / messages * 1e6
    return messages / elapsed, cpu / messages * 1e6


def memoryRun(work: str, total: int) -> list[tuple[int, int, int]]:
    """
    A mtaguard whose next hop is down gets C{total} messages; return
    (messages sent, files in active/, VmRSS KB) at 0, 1/4, 1/2 and all.
    """
    server = startMtaguard(work, "mtaguard-down", f"[{HOST}]:{freePort()}", transport=True)
    samples = []
    try:
        # Warm up (imports, first files, the first delivery attempts) so
        # that the first sample is the service's running size.
        smtpSource(server.port, SIZE, 100)
        time.sleep(1.0)
        sent = 100
        samples.append((sent, queuedFiles(server), rssKB(server.pid)))
        for target in (total // 4, total // 2, total):
            while sent < target:
                step = min(2500, target - sent)
                smtpSource(server.port, SIZE, step)
                sent += step
            # Let the delivery attempts of what was just queued finish.
            time.sleep(1.0)
            samples.append((sent, queuedFiles(server), rssKB(server.pid)))
    finally:
        server.stop()
    return samples


def profileRelay(server: Server, sink: Sink, messages: int, out: str) -> list[tuple[str, float, float]]:
    """
    py-spy samples of mtaguard during relay runs: top functions by own
    and inclusive time, percent of samples (idle threads excluded); then
    the same for the reactor thread alone.
    """
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    profiler = subprocess.Popen(
        [spy, "record", "--pid", str(server.pid), "--rate", "200", "--format", "raw",
         "--output", out, "--nonblocking", "--threads"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    for _ in range(2):
        relayRun(server, sink, messages)
    profiler.send_signal(2)
    profiler.wait(60)
    own, total, samples = readSpyProfile(out)
    rows = [
        (frame, 100.0 * n / samples, 100.0 * total[frame] / samples)
        for frame, n in own.most_common(25)
    ] + [("-- inclusive, mtaguard --", 0.0, 0.0)] + [
        (frame, 100.0 * own[frame] / samples, 100.0 * n / samples)
        for frame, n in total.most_common(80) if "mtaguard" in frame
    ][:30]
    own, total, reactorSamples = readSpyProfile(out, server.pid)
    if reactorSamples:
        rows += [(f"-- reactor thread: {reactorSamples} of {samples} samples, own --", 0.0, 0.0)] + [
            (frame, 100.0 * n / reactorSamples, 100.0 * total[frame] / reactorSamples)
            for frame, n in own.most_common(30)
        ] + [("-- reactor thread, inclusive --", 0.0, 0.0)] + [
            (frame, 100.0 * own[frame] / reactorSamples, 100.0 * n / reactorSamples)
            for frame, n in total.most_common(120) if "site-packages" not in frame
        ][:60]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=4000, help="messages per run")
    parser.add_argument("--queued", type=int, default=10000, help="messages for the memory test (0: skip)")
    parser.add_argument("--profile", action="store_true", help="py-spy mtaguard during two more relay runs")
    parser.add_argument("--skip-postfix", action="store_true")
    arguments = parser.parse_args()

    work = tempfile.mkdtemp(prefix="mtaguard-relay-bench-")
    started = time.monotonic()
    messages = arguments.messages
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC,"
          f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {messages} x {SIZE} B,"
          f" {SESSIONS} sessions, work dir {work}", flush=True)
    servers: list[Server] = []
    sink: Sink | None = None
    try:
        sink = Sink(work)
        relayhost = f"[{HOST}]:{sink.port}"
        relay = startMtaguard(work, "mtaguard-relay", relayhost, transport=True)
        servers.append(relay)
        accept = startMtaguard(work, "mtaguard-accept", relayhost, transport=False)
        servers.append(accept)
        postfix: Server | None = None
        if arguments.skip_postfix or os.geteuid() != 0:
            print("# postfix skipped (needs root, or --skip-postfix)")
        else:
            postfix = PostfixRelay(work, relayhost)
            servers.append(postfix)
        # Warm up: imports, first queue files, first connections.
        relayRun(relay, sink, 200)
        acceptRun(accept, 200)
        if postfix is not None:
            relayRun(postfix, sink, 200)

        results: dict[str, list[tuple[float, float, float]]] = collections.defaultdict(list)
        for round in range(arguments.rounds):
            order = servers[round % len(servers):] + servers[: round % len(servers)]
            for server in order:
                if server is accept:
                    rate, cpu = acceptRun(server, messages)
                    results[server.name].append((rate, rate, cpu))
                    print(f"round {round + 1} {server.name:<16} accept {rate:7.0f} msg/s"
                          f" {cpu:7.0f} us CPU/msg (reactor thread {lastReactor[0]:4.0f})", flush=True)
                else:
                    rate, accepted, cpu = relayRun(server, sink, messages)
                    results[server.name].append((rate, accepted, cpu))
                    print(f"round {round + 1} {server.name:<16} relay {rate:7.0f} msg/s"
                          f" (accepted at {accepted:5.0f} msg/s) {cpu:7.0f} us CPU/msg"
                          + (f" (reactor thread {lastReactor[0]:4.0f})" if server.family is False else ""),
                          flush=True)

        table = {
            name: tuple(median([run[i] for run in runs]) for i in range(3)) for name, runs in results.items()
        }
        print()
        print("| server | delivered to smtp-sink, msgs/s | accepted, msgs/s | server CPU µs/msg |")
        print("|---|---:|---:|---:|")
        for server in servers:
            rate, accepted, cpu = table[server.name]
            delivered = "(not relayed)" if server is accept else f"{rate:,.0f}"
            print(f"| {server.name} | {delivered} | {accepted:,.0f} | {cpu:,.0f} |")
        relayRate = table[relay.name][0]
        acceptRate = table[accept.name][1]
        print()
        ratio = relayRate / acceptRate
        print(f"mtaguard relay / mtaguard accept: {ratio:.2f}x (target >= 0.5x: "
              f"{'met' if ratio >= 0.5 else 'NOT met'})")
        if postfix is not None:
            ratio = relayRate / table[postfix.name][0]
            print(f"mtaguard relay / postfix relay:   {ratio:.2f}x (target >= 3x: "
                  f"{'met' if ratio >= 3 else 'NOT met'})")
        print(flush=True)

        if arguments.queued:
            samples = memoryRun(work, arguments.queued)
            print("| messages sent | files in active/ | VmRSS KB |")
            print("|---:|---:|---:|")
            for sent, files, rss in samples:
                print(f"| {sent:,} | {files:,} | {rss:,} |")
            growth = samples[-1][2] - samples[0][2]
            print(f"RSS growth from {samples[0][1]:,} to {samples[-1][1]:,} queued: {growth:,} KB"
                  f" ({growth * 1024 / max(1, samples[-1][1] - samples[0][1]):.0f} bytes per message)", flush=True)

        if arguments.profile:
            print(f"\n## py-spy, {relay.name}, 2 x {messages} relayed: own% total%")
            for frame, ownShare, totalShare in profileRelay(
                relay, sink, messages, os.path.join(work, "relay-profile.txt")
            ):
                print(f"{ownShare:5.1f} {totalShare:5.1f}  {frame}")
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as error:  # keep stopping the others
                print(f"# stopping {server.name}: {error}")
        if sink is not None:
            sink.stop()
        if os.environ.get("KEEP_WORK"):
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        print(f"# {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
