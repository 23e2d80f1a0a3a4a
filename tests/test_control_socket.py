"""
Tests for the control socket (L{mtaguard.control._protocol},
L{mtaguard.control._server}, L{mtaguard.control._client}): the AMP
commands in memory, the socket's permissions and stale-socket handling on
a real UNIX socket, and C{mtaguard-postqueue -f/-i} and
C{mtaguard-postsuper -r/-d} talking to a running control service.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import tempfile
from typing import Any, Optional, Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mtaguard.config import ConfigurationError
from mtaguard.control._client import ControlClient, ServiceUnreachable
from mtaguard.control._postqueue import run as postqueue
from mtaguard.control._postsuper import run as postsuper
from mtaguard.control._protocol import (
    BATCH,
    MAX_SOCKET_PATH,
    DeliverOne,
    Delete,
    Flush,
    InvalidQueueID,
    Requeue,
    SocketPathTooLong,
    UnknownMessage,
    controlSocketPath,
)
from mtaguard.control._server import (
    ControlError,
    ControlLocator,
    ControlService,
    prepareDirectory,
    removeStaleSocket,
)
from mtaguard.queue import encodeQueueFile

from .test_control import FIRST, SECOND, CONTENT, envelope

THIRD = "4dFVry0000z3"


class FakeManager:
    """
    Records what the control socket asks; knows the queue IDs in
    L{present}.
    """

    def __init__(self, present: Sequence[str] = ()) -> None:
        self.present = list(present)
        self.calls: list[tuple[str, Any]] = []

    def _check(self, queueIDs: Sequence[str]) -> None:
        for queueID in queueIDs:
            if not queueID.startswith("4dFV"):
                raise ValueError(f"invalid mail queue id: {queueID}")

    def flush(self) -> None:
        self.calls.append(("flush", None))

    def deliverNow(self, queueID: str) -> Deferred[bool]:
        self._check([queueID])
        self.calls.append(("deliverNow", queueID))
        return succeed(queueID in self.present)

    def requeue(self, queueIDs: Optional[Sequence[str]]) -> Deferred[list[str]]:
        if queueIDs is not None:
            self._check(queueIDs)
        self.calls.append(("requeue", None if queueIDs is None else list(queueIDs)))
        if queueIDs is None:
            return succeed(list(self.present))
        return succeed([q for q in queueIDs if q in self.present])

    def delete(self, queueIDs: Sequence[str]) -> Deferred[list[str]]:
        self._check(queueIDs)
        self.calls.append(("delete", list(queueIDs)))
        removed = [q for q in queueIDs if q in self.present]
        self.present = [q for q in self.present if q not in removed]
        return succeed(removed)


class CommandTests(SynchronousTestCase):
    """
    The AMP commands, between an L{amp.AMP} client and the service's
    L{ControlLocator}, in memory.
    """

    def setUp(self) -> None:
        self.manager = FakeManager([FIRST, SECOND])
        self.events: list[dict[str, Any]] = []
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(self.manager, Logger(observer=self.events.append))),
            amp.AMP,
        )

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        # Take the result before the answer arrives: AMP logs an error
        # answer that has no errback yet as unhandled.
        result: Deferred[Any] = Deferred()
        self.client.callRemote(command, **arguments).chainDeferred(result)
        self.pump.flush()
        return result

    def test_flush(self) -> None:
        """
        C{Flush} asks the queue manager to flush, and is answered at once.
        """
        self.assertEqual(self.successResultOf(self.call(Flush)), {})
        self.assertEqual(self.manager.calls, [("flush", None)])

    def test_deliverOne(self) -> None:
        """
        C{DeliverOne} asks for one message; an unknown queue ID is the
        C{UnknownMessage} error, and text that is no queue ID
        C{InvalidQueueID}.
        """
        self.assertEqual(self.successResultOf(self.call(DeliverOne, queueID=FIRST)), {})
        self.failureResultOf(self.call(DeliverOne, queueID=THIRD), UnknownMessage)
        self.failureResultOf(self.call(DeliverOne, queueID="../x"), InvalidQueueID)
        self.assertEqual(self.manager.calls, [("deliverNow", FIRST), ("deliverNow", THIRD)])

    def test_requeue(self) -> None:
        """
        C{Requeue} answers how many of the messages were in the queue;
        C{all} asks for every message.
        """
        answer = self.successResultOf(self.call(Requeue, queueIDs=[FIRST, THIRD], all=False))
        self.assertEqual(answer, {"count": 1})
        answer = self.successResultOf(self.call(Requeue, queueIDs=[], all=True))
        self.assertEqual(answer, {"count": 2})
        self.assertEqual(self.manager.calls, [("requeue", [FIRST, THIRD]), ("requeue", None)])

    def test_delete(self) -> None:
        """
        C{Delete} answers with the queue IDs removed.
        """
        answer = self.successResultOf(self.call(Delete, queueIDs=[SECOND, THIRD]))
        self.assertEqual(answer, {"removed": [SECOND]})
        self.failureResultOf(self.call(Delete, queueIDs=["x"]), InvalidQueueID)


class SocketPathTests(SynchronousTestCase):
    """
    L{controlSocketPath} and the 108-byte C{sun_path} limit.
    """

    def test_path(self) -> None:
        """
        The socket is C{private/control} in the queue directory.
        """
        self.assertEqual(controlSocketPath("/var/spool/postfix/mtaguard"), "/var/spool/postfix/mtaguard/private/control")

    def test_tooLong(self) -> None:
        """
        A path longer than 107 bytes is refused with a message naming the
        path and what to do; 107 bytes are accepted.
        """
        suffix = "/private/control"
        fits = "/" + "q" * (MAX_SOCKET_PATH - len(suffix) - 1)
        self.assertEqual(len(controlSocketPath(fits)), MAX_SOCKET_PATH)
        error = self.assertRaises(SocketPathTooLong, controlSocketPath, fits + "q")
        self.assertIn("108 bytes, longer than the 107", str(error))
        self.assertIn("use a shorter queue_directory", str(error))

    def test_serviceRefusesToStart(self) -> None:
        """
        L{mtaguard.service.SharedServices} turns a path that is too long
        into a configuration error, so the service does not start without
        its control socket.
        """
        from twisted.application.service import MultiService

        from mtaguard.config import parseConfiguration
        from mtaguard.service import SharedServices

        configuration = parseConfiguration(self.mktemp(), "", "")
        shared = SharedServices(configuration, MultiService(), None)
        error = self.assertRaises(ConfigurationError, shared.controlService, "/" + "q" * 100, FakeManager())
        self.assertIn("use a shorter queue_directory", str(error))


class AnotherServiceTests(SynchronousTestCase):
    """
    A second service on the same queue is refused before it binds a port.
    """

    def test_refused(self) -> None:
        """
        When a service answers on the control socket,
        L{mtaguard.service.SharedServices.controlService} raises a
        configuration error naming the queue.
        """
        from twisted.application.service import MultiService

        from mtaguard.config import parseConfiguration
        from mtaguard.service import SharedServices

        queue = os.path.join(shortDirectory(self), "mtaguard")
        path = controlSocketPath(queue)
        os.makedirs(os.path.dirname(path))
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(live.close)
        live.bind(path)
        live.listen(1)
        shared = SharedServices(parseConfiguration(self.mktemp(), "", ""), MultiService(), None)
        error = self.assertRaises(ConfigurationError, shared.controlService, queue, FakeManager())
        self.assertEqual(
            str(error), f"another mtaguard service is running on the queue in {queue} (it answers on {path})"
        )
        live.close()
        self.assertIsInstance(shared.controlService(queue, FakeManager()), ControlService)


def shortDirectory(testCase: Any) -> str:
    """
    A fresh directory under /tmp, short enough for a socket path.
    """
    directory = tempfile.mkdtemp(prefix="mtg-ctl-")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


class ClientCodecTests(SynchronousTestCase):
    """
    L{ControlClient} writes and reads AMP boxes, over a socket pair.
    """

    def setUp(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.ours.close)
        self.addCleanup(self.theirs.close)
        self.ours.settimeout(5)
        self.theirs.settimeout(5)
        self.client = ControlClient.fromSocket(self.ours)

    def test_request(self) -> None:
        """
        The request is the command's AMP box with C{_command} and
        C{_ask}; the answer is parsed with the command's schema.
        """
        self.theirs.sendall(amp.AmpBox({b"_answer": b"1", b"count": b"3"}).serialize())
        self.assertEqual(self.client.call(Requeue, queueIDs=[FIRST], all=False), {"count": 3})
        expected = Requeue.makeArguments({"queueIDs": [FIRST], "all": False}, None)
        expected[b"_command"] = b"Requeue"
        expected[b"_ask"] = b"1"
        self.assertEqual(self.theirs.recv(65536), expected.serialize())

    def test_declaredError(self) -> None:
        """
        An error answer with a code the command declares raises its
        exception.
        """
        self.theirs.sendall(
            amp.AmpBox(
                {b"_error": b"1", b"_error_code": b"UNKNOWN_MESSAGE", b"_error_description": b"no message"}
            ).serialize()
        )
        error = self.assertRaises(UnknownMessage, self.client.call, DeliverOne, queueID=FIRST)
        self.assertEqual(str(error), "no message")

    def test_closed(self) -> None:
        """
        A connection closed before the answer is L{ServiceUnreachable}.
        """
        self.theirs.close()
        self.assertRaises(ServiceUnreachable, self.client.call, Flush)

    def test_timeout(self) -> None:
        """
        A service that does not answer within the timeout is
        L{ServiceUnreachable}.
        """
        self.ours.settimeout(0.01)
        self.assertRaises(ServiceUnreachable, self.client.call, Flush)

    def test_notRunning(self) -> None:
        """
        Connecting where no socket is, or where nothing listens any more,
        is L{ServiceUnreachable}, saying that the service is not running.
        """
        directory = shortDirectory(self)
        path = os.path.join(directory, "control")
        error = self.assertRaises(ServiceUnreachable, ControlClient, path)
        self.assertIn("not running", str(error))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        error = self.assertRaises(ServiceUnreachable, ControlClient, path)
        self.assertIn("not running", str(error))


class DirectoryTests(SynchronousTestCase):
    """
    The socket's directory and a stale socket, on the real file system.
    """

    def test_directoryMadePrivate(self) -> None:
        """
        The directory is created mode 0700, and an existing one with a
        looser mode is made 0700.
        """
        directory = os.path.join(shortDirectory(self), "private")
        prepareDirectory(directory)
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        os.chmod(directory, 0o755)
        prepareDirectory(directory)
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)

    def test_symlinkRefused(self) -> None:
        """
        A symbolic link in the directory's place is refused.
        """
        base = shortDirectory(self)
        os.mkdir(os.path.join(base, "elsewhere"))
        os.symlink(os.path.join(base, "elsewhere"), os.path.join(base, "private"))
        self.assertRaises(ControlError, prepareDirectory, os.path.join(base, "private"))

    def test_staleRemoved(self) -> None:
        """
        A socket nothing listens on is removed.
        """
        path = os.path.join(shortDirectory(self), "control")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        removeStaleSocket(path)
        self.assertFalse(os.path.lexists(path))

    def test_liveRefused(self) -> None:
        """
        A socket another service listens on is left alone: an error.
        """
        path = os.path.join(shortDirectory(self), "control")
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(live.close)
        live.bind(path)
        live.listen(1)
        error = self.assertRaises(ControlError, removeStaleSocket, path)
        self.assertIn("another mtaguard service answers", str(error))
        self.assertTrue(os.path.exists(path))

    def test_notSocketRefused(self) -> None:
        """
        A file that is not a socket is never removed.
        """
        path = os.path.join(shortDirectory(self), "control")
        with open(path, "w") as f:
            f.write("x")
        self.assertRaises(ControlError, removeStaleSocket, path)
        self.assertTrue(os.path.exists(path))


class RunningServiceTests(TestCase):
    """
    A L{ControlService} listening on a real UNIX socket (the global
    reactor), and the commands run against it in a thread, as they run in
    their own process.
    """

    def setUp(self) -> None:
        base = shortDirectory(self)
        self.configDirectory = os.path.join(base, "etc")
        os.mkdir(self.configDirectory)
        queueDirectory = os.path.join(base, "q")
        with open(os.path.join(self.configDirectory, "main.cf"), "w") as f:
            f.write(f"queue_directory = {queueDirectory}\n")
        with open(os.path.join(self.configDirectory, "master.cf"), "w") as f:
            f.write("")
        self.queue = os.path.join(queueDirectory, "mtaguard")
        self.active = os.path.join(self.queue, "active")
        os.makedirs(self.active)
        for queueID in (FIRST, SECOND):
            with open(os.path.join(self.active, queueID), "wb") as f:
                f.write(encodeQueueFile(queueID, envelope("a@example.org", "b@example.net", arrival=1e9), CONTENT))
        self.manager = FakeManager([FIRST, SECOND])
        self.path = controlSocketPath(self.queue)
        self.service = ControlService(self.path, self.manager, reactor=reactor, log=Logger(observer=lambda e: None))

    def start(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def postqueue(self, *argv: str) -> Deferred[tuple[int, str, str]]:
        def run() -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            status = postqueue(["-c", self.configDirectory, *argv], out, err, {}, timeout=10)
            return status, out.getvalue(), err.getvalue()

        return deferToThread(run)

    def postsuper(self, *argv: str, stdin: str = "") -> Deferred[tuple[int, str, str]]:
        def run() -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            status = postsuper(["-c", self.configDirectory, *argv], out, err, {}, io.StringIO(stdin), timeout=10)
            return status, out.getvalue(), err.getvalue()

        return deferToThread(run)

    async def test_permissions(self) -> None:
        """
        The socket is mode 0600 in a directory of mode 0700, both owned by
        the service's user; stopping removes the socket.
        """
        self.start()
        info = os.lstat(self.path)
        self.assertTrue(stat.S_ISSOCK(info.st_mode))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o600)
        self.assertEqual(info.st_uid, os.geteuid())
        directory = os.stat(os.path.dirname(self.path))
        self.assertEqual(stat.S_IMODE(directory.st_mode), 0o700)
        self.assertEqual(directory.st_uid, os.geteuid())
        stopping = self.service.stopService()
        if stopping is not None:
            await stopping
        self.assertFalse(os.path.lexists(self.path))

    def test_staleSocketReplaced(self) -> None:
        """
        A socket left by a service killed with SIGKILL does not keep the
        next one from listening.
        """
        os.makedirs(os.path.dirname(self.path), 0o700)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.path)
        stale.close()
        self.start()
        return self.postqueue("-f").addCallback(self.assertEqual, (0, "", ""))

    async def test_flush(self) -> None:
        """
        C{mtaguard-postqueue -f} asks the service to flush and prints
        nothing.
        """
        self.start()
        self.assertEqual(await self.postqueue("-f"), (0, "", ""))
        self.assertEqual(self.manager.calls, [("flush", None)])

    async def test_deliverOne(self) -> None:
        """
        C{mtaguard-postqueue -i ID} asks for that message; an ID not in the
        queue is fatal.
        """
        self.start()
        self.assertEqual(await self.postqueue("-i", FIRST), (0, "", ""))
        status, out, err = await self.postqueue("-i", THIRD)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(
            err, f"mtaguard-postqueue: fatal: Cannot flush message {THIRD} - no such message in the queue\n"
        )
        status, out, err = await self.postqueue("-i", "../x")
        self.assertEqual((status, err), (1, "mtaguard-postqueue: fatal: invalid mail queue id: ../x\n"))
        self.assertEqual(self.manager.calls, [("deliverNow", FIRST), ("deliverNow", THIRD)])

    async def test_requeue(self) -> None:
        """
        C{mtaguard-postsuper -r} sends the valid queue IDs (an invalid one
        only warns) and prints Postfix's C{Requeued:} count; C{-r ALL}
        asks for every message.
        """
        self.start()
        status, out, err = await self.postsuper("-r", FIRST, "-r", "-", stdin=f"{THIRD}\nbad\n")
        self.assertEqual((status, out), (0, ""))
        self.assertEqual(
            err,
            "mtaguard-postsuper: warning: invalid mail queue id: bad\n"
            "mtaguard-postsuper: Requeued: 1 message\n",
        )
        status, out, err = await self.postsuper("-r", "ALL")
        self.assertEqual((status, err), (0, "mtaguard-postsuper: Requeued: 2 messages\n"))
        self.assertEqual(self.manager.calls, [("requeue", [FIRST, THIRD]), ("requeue", None)])

    async def test_deleteThroughService(self) -> None:
        """
        While the service runs, C{mtaguard-postsuper -d} has the service
        delete (it forgets the messages), in batches for C{ALL}.
        """
        self.start()
        status, out, err = await self.postsuper("-d", FIRST)
        self.assertEqual(
            (status, err), (0, f"mtaguard-postsuper: {FIRST}: removed\nmtaguard-postsuper: Deleted: 1 message\n")
        )
        status, out, err = await self.postsuper("-d", "ALL")
        self.assertEqual(
            (status, err), (0, f"mtaguard-postsuper: {SECOND}: removed\nmtaguard-postsuper: Deleted: 1 message\n")
        )
        self.assertEqual(self.manager.calls, [("delete", [FIRST]), ("delete", [FIRST, SECOND])])

    async def test_batches(self) -> None:
        """
        More queue IDs than one AMP box may carry go in several commands.
        """
        self.start()
        many = [f"4dFV{n:04d}00z1" for n in range(BATCH + 5)]
        status, out, err = await self.postsuper("-r", "-", stdin="\n".join(many))
        self.assertEqual(status, 0, err)
        self.assertEqual([len(ids) for name, ids in self.manager.calls], [BATCH, 5])

    async def test_noService(self) -> None:
        """
        With no service: C{-f}, C{-i} and C{-r} fail saying it is not
        running; C{-d} deletes directly.
        """
        for argv, start in [
            (("-f",), "Cannot flush mail queue - "),
            (("-i", FIRST), f"Cannot flush message {FIRST} - "),
        ]:
            status, out, err = await self.postqueue(*argv)
            self.assertEqual((status, out), (1, ""))
            self.assertEqual(
                err,
                f"mtaguard-postqueue: fatal: {start}the mtaguard service is not running"
                f" (nothing answers on {self.path})\n",
            )
        status, out, err = await self.postsuper("-r", "ALL")
        self.assertEqual(status, 1)
        self.assertIn("fatal: Cannot requeue - the mtaguard service is not running", err)
        status, out, err = await self.postsuper("-d", FIRST)
        self.assertEqual(status, 0)
        self.assertEqual(sorted(os.listdir(self.active)), [SECOND])
        self.assertEqual(self.manager.calls, [])
