"""
Benchmark: loading a large configuration and looking parameters up.

Builds a configuration directory with a 500-parameter main.cf and a
50-service master.cf, then measures, in this one run:

  - mtaguard: parse + check (every used parameter, normal and stress) of the
    directory, best of several runs;
  - mtaguard: 1,000 typed lookups with C{$name} expansion on a fresh view
    (cold: every value expanded and converted), and 1,000 repeated lookups
    (warm: the cache mtaguard's services use);
  - Postfix: C{postconf -c DIR -x} over the same files (the whole process:
    exec, parse, expand and print), for the ratio.

Usage: .venv/bin/python bench/config_load.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mtaguard.config import Kind, loadConfiguration, registry  # noqa: E402


def mainCf() -> str:
    lines = ["# generated for bench/config_load.py", "compatibility_level = 3.6"]
    used = [p for p in registry if p.postfix and p.name != "compatibility_level"]
    for index, parameter in enumerate(used[:498]):
        value = parameter.defaultText()
        if parameter.kind is Kind.LIST and index % 7 == 0:
            lines.append(f"{parameter.name} = {value}")
            lines.append("    # a comment between continuation lines")
            lines.append("    $myhostname")
        else:
            lines.append(f"{parameter.name} = {value}")
    lines.append("bench_private_value = $myhostname")
    return "\n".join(lines) + "\n"


def masterCf() -> str:
    lines = []
    for index in range(20):
        lines.append(
            f"127.0.0.{index + 1}:2525 inet n - n - - smtpd\n"
            f"  -o smtpd_timeout=${{stress?{{5}}:{{{60 + index}}}}}s\n"
            f"  -o smtpd_banner=$myhostname-{index}"
        )
    for index in range(20):
        lines.append(f"relay{index} unix - - n - - smtp -o smtp_helo_timeout={index + 1}s")
    for name in ["pickup", "cleanup", "qmgr", "tlsmgr", "rewrite", "bounce", "defer",
                 "trace", "verify", "flush"]:
        lines.append(f"{name} unix n - n - 1 {name if name != 'rewrite' else 'trivial-rewrite'}")
    return "\n".join(lines) + "\n"


def best(function, runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    directory = tempfile.mkdtemp(prefix="mtaguard-bench-")
    try:
        with open(os.path.join(directory, "main.cf"), "w") as handle:
            handle.write(mainCf())
        with open(os.path.join(directory, "master.cf"), "w") as handle:
            handle.write(masterCf())
        settings = sum(1 for line in mainCf().splitlines() if "=" in line and not line.startswith("#"))
        services = sum(1 for line in masterCf().splitlines() if line[:1].strip())

        loadSeconds = best(lambda: loadConfiguration(directory), 15)
        configuration = loadConfiguration(directory)
        unique = [p for p in registry if p.used]
        used = unique[:1000]
        while len(used) < 1000:
            used = used + used
        used = used[:1000]

        from mtaguard.config import parseConfiguration

        mainText, masterText = mainCf(), masterCf()

        def cold() -> float:
            # A configuration nobody has looked anything up in yet: every
            # lookup expands and converts its value.
            fresh = parseConfiguration(directory, mainText, masterText)
            view = fresh.view(fresh.services()[0])
            start = time.perf_counter()
            for parameter in unique:
                view[parameter]
            return (time.perf_counter() - start) / len(unique)

        warmView = configuration.view(configuration.services()[0])
        for parameter in used:
            warmView[parameter]

        def warm() -> None:
            for parameter in used:
                warmView[parameter]

        coldPerLookup = min(cold() for _ in range(15))
        warmSeconds = best(warm, 50)

        postconf = shutil.which("postconf")
        print(f"configuration: {settings} main.cf settings, {services} master.cf services")
        print(f"mtaguard load (parse + check):      {loadSeconds * 1000:8.2f} ms   (target < 50 ms)")
        print(f"mtaguard lookup, first (expand):    {coldPerLookup * 1e6:8.2f} us   (target < 10 us; each of {len(unique)} used parameters once)")
        print(f"mtaguard lookup, 1000 repeated:     {warmSeconds / 1000 * 1e6:8.2f} us   (cached, as services see it)")
        if postconf:
            peerSeconds = best(
                lambda: subprocess.run(
                    [postconf, "-c", directory, "-x"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                ),
                15,
            )
            print(f"postfix postconf -c DIR -x (process): {peerSeconds * 1000:6.2f} ms")
            print(f"ratio mtaguard load / postconf -x:  {loadSeconds / peerSeconds:8.2f}")
        else:
            print("postfix postconf not found: no peer ratio")
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
