"""
Benchmark: parsing DATA content with L{mtaguard.smtp.ServerParser}.

For 4 KB and 100 KB messages (realistic text: 76-column CRLF lines, a few
dot-stuffed lines), feeds C{MAIL}/C{RCPT}/C{DATA} commands, the dot-stuffed
content in 64 KB receives (a typical socket read) and C{.CRLF}, pulling
events as a session would, and prints the throughput of content parsing in
MB/s for each bare newline mode, best of several runs.  A second line per
size shows a worst case: content full of bare LFs and stray CRs, which takes
the normalising path.

Usage: .venv/bin/python bench/smtp_parser.py
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mtaguard.smtp import Command, EndOfData, ServerParser  # noqa: E402

RECEIVE_SIZE = 65536


def makeMessage(size: int, lineEnding: bytes = b"\r\n") -> bytes:
    """
    A dot-stuffed message of about C{size} bytes, ending in C{.CRLF}.
    """
    lines = [b"Subject: benchmark", b"From: a@example.com", b""]
    total = 0
    n = 0
    while total < size:
        n += 1
        line = (b".." if n % 50 == 0 else b"") + (b"lorem ipsum dolor sit amet %d " % n) * 3
        lines.append(line[:76])
        total += len(lines[-1]) + 2
    return lineEnding.join(lines) + b"\r\n.\r\n"


def run(mode: str, envelope: bytes, message: bytes, repeat: int) -> float:
    """
    Parse C{repeat} transactions; return seconds spent.
    """
    chunks = [message[i : i + RECEIVE_SIZE] for i in range(0, len(message), RECEIVE_SIZE)]
    start = time.perf_counter()
    for _ in range(repeat):
        parser = ServerParser(bareNewline=mode)
        parser.receive(envelope)
        while True:
            event = parser.nextEvent()
            if event is None:
                break
            if type(event) is Command and event.verb == "DATA":
                parser.startData()
        for chunk in chunks:
            parser.receive(chunk)
            while True:
                event = parser.nextEvent()
                if event is None or type(event) is EndOfData:
                    break
    return time.perf_counter() - start


def main() -> None:
    envelope = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    print(f"Python {sys.version.split()[0]} ({sys.implementation.name})")
    for size in (4 * 1024, 100 * 1024):
        for label, ending in (("clean CRLF", b"\r\n"), ("bare LF + stray CR", b"\n\r")):
            message = makeMessage(size, ending)
            repeat = max(10, 20_000_000 // len(message))
            for mode in ("no", "normalize", "reject"):
                best = min(run(mode, envelope, message, repeat) for _ in range(5))
                rate = len(message) * repeat / best / 1e6
                print(
                    f"{size // 1024:>4} KB  {label:<19} {mode:<10} {rate:8.1f} MB/s"
                    f"  ({best / repeat * 1e6:7.1f} us per message)"
                )


if __name__ == "__main__":
    main()
