"""
Benchmark: server CPU per message, mtaguard's hardened server against
twisted.mail.smtp, both handing mail to the same discarding
IMessageDelivery, driven by Postfix's smtp-source (20 sessions, 4 KB or
100 KB messages, connections reused), interleaved in one run.

Each server runs in its own process (so CPU time is the server's alone:
user + system of that process) on 127.0.0.1.

Usage: .venv/bin/python bench/smtpd_cpu.py [--messages N] [--size BYTES] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SERVER = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    sys.path.insert(0, {root!r})
    from twisted.internet import reactor
    from twisted.internet.defer import succeed
    from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
    from zope.interface import implementer

    @implementer(IMessageSMTP)
    class Message:
        def lineReceived(self, line): pass
        def eomReceived(self): return succeed(None)
        def connectionLost(self): pass

    @implementer(IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo, origin, recipients): return None
        def validateFrom(self, helo, origin): return origin
        def validateTo(self, user): return Message

    if {kind!r} == "mtaguard":
        from mtaguard.smtpd import SMTPServerFactory
        factory = SMTPServerFactory.forDelivery(Delivery(), clock=reactor)
    else:
        from twisted.mail import smtp
        class Factory(smtp.SMTPFactory):
            def buildProtocol(self, addr):
                protocol = smtp.SMTPFactory.buildProtocol(self, addr)
                protocol.delivery = Delivery()
                return protocol
        factory = Factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)

    def client():
        time.sleep(0.3)
        start = time.time()
        subprocess.run([{smtpSource!r}, "-d", "-s", "20", "-m", str({messages}), "-l", str({size}),
                        "-f", "a@example.org", "-t", "b@remote.example",
                        "127.0.0.1:%d" % port.getHost().port], check=True)
        rate = {messages} / (time.time() - start)
        reactor.callFromThread(lambda: finish(rate))

    def finish(rate):
        cpu = time.process_time() - cpu0
        print("%.1f %.1f" % (rate, cpu / {messages} * 1e6))
        reactor.stop()

    cpu0 = time.process_time()
    threading.Thread(target=client, daemon=True).start()
    reactor.run()
    """
)


def run(kind: str, messages: int, size: int, smtpSource: str) -> tuple[float, float]:
    code = SERVER.format(
        root=ROOT, kind=kind, messages=messages, size=size, smtpSource=smtpSource
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    ).stdout.split()
    return float(output[0]), float(output[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    smtpSource = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    results: dict[str, list[tuple[float, float]]] = {"mtaguard": [], "twisted.mail": []}
    for _ in range(options.rounds):
        for kind in results:
            results[kind].append(run(kind, options.messages, options.size, smtpSource))
    print(f"{options.messages} messages of {options.size} bytes, 20 sessions, {options.rounds} rounds (medians)")
    medians = {}
    for kind, values in results.items():
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        medians[kind] = (rate, cpu)
        print(f"{kind:14s} {rate:8.0f} msg/s {cpu:8.1f} us CPU/msg")
    mine, theirs = medians["mtaguard"], medians["twisted.mail"]
    print(f"ratio mtaguard/twisted.mail: throughput {mine[0] / theirs[0]:.2f}x,"
          f" CPU per message {theirs[1] / mine[1]:.2f}x")


if __name__ == "__main__":
    main()
