# -*- test-case-name: tests.test_logobserver -*-
"""
The log observer C{twistd mtaguard} writes with.

Its lines are byte for byte those of Twisted's C{textFileLogObserver}, the
observer twistd would otherwise use, so that log readers (fail2ban, scripts
written for twistd logs) see no difference.  It exists for speed: Twisted
formats each event with the pure-Python C{string.Formatter} and recomputes the
time stamp for every line, about 20 µs per line, and a session logs several
lines (postscreen's C{CONNECT} and C{PASS OLD}, smtpd's C{connect from}, the
queue's lines, C{disconnect from}).  Here a plain format is filled by
C{str.format_map} in C and the time stamp is made once per second; any event
that needs more (a traceback, a flattened or callable format, a missing
field) goes through Twisted's own formatter unchanged.
"""

from __future__ import annotations

import math
import signal
import sys
from typing import IO, Any, Callable, Optional

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.logfile import LogFile

__all__ = ["ClassicLogText", "classicFileLogObserver", "twistdLogObserver"]


class ClassicLogText:
    """
    Formats events as C{"{time stamp} [{system}] {text}\\n"}, exactly as
    L{formatEventAsClassicLogText} with an RFC 3339 time format does.

    The time stamp has whole seconds only, so the text of the last second
    seen is kept and reused.
    """

    def __init__(self, timeFormat: str = timeFormatRFC3339) -> None:
        self._timeFormat = timeFormat
        self._second: Optional[int] = None
        self._stamp = ""

    def _twistedTime(self, when: Optional[float]) -> str:
        return formatTime(when, self._timeFormat)

    def __call__(self, event: LogEvent) -> Optional[str]:
        form = event.get("log_format")
        when = event.get("log_time")
        if (
            type(form) is not str
            or when is None
            or "log_failure" in event
            or "log_flattened" in event
        ):
            return formatEventAsClassicLogText(event, formatTime=self._twistedTime)
        try:
            text = form.format_map(event)
        except Exception:
            # A callable field ("{f()}"), a missing key, a bad spec: Twisted's
            # formatter handles each of these in its own way.
            return formatEventAsClassicLogText(event, formatTime=self._twistedTime)
        if not text:
            return None
        second = math.floor(when)
        if second != self._second:
            self._stamp = formatTime(when, self._timeFormat)
            self._second = second
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            name = "-" if level is None else level.name
            system = f"{event.get('log_namespace', '-')}#{name}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self._stamp} [{system}] {text}"
        if "\n" in line:
            # Continuation lines are indented, in the system as in the text.
            line = line.replace("\n", "\n\t")
        return line + "\n"


def classicFileLogObserver(outFile: IO[Any], timeFormat: str = timeFormatRFC3339) -> ILogObserver:
    """
    An observer writing to C{outFile} what C{textFileLogObserver(outFile)}
    would write, and flushing after each line as it does.
    """
    observer: ILogObserver = FileLogObserver(outFile, ClassicLogText(timeFormat))
    return observer


def twistdLogObserver(
    serverOptions: Any,
    *,
    stdout: Optional[IO[Any]] = None,
    installSignal: Callable[[int, Any], Any] = signal.signal,
    getSignal: Callable[[int], Any] = signal.getsignal,
) -> Optional[ILogObserver]:
    """
    The observer twistd's own logger would build from its command line
    (C{--logfile}, C{-n}), writing the same lines, or L{None} where twistd
    should keep its own: C{--syslog}, C{--logger}, or a platform without
    C{SIGUSR1}.

    @param serverOptions: twistd's C{ServerOptions} (the parent of the
        plugin's options), or L{None} when not run by twistd.
    """
    if serverOptions is None or not hasattr(signal, "SIGUSR1"):
        return None
    if serverOptions.get("syslog") or serverOptions.get("logger"):
        return None
    filename = serverOptions.get("logfile") or ""
    nodaemon = serverOptions.get("nodaemon", False)
    if filename == "-" or (nodaemon and not filename):
        if not nodaemon:
            # twistd refuses this itself, with its own message.
            return None
        return classicFileLogObserver(stdout if stdout is not None else sys.stdout)
    logFile = LogFile.fromFullPath(filename or "twistd.log")
    if not getSignal(signal.SIGUSR1):

        def rotate(signalNumber: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(logFile.rotate)  # type: ignore[attr-defined]

        installSignal(signal.SIGUSR1, rotate)
    return classicFileLogObserver(logFile)
