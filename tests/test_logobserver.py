"""
Tests for L{mtaguard.logobserver}: the same lines as Twisted's text observer,
and twistd's choice of file and signal.
"""

from __future__ import annotations

import io
import os
import signal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.application.service import Application, IServiceCollection
from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mtaguard.logobserver import ClassicLogText, classicFileLogObserver, twistdLogObserver
from mtaguard.service import MasterService


def twistedText(event: dict[str, Any]) -> str | None:
    """
    What twistd's own observer writes for C{event}.
    """
    return formatEventAsClassicLogText(event, formatTime=lambda when: formatTime(when, timeFormatRFC3339))


fieldNames = st.sampled_from(["address", "port", "text", "log_namespace", "count"])
values = st.one_of(
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.binary(max_size=8),
)
formats = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=10),
        fieldNames.map(lambda name: "{" + name + "}"),
        fieldNames.map(lambda name: "{" + name + "!r}"),
        st.sampled_from(["{{", "}}", "{missing}", "{port()}", "{port:>5}", "{", "\n", "{text.upper}"]),
    ),
    max_size=6,
).map("".join)


class ClassicLogTextTests(SynchronousTestCase):
    """
    L{ClassicLogText} gives what L{formatEventAsClassicLogText} gives.
    """

    def assertSame(self, event: dict[str, Any]) -> None:
        expected = twistedText(dict(event))
        self.assertEqual(ClassicLogText()(dict(event)), expected)

    @settings(max_examples=400, deadline=None)
    @given(
        form=formats,
        fields=st.dictionaries(fieldNames, values, max_size=5),
        when=st.one_of(st.none(), st.floats(min_value=0, max_value=4e9)),
        level=st.one_of(st.none(), st.sampled_from(list(LogLevel.iterconstants()))),
        system=st.one_of(st.none(), st.text(max_size=8), st.integers()),
    )
    def test_sameAsTwisted(
        self, form: str, fields: dict[str, Any], when: float | None, level: Any, system: Any
    ) -> None:
        """
        Any format, fields, time, level and system give Twisted's line,
        including the formats only Twisted's formatter understands.
        """
        event: dict[str, Any] = dict(fields, log_format=form, log_time=when)
        if level is not None:
            event["log_level"] = level
        if system is not None:
            event["log_system"] = system
        self.assertSame(event)

    def test_postfixLine(self) -> None:
        """
        A line as postscreen logs it.
        """
        event = dict(
            log_format="CONNECT from [{address}]:{port} to [{serverAddress}]:{serverPort}",
            address="192.0.2.1",
            port=4321,
            serverAddress="127.0.0.1",
            serverPort=25,
            log_time=1_790_000_000.25,
            log_level=LogLevel.info,
            log_namespace="mtaguard.postscreen",
        )
        line = ClassicLogText()(event)
        self.assertEqual(line, twistedText(event))
        assert line is not None
        self.assertTrue(line.endswith(" [mtaguard.postscreen#info] CONNECT from [192.0.2.1]:4321 to [127.0.0.1]:25\n"))

    def test_traceback(self) -> None:
        """
        An event with a failure keeps Twisted's traceback text.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        self.assertSame(dict(log_format="oops", log_time=1.0, log_failure=failure))

    def test_newlineInSystem(self) -> None:
        """
        A line break in the system is indented as one in the text is.
        """
        self.assertSame(dict(log_format="0", log_time=0.0, log_system="\n"))

    def test_noFormat(self) -> None:
        """
        No format, a bytes format, an empty text: as Twisted.
        """
        self.assertSame(dict(log_time=1.0))
        self.assertSame(dict(log_format=b"caf\xc3\xa9 {x}", x=1, log_time=1.0))
        self.assertSame(dict(log_format="{x}", x="", log_time=1.0))
        self.assertSame(dict(log_format="no time"))

    def test_stampPerSecond(self) -> None:
        """
        The time stamp follows the event's second, whichever came before.
        """
        format = ClassicLogText()
        for when in [100.1, 100.9, 101.0, 99.5, 100.2, 5000.0]:
            self.assertEqual(format(dict(log_format="x", log_time=when)), twistedText(dict(log_format="x", log_time=when)))

    def test_observer(self) -> None:
        """
        The observer writes the same bytes as C{textFileLogObserver}.
        """
        ours, theirs = io.StringIO(), io.StringIO()
        observer = classicFileLogObserver(ours)
        verifyObject(ILogObserver, observer)
        events = [
            dict(log_format="first {n}", n=1, log_time=10.5, log_namespace="a", log_level=LogLevel.warn),
            dict(log_format="two\nlines", log_time=11.0, log_system="sys"),
        ]
        for event in events:
            observer(dict(event))
            textFileLogObserver(theirs)(dict(event))
        self.assertEqual(ours.getvalue(), theirs.getvalue())


class TwistdLogObserverTests(SynchronousTestCase):
    """
    L{twistdLogObserver} picks the output twistd would have picked.
    """

    def test_notTwistd(self) -> None:
        """
        Without twistd's options, or with syslog or a custom logger, twistd
        keeps its own observer.
        """
        self.assertIsNone(twistdLogObserver(None))
        self.assertIsNone(twistdLogObserver({"syslog": True}))
        self.assertIsNone(twistdLogObserver({"logger": "x.y"}))
        self.assertIsNone(twistdLogObserver({"logfile": "-", "nodaemon": False}))

    def test_stdout(self) -> None:
        """
        C{-n} with no log file, or C{--logfile=-}, writes to standard output.
        """
        for options in [{"nodaemon": True}, {"nodaemon": True, "logfile": "-"}]:
            out = io.StringIO()
            observer = twistdLogObserver(options, stdout=out)
            assert observer is not None
            observer(dict(log_format="hello", log_time=1.0))
            self.assertIn("hello\n", out.getvalue())

    def test_logFile(self) -> None:
        """
        A log file is opened at its path, and SIGUSR1 rotates it unless a
        handler is already set.
        """
        path = os.path.join(self.mktemp() + "-dir", "mtaguard.log")
        os.makedirs(os.path.dirname(path))
        installed: list[int] = []
        observer = twistdLogObserver(
            {"logfile": path},
            installSignal=lambda number, handler: installed.append(number),
            getSignal=lambda number: signal.SIG_DFL,
        )
        assert observer is not None
        observer(dict(log_format="to the file", log_time=1.0))
        with open(path) as handle:
            self.assertIn("to the file\n", handle.read())
        self.assertEqual(installed, [signal.SIGUSR1])
        handled: list[int] = []
        twistdLogObserver(
            {"logfile": path},
            installSignal=lambda number, handler: handled.append(number),
            getSignal=lambda number: print,
        )
        self.assertEqual(handled, [])

    def test_defaultFile(self) -> None:
        """
        A daemon without C{--logfile} logs to C{twistd.log} where it runs.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        here = os.getcwd()
        os.chdir(directory)
        try:
            observer = twistdLogObserver({}, installSignal=lambda *a: None, getSignal=lambda n: print)
        finally:
            os.chdir(here)
        self.assertIsNotNone(observer)
        self.assertTrue(os.path.exists(os.path.join(directory, "twistd.log")))


class MasterServiceTests(SynchronousTestCase):
    """
    The top service gives twistd's application its observer.
    """

    def test_givesObserver(self) -> None:
        """
        Joining an application without an observer sets it.
        """
        application = Application("mtaguard")
        master = MasterService()
        observer = classicFileLogObserver(io.StringIO())
        master.logObserver = observer
        master.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)
        self.assertIn(master, list(IServiceCollection(application)))

    def test_keepsExisting(self) -> None:
        """
        An observer set by a .tac file stays.
        """
        application = Application("mtaguard")
        theirs = classicFileLogObserver(io.StringIO())
        application.setComponent(ILogObserver, theirs)
        master = MasterService()
        master.logObserver = classicFileLogObserver(io.StringIO())
        master.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), theirs)

    def test_noneLeavesTwistd(self) -> None:
        """
        Without an observer the application gets none, and twistd builds its
        own.
        """
        application = Application("mtaguard")
        MasterService().setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver, None))
