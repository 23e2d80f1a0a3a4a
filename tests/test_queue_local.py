"""
Tests for L{mtaguard.queue._maildir} and L{mtaguard.queue._local}: local
delivery into Maildirs, and its crash safety.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mtaguard.queue import Envelope, ManualWorker, QueueStore, SynchronousWorker, encodeQueueFile, parseQueueFile
from mtaguard.queue._format import RecipientStatus
from mtaguard.queue._local import LocalDeliveryManager, formatDelay
from mtaguard.queue._maildir import MaildirAgent, mailboxName

ARRIVAL = 1_764_000_000.0


def anEnvelope(
    *recipients: str, arrival: float = ARRIVAL, sender: str = "sender@client.example"
) -> Envelope:
    """
    @return: an envelope from C{sender} to C{recipients}, arrived at
        C{arrival}.
    """
    return Envelope(
        sender=sender,
        recipients=recipients,
        parameters=(),
        clientAddress="192.0.2.7",
        clientPort=40123,
        clientName="unknown",
        helo="client.example",
        protocol="ESMTP",
        tls=False,
        authUser=None,
        arrival=arrival,
    )


CONTENT = b"Subject: hello\r\n\r\nbody\r\n"


def isLocal(address: str) -> bool:
    """
    Local recipients are those at C{mx.example}.
    """
    return address.lower().endswith("@mx.example")


class MailboxNameTests(SynchronousTestCase):
    """
    L{mailboxName} maps local parts to safe, distinct directory names.
    """

    def test_lowerCased(self) -> None:
        """
        The local part is lower-cased and the domain dropped.
        """
        self.assertEqual(mailboxName("Joe.Bloggs@MX.example"), "joe.bloggs")

    def test_unsafeEscaped(self) -> None:
        """
        Path separators, dot-files, NUL and non-ASCII are escaped, so no name
        can leave the maildir directory, and distinct local parts stay
        distinct.
        """
        self.assertEqual(mailboxName("../etc@x"), "%2E.%2Fetc")
        self.assertEqual(mailboxName(".@x"), "%2E")
        self.assertEqual(mailboxName("a/b@x"), "a%2Fb")
        self.assertEqual(mailboxName("a\x00@x"), "a%00")
        self.assertEqual(mailboxName("ü@x"), "%C3%BC")
        self.assertEqual(mailboxName("@x"), "%")
        self.assertNotEqual(mailboxName("a%2Fb@x"), mailboxName("a/b@x"))

    def test_long(self) -> None:
        """
        Very long local parts are cut with a hash, staying distinct.
        """
        first = mailboxName("a" * 300 + "1@x")
        second = mailboxName("a" * 300 + "2@x")
        self.assertLessEqual(len(first), 200)
        self.assertNotEqual(first, second)


class MaildirAgentTests(SynchronousTestCase):
    """
    L{MaildirAgent} delivers with Maildir's protocol.
    """

    def test_deliver(self) -> None:
        """
        The message lands in C{new/} with C{Return-Path} and C{Delivered-To}
        first and UNIX line endings; C{tmp/} is left empty; the file and
        C{new/} are fsync'ed.
        """
        syncs: list[int] = []

        def fsync(descriptor: int) -> None:
            syncs.append(descriptor)
            os.fsync(descriptor)

        data = self.mktemp()
        agent = MaildirAgent(data, hostname="mx:1/2", fsync=fsync)
        queued = parseQueueFile(encodeQueueFile("4dFVrw1s5xz1", anEnvelope("Joe@mx.example"), CONTENT))
        path = agent.deliver(queued, "Joe@mx.example", ARRIVAL + 0.25)
        mailbox = os.path.join(data, "maildir", "joe")
        self.assertEqual(os.path.dirname(path), os.path.join(mailbox, "new"))
        self.assertTrue(os.path.basename(path).startswith("1764000000.M250000P"))
        self.assertTrue(os.path.basename(path).endswith(".mx\\0721\\0572"))
        with open(path, "rb") as f:
            self.assertEqual(
                f.read(),
                b"Return-Path: <sender@client.example>\nDelivered-To: Joe@mx.example\nSubject: hello\n\nbody\n",
            )
        self.assertEqual(os.listdir(os.path.join(mailbox, "tmp")), [])
        self.assertEqual(os.listdir(os.path.join(mailbox, "cur")), [])
        # New mailbox (2 directories), the file, new/.
        self.assertEqual(len(syncs), 4)
        agent.deliver(queued, "joe@mx.example", ARRIVAL + 0.25)
        self.assertEqual(len(os.listdir(os.path.join(mailbox, "new"))), 2)
        self.assertEqual(len(syncs), 6)


class ManagerTestsMixin:
    """
    A store, an agent and a manager over temporary directories.
    """

    def setUpManager(self, worker: Any) -> None:
        """
        Build the store, agent and manager, sharing C{worker}.
        """
        test: SynchronousTestCase = self  # type: ignore[assignment]
        self.clock = Clock()
        self.clock.advance(ARRIVAL)
        self.worker = worker
        self.queueDirectory = test.mktemp()
        self.dataDirectory = test.mktemp()
        self.store = QueueStore(self.queueDirectory, reactor=self.clock, worker=worker)
        self.store.start()
        test.addCleanup(self.store.stop)
        self.events: list[dict[str, Any]] = []
        self.manager = self.makeManager()

    def makeManager(self, worker: Any = None) -> LocalDeliveryManager:
        """
        @return: a new manager over the same directories (a restart).
        """
        return LocalDeliveryManager(
            self.store,
            MaildirAgent(self.dataDirectory, hostname="mx"),
            isLocal=isLocal,
            reactor=self.clock,
            log=Logger(observer=self.events.append),
            worker=worker,
        )

    def commit(self, *recipients: str) -> str:
        """
        Queue a message for C{recipients}, running the worker as needed.

        @return: its queue ID.
        """
        test: SynchronousTestCase = self  # type: ignore[assignment]
        message = self.store.newMessage(anEnvelope(*recipients))
        message.write(CONTENT)
        committed = message.commit()
        if isinstance(self.worker, ManualWorker):
            self.worker.runAll()
        return test.successResultOf(committed)

    def mailbox(self, localPart: str) -> list[bytes]:
        """
        @return: the messages in C{localPart}'s Maildir C{new/}.
        """
        new = os.path.join(self.dataDirectory, "maildir", localPart, "new")
        if not os.path.isdir(new):
            return []
        result = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                result.append(f.read())
        return result

    def lines(self) -> list[str]:
        """
        @return: the rendered log lines.
        """
        return [formatEvent(event) for event in self.events]


class LocalDeliveryTests(ManagerTestsMixin, SynchronousTestCase):
    """
    L{LocalDeliveryManager} delivers local recipients and keeps the others.
    """

    def setUp(self) -> None:
        self.setUpManager(SynchronousWorker())

    def test_allLocal(self) -> None:
        """
        A message for local recipients is delivered to each Maildir, logged
        as Postfix logs it, and removed from the queue.
        """
        queueID = self.commit("alice@mx.example", "Bob@MX.example")
        self.clock.advance(0.5)
        self.manager.queued(queueID)
        self.assertEqual(len(self.mailbox("alice")), 1)
        self.assertEqual(len(self.mailbox("bob")), 1)
        self.assertEqual(os.listdir(self.store.activeDirectory), [])
        self.assertEqual(
            self.lines(),
            [
                f"{queueID}: from=<sender@client.example>, size={len(CONTENT)}, nrcpt=2 (queue active)",
                f"{queueID}: to=<alice@mx.example>, relay=local, delay=0.5, delays=0.5/0/0/0, dsn=2.0.0, "
                "status=sent (delivered to maildir)",
                f"{queueID}: to=<Bob@MX.example>, relay=local, delay=0.5, delays=0.5/0/0/0, dsn=2.0.0, "
                "status=sent (delivered to maildir)",
                f"{queueID}: removed",
            ],
        )
        self.assertEqual(self.events[1]["recipient"], "alice@mx.example")

    def test_remoteStaysPending(self) -> None:
        """
        Recipients that are not local stay pending in C{active/}; the local
        one is marked delivered in the queue file.
        """
        queueID = self.commit("alice@mx.example", "carol@remote.example")
        self.manager.queued(queueID)
        self.assertEqual(len(self.mailbox("alice")), 1)
        with open(os.path.join(self.store.activeDirectory, queueID), "rb") as f:
            header = parseQueueFile(f.read()).header
        self.assertEqual(
            [(r.address, r.status) for r in header.recipients],
            [("alice@mx.example", RecipientStatus.DELIVERED), ("carol@remote.example", RecipientStatus.PENDING)],
        )
        # Queued again (a restart): nothing delivered twice.
        self.makeManager().queued(queueID)
        self.assertEqual(len(self.mailbox("alice")), 1)
        # A remote recipient pending: qmgr's line is the queue manager's.
        self.assertFalse([line for line in self.lines() if "(queue active)" in line])

    def test_failureDefers(self) -> None:
        """
        A Maildir that cannot be written leaves the recipient pending and
        logs a deferral.
        """
        os.makedirs(os.path.join(self.dataDirectory, "maildir"))
        # A file where the mailbox directory should be.
        with open(os.path.join(self.dataDirectory, "maildir", "alice"), "w"):
            pass
        queueID = self.commit("alice@mx.example")
        self.manager.queued(queueID)
        self.assertEqual(os.listdir(self.store.activeDirectory), [queueID])
        self.assertIn("dsn=4.3.0, status=deferred (maildir delivery failed:", self.lines()[1])

    def test_corruptMoved(self) -> None:
        """
        A queue file that cannot be parsed is moved to C{corrupt/} with a
        warning.
        """
        path = os.path.join(self.store.activeDirectory, "4dFVrw1s5xz1")
        with open(path, "wb") as f:
            f.write(b"garbage")
        self.successResultOf(self.manager.start())
        self.assertEqual(os.listdir(os.path.join(self.queueDirectory, "corrupt")), ["4dFVrw1s5xz1"])
        self.assertIn("corrupt queue file", self.lines()[0])


class RecipientsHintTests(ManagerTestsMixin, SynchronousTestCase):
    """
    L{LocalDeliveryManager.queued} with the envelope's recipients skips
    reading relay-only messages back.
    """

    def setUp(self) -> None:
        self.setUpManager(ManualWorker())

    def test_relayOnlyNotRead(self) -> None:
        """
        Given recipients none of which is local, the manager schedules no
        work at all: the file stays in C{active/} for the relay transport.
        """
        queueID = self.commit("carol@remote.example", "dave@other.example")
        self.manager.queued(queueID, ["carol@remote.example", "dave@other.example"])
        self.assertEqual(len(self.worker.pending), 0)
        self.assertEqual(os.listdir(self.store.activeDirectory), [queueID])

    def test_localRecipientDelivered(self) -> None:
        """
        Given recipients with a local one, the message is read and its local
        recipients delivered as without them.
        """
        queueID = self.commit("alice@mx.example", "carol@remote.example")
        self.manager.queued(queueID, ("carol@remote.example", "alice@mx.example"))
        self.worker.runAll()
        self.assertEqual(len(self.mailbox("alice")), 1)
        self.assertEqual(os.listdir(self.store.activeDirectory), [queueID])

    def test_withoutRecipientsReads(self) -> None:
        """
        The old call, without recipients, still reads the file to find the
        local ones (here none).
        """
        queueID = self.commit("carol@remote.example")
        self.manager.queued(queueID)
        self.assertEqual(len(self.worker.pending), 1)
        self.worker.runAll()
        self.assertEqual(os.listdir(self.store.activeDirectory), [queueID])
        self.assertEqual(self.lines(), [])

    def test_oneStringRefused(self) -> None:
        """
        A single address instead of a collection is a programming error
        (its characters would be taken for recipients).
        """
        self.assertRaises(TypeError, self.manager.queued, "4dFVrw1s5xz1", "alice@mx.example")


class CrashTests(ManagerTestsMixin, SynchronousTestCase):
    """
    A crash at any point of local delivery loses no message: a restart
    delivers each acknowledged message at least once.
    """

    def setUp(self) -> None:
        self.setUpManager(ManualWorker())

    def restart(self) -> None:
        """
        Abandon the worker's held jobs (the crash) and run a new manager's
        start-up scan to completion.
        """
        self.worker.pending.clear()
        manager = self.makeManager(SynchronousWorker())
        self.successResultOf(manager.start())

    def test_crashAtEveryStep(self) -> None:
        """
        Crashing after each number of worker steps, then restarting, always
        ends with every local recipient delivered at least once, the queue
        empty and nothing delivered more than twice.
        """
        steps = 0
        while True:
            self.setUpManager(ManualWorker())
            queueID = self.commit("alice@mx.example", "bob@mx.example")
            self.manager.queued(queueID)
            for _ in range(steps):
                if not self.worker.pending:
                    break
                self.worker.runNext()
            finishedBeforeCrash = not self.worker.pending
            self.restart()
            self.assertIn(len(self.mailbox("alice")), (1, 2))
            self.assertIn(len(self.mailbox("bob")), (1, 2))
            self.assertEqual(os.listdir(self.store.activeDirectory), [])
            if finishedBeforeCrash:
                break
            steps += 1
        # read, alice, bob, unlink
        self.assertEqual(steps, 4)

    def test_crashBeforeMarkDurable(self) -> None:
        """
        A crash after the Maildir rename but before the done marker reached
        the disk delivers that recipient again after the restart: a
        duplicate, never a loss.
        """
        queueID = self.commit("alice@mx.example")
        path = os.path.join(self.store.activeDirectory, queueID)
        crash = RuntimeError("crash")

        def lostFsync(descriptor: int) -> None:
            # The pwrite never reached the disk.
            with open(path, "rb") as f:
                offset = parseQueueFile(f.read()).header.recipients[0].statusOffset
            os.pwrite(descriptor, RecipientStatus.PENDING.value, offset)
            raise crash

        manager = self.makeManager(SynchronousWorker())
        manager._fsync = lostFsync
        manager.queued(queueID)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(len(self.mailbox("alice")), 1)
        self.assertEqual(os.listdir(self.store.activeDirectory), [queueID])
        self.restart()
        self.assertEqual(len(self.mailbox("alice")), 2)
        self.assertEqual(os.listdir(self.store.activeDirectory), [])

    def test_crashBeforeRemoval(self) -> None:
        """
        A crash after every recipient was marked done but before the file
        was removed removes it at restart without delivering again.
        """
        queueID = self.commit("alice@mx.example")
        self.manager.queued(queueID)
        self.worker.runNext()  # read
        self.worker.runNext()  # deliver to alice and mark done
        self.assertEqual(len(self.worker.pending), 1)  # the unlink
        self.restart()
        self.assertEqual(len(self.mailbox("alice")), 1)
        self.assertEqual(os.listdir(self.store.activeDirectory), [])
        self.assertIn(f"{queueID}: removed", self.lines())


class FormatDelayTests(SynchronousTestCase):
    """
    L{formatDelay} follows Postfix's C{delay=} formatting.
    """

    def test_values(self) -> None:
        """
        Whole seconds from 10, one decimal from 1, two below, C{0} for none.
        """
        for seconds, text in [(0, "0"), (0.001, "0"), (0.05, "0.05"), (0.1, "0.1"), (1.23, "1.2"), (12.7, "12")]:
            self.assertEqual(formatDelay(seconds), text)
