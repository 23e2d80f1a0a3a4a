"""
Tests for L{mtaguard.control}: C{mtaguard-postqueue} and
C{mtaguard-postsuper} reading and deleting from the queue directory.
"""

from __future__ import annotations

import io
import json
import os
import time

from twisted.trial.unittest import SynchronousTestCase

from mtaguard.control import _queueview
from mtaguard.control._postqueue import run as postqueue
from mtaguard.control._postsuper import run as postsuper
from mtaguard.control._queueview import (
    QueueEntry,
    deleteMessage,
    formatJSON,
    formatMailq,
    listQueue,
)
from mtaguard.queue import (
    Envelope,
    QueueStore,
    RecipientStatus,
    SynchronousWorker,
    encodeQueueFile,
    parseQueueFile,
)

FIRST = "4dFVrw1s5xz1"
SECOND = "4dFVrx0000z2"
CONTENT = b"Subject: hi\r\n\r\nbody\r\n"
BIG = b"x" * 2998 + b"\r\n"


def envelope(sender: str, *recipients: str, arrival: float) -> Envelope:
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


class QueueDirectoryMixin:
    """
    A configuration directory whose C{queue_directory} is a temporary
    directory, and helpers to put queue files in it.
    """

    def setUp(self) -> None:
        self.configDirectory = self.mktemp()  # type: ignore[attr-defined]
        os.makedirs(self.configDirectory)
        queueDirectory = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        with open(os.path.join(self.configDirectory, "main.cf"), "w") as f:
            f.write(f"queue_directory = {queueDirectory}\n")
        with open(os.path.join(self.configDirectory, "master.cf"), "w") as f:
            f.write("")
        self.queue = os.path.join(queueDirectory, "mtaguard")
        self.active = os.path.join(self.queue, "active")
        os.makedirs(self.active)
        os.makedirs(os.path.join(self.queue, "incoming"))

    def put(self, queueID: str, envelope: Envelope, content: bytes, directory: str = "active") -> str:
        path = os.path.join(self.queue, directory, queueID)
        with open(path, "wb") as f:
            f.write(encodeQueueFile(queueID, envelope, content))
        return path

    def mark(self, queueID: str, address: str, status: RecipientStatus) -> None:
        path = os.path.join(self.active, queueID)
        with open(path, "r+b") as f:
            header = parseQueueFile(f.read()).header
            (recipient,) = [r for r in header.recipients if r.address == address]
            f.seek(recipient.statusOffset)
            f.write(status.value)

    def crafted(self) -> None:
        """
        Two messages: one with a delivered recipient, one from the null
        sender to an address whose local part needs quoting.
        """
        self.put(
            FIRST,
            envelope(
                "joe@example.org", "a@example.net", "b@example.net", "c@example.net",
                arrival=1764000000.25,
            ),
            CONTENT,
        )
        self.mark(FIRST, "b@example.net", RecipientStatus.DELIVERED)
        self.put(SECOND, envelope("", "x y@example.com", arrival=1764003725.9), BIG)

    def postqueue(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = postqueue(["-c", self.configDirectory, *argv], out, err, {})
        return status, out.getvalue(), err.getvalue()

    def postsuper(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = postsuper(
            ["-c", self.configDirectory, *argv], out, err, {}, io.StringIO(stdin)
        )
        return status, out.getvalue(), err.getvalue()

    def remaining(self) -> list[str]:
        return sorted(os.listdir(self.active))


RECIPIENT_INDENT = " " * 47

MAILQ = (
    "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
    "4dFVrw1s5xz1*           21 Mon Nov 24 16:00:00 joe@example.org\n"
    + RECIPIENT_INDENT + "a@example.net\n"
    + RECIPIENT_INDENT + "c@example.net\n"
    "\n"
    "4dFVrx0000z2*         3000 Mon Nov 24 17:02:05 MAILER-DAEMON\n"
    + RECIPIENT_INDENT + '"x y"@example.com\n'
    "\n"
    "-- 2 Kbytes in 2 Requests.\n"
)


class QueueViewTests(QueueDirectoryMixin, SynchronousTestCase):
    """
    L{listQueue}, L{formatMailq} and L{formatJSON}.
    """

    def test_list(self) -> None:
        """
        L{listQueue} reads each file's envelope, oldest first, with only the
        pending recipients.
        """
        self.crafted()
        self.assertEqual(
            list(listQueue(self.queue)),
            [
                QueueEntry(
                    "active", FIRST, len(CONTENT), 1764000000.25, "joe@example.org",
                    ("a@example.net", "c@example.net"),
                ),
                QueueEntry("active", SECOND, 3000, 1764003725.9, "", ("x y@example.com",)),
            ],
        )

    def test_mailqExact(self) -> None:
        """
        L{formatMailq} writes Postfix's C{postqueue -p} output with long
        queue IDs byte for byte: the heading, one block per message (queue
        ID with C{*} for C{active/}, size, C{asctime} arrival without the
        year, sender; then the recipients in the last column), blank lines
        between blocks, and the total in Kbytes.
        """
        self.crafted()
        self.assertEqual("".join(formatMailq(listQueue(self.queue), time.gmtime)), MAILQ)

    def test_oneRequest(self) -> None:
        """
        One message is "1 Request", without the plural.
        """
        self.put(FIRST, envelope("joe@example.org", "a@example.net", arrival=1764000000.0), CONTENT)
        output = "".join(formatMailq(listQueue(self.queue), time.gmtime))
        self.assertTrue(output.endswith("\n\n-- 0 Kbytes in 1 Request.\n"), output)

    def test_emptyQueue(self) -> None:
        """
        An empty queue is reported as Postfix does.
        """
        self.assertEqual("".join(formatMailq(listQueue(self.queue))), "Mail queue is empty\n")

    def test_missingDirectory(self) -> None:
        """
        A queue directory that does not exist yet (the service never ran) is
        an empty queue.
        """
        self.assertEqual(list(listQueue(os.path.join(self.queue, "nonexistent"))), [])

    def test_doneMessagesNotListed(self) -> None:
        """
        A file without pending recipients (done, about to be removed) is not
        listed.
        """
        self.put(FIRST, envelope("joe@example.org", "a@example.net", arrival=1.0), CONTENT)
        self.mark(FIRST, "a@example.net", RecipientStatus.DELIVERED)
        self.assertEqual(list(listQueue(self.queue)), [])

    def test_corruptSkipped(self) -> None:
        """
        Files that do not parse, are truncated or carry another queue ID are
        skipped with a warning each; the other messages are listed.
        """
        self.crafted()
        third, fourth, fifth = "4dFVry0000z3", "4dFVry0000z4", "4dFVry0000z5"
        with open(os.path.join(self.active, third), "wb") as f:
            f.write(b"garbage\n")
        path = self.put(fourth, envelope("s@example.org", "r@example.net", arrival=1.0), CONTENT)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 1)
        self.put(fifth, envelope("s@example.org", "r@example.net", arrival=1.0), CONTENT)
        os.rename(os.path.join(self.active, fifth), os.path.join(self.active, "4dFVry0000z6"))
        warnings: list[str] = []
        entries = list(listQueue(self.queue, warnings.append))
        self.assertEqual([e.queueID for e in entries], [FIRST, SECOND])
        self.assertEqual(len(warnings), 3, warnings)
        self.assertTrue(warnings[0].startswith(f"active/{third}: skipping corrupt queue file: "))
        self.assertIn("content is 20 bytes, header says 21", warnings[1])
        self.assertIn("queue ID", warnings[2])

    def test_foreignNamesIgnored(self) -> None:
        """
        Names that are not queue IDs (editor leftovers, dot files) are not
        read at all.
        """
        self.crafted()
        with open(os.path.join(self.active, ".nfs0001"), "wb") as f:
            f.write(b"garbage\n")
        warnings: list[str] = []
        self.assertEqual(len(list(listQueue(self.queue, warnings.append))), 2)
        self.assertEqual(warnings, [])

    def test_removedWhileListing(self) -> None:
        """
        A file removed between the directory listing and its reading (a
        delivery finished) is skipped without a warning.
        """
        self.crafted()
        realListQueueIDs = _queueview.listQueueIDs

        def listThenRemove(queueDirectory: str, queueName: str = "active") -> list[str]:
            names = realListQueueIDs(queueDirectory, queueName)
            os.unlink(os.path.join(self.active, FIRST))
            return names

        self.patch(_queueview, "listQueueIDs", listThenRemove)
        warnings: list[str] = []
        entries = list(listQueue(self.queue, warnings.append))
        self.assertEqual([e.queueID for e in entries], [SECOND])
        self.assertEqual(warnings, [])

    def test_incomingIgnored(self) -> None:
        """
        Messages in C{incoming/} were never acknowledged and are not listed.
        """
        self.put(FIRST, envelope("joe@example.org", "a@example.net", arrival=1.0), CONTENT, "incoming")
        self.assertEqual(list(listQueue(self.queue)), [])

    def test_json(self) -> None:
        """
        L{formatJSON} writes one object per line with Postfix's
        C{postqueue -j} field names and layout.
        """
        self.crafted()
        lines = [formatJSON(entry) for entry in listQueue(self.queue)]
        self.assertEqual(
            lines[0],
            '{"queue_name": "active", "queue_id": "4dFVrw1s5xz1", "arrival_time": 1764000000, '
            '"message_size": 21, "forced_expire": false, "sender": "joe@example.org", '
            '"recipients": [{"address": "a@example.net"}, {"address": "c@example.net"}]}\n',
        )
        self.assertEqual(
            json.loads(lines[1]),
            {
                "queue_name": "active",
                "queue_id": SECOND,
                "arrival_time": 1764003725,
                "message_size": 3000,
                "forced_expire": False,
                "sender": "MAILER-DAEMON",
                "recipients": [{"address": '"x y"@example.com'}],
            },
        )

    def test_jsonEscapes(self) -> None:
        """
        Quotes, backslashes and non-ASCII text in addresses are valid JSON.
        """
        entry = QueueEntry("active", FIRST, 1, 0.0, 'a"b\\c@ex.org', ("jö@exämple.org",))
        decoded = json.loads(formatJSON(entry))
        self.assertEqual(decoded["sender"], '"a\\"b\\\\c"@ex.org')
        self.assertEqual(decoded["recipients"], [{"address": "jö@exämple.org"}])


class StoreWrittenTests(SynchronousTestCase):
    """
    The queue view reads what L{QueueStore} commits.
    """

    def test_committed(self) -> None:
        """
        A message committed by the store is listed with its size, sender and
        recipients.
        """
        from twisted.internet.task import Clock

        clock = Clock()
        clock.advance(1764000000)
        directory = self.mktemp()
        store = QueueStore(directory, reactor=clock, worker=SynchronousWorker())
        store.startService()
        self.addCleanup(store.stopService)
        message = store.newMessage(envelope("s@example.org", "r@example.net", arrival=clock.seconds()))
        message.write(CONTENT)
        queueID = self.successResultOf(message.commit())
        (entry,) = listQueue(directory)
        self.assertEqual(
            entry,
            QueueEntry("active", queueID, len(CONTENT), 1764000000.0, "s@example.org", ("r@example.net",)),
        )


class PostqueueTests(QueueDirectoryMixin, SynchronousTestCase):
    """
    The C{mtaguard-postqueue} command.
    """

    def setUp(self) -> None:
        super().setUp()
        self.patch(time, "localtime", time.gmtime)

    def test_p(self) -> None:
        """
        C{-p} prints the queue in C{mailq} format.
        """
        self.crafted()
        self.assertEqual(self.postqueue("-p"), (0, MAILQ, ""))

    def test_pEmpty(self) -> None:
        """
        C{-p} on an empty queue prints C{Mail queue is empty}.
        """
        self.assertEqual(self.postqueue("-p"), (0, "Mail queue is empty\n", ""))

    def test_json(self) -> None:
        """
        C{--json} and C{-j} print one JSON object per message; nothing for an
        empty queue.
        """
        self.assertEqual(self.postqueue("--json"), (0, "", ""))
        self.crafted()
        status, out, err = self.postqueue("--json")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual([json.loads(line)["queue_id"] for line in out.splitlines()], [FIRST, SECOND])
        self.assertEqual(self.postqueue("-j"), (status, out, err))

    def test_corruptWarning(self) -> None:
        """
        A corrupt file is reported on standard error and left out.
        """
        self.crafted()
        with open(os.path.join(self.active, "4dFVry0000z3"), "wb") as f:
            f.write(b"garbage\n")
        status, out, err = self.postqueue("-p")
        self.assertEqual((status, out), (0, MAILQ))
        self.assertTrue(
            err.startswith("mtaguard-postqueue: warning: active/4dFVry0000z3: skipping corrupt queue file: "),
            err,
        )

    def test_needsService(self) -> None:
        """
        C{-f} and C{-i} are requests to the running service; when it cannot
        be reached they fail saying so, and change nothing.  C{-s}
        (per-site flush) is not supported.  (L{tests.test_control_socket}
        runs them against a service.)
        """
        self.crafted()
        for argv, start in [
            (("-f",), "Cannot flush mail queue - "),
            (("-i", FIRST), f"Cannot flush message {FIRST} - "),
            (("-s", "example.net"), "Cannot flush mail queue for site example.net - per-site flush"),
        ]:
            status, out, err = self.postqueue(*argv)
            self.assertEqual((status, out), (1, ""))
            self.assertTrue(err.startswith(f"mtaguard-postqueue: fatal: {start}"), err)
        self.assertEqual(self.remaining(), [FIRST, SECOND])

    def test_usage(self) -> None:
        """
        No mode, two modes, an operand or an unknown option is fatal.
        """
        for argv in [(), ("-p", "-j"), ("-p", "extra"), ("-x",)]:
            status, out, err = self.postqueue(*argv)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertIn("mtaguard-postqueue: fatal: ", err)

    def test_badConfiguration(self) -> None:
        """
        A configuration directory without main.cf is a fatal error.
        """
        out, err = io.StringIO(), io.StringIO()
        status = postqueue(["-c", self.mktemp(), "-p"], out, err, {})
        self.assertEqual(status, 1)
        self.assertTrue(err.getvalue().startswith("mtaguard-postqueue: fatal: open "), err.getvalue())

    def test_mailConfig(self) -> None:
        """
        Without C{-c}, C{$MAIL_CONFIG} names the configuration directory.
        """
        out, err = io.StringIO(), io.StringIO()
        status = postqueue(["-p"], out, err, {"MAIL_CONFIG": self.configDirectory})
        self.assertEqual((status, out.getvalue()), (0, "Mail queue is empty\n"))


class PostsuperTests(QueueDirectoryMixin, SynchronousTestCase):
    """
    The C{mtaguard-postsuper} command.
    """

    def test_deleteOne(self) -> None:
        """
        C{-d ID} unlinks that message's file and reports it as Postfix does.
        """
        self.crafted()
        self.assertEqual(
            self.postsuper("-d", FIRST),
            (
                0,
                "",
                f"mtaguard-postsuper: {FIRST}: removed\nmtaguard-postsuper: Deleted: 1 message\n",
            ),
        )
        self.assertEqual(self.remaining(), [SECOND])

    def test_deleteAll(self) -> None:
        """
        C{-d ALL} removes every message in C{active/}, and nothing in
        C{incoming/}.
        """
        self.crafted()
        incoming = self.put("4dFVrz0000z9", envelope("s@example.org", "r@example.net", arrival=1.0), CONTENT, "incoming")
        self.assertEqual(
            self.postsuper("-d", "ALL"),
            (
                0,
                "",
                f"mtaguard-postsuper: {FIRST}: removed\n"
                f"mtaguard-postsuper: {SECOND}: removed\n"
                "mtaguard-postsuper: Deleted: 2 messages\n",
            ),
        )
        self.assertEqual(self.remaining(), [])
        self.assertTrue(os.path.exists(incoming))

    def test_deleteStdin(self) -> None:
        """
        C{-d -} reads queue IDs from standard input, one per line.
        """
        self.crafted()
        status, out, err = self.postsuper("-d", "-", stdin=f"{SECOND}\n\n  {FIRST}  \n")
        self.assertEqual(status, 0)
        self.assertEqual(
            err,
            f"mtaguard-postsuper: {SECOND}: removed\n"
            f"mtaguard-postsuper: {FIRST}: removed\n"
            "mtaguard-postsuper: Deleted: 2 messages\n",
        )
        self.assertEqual(self.remaining(), [])

    def test_allOnlyAsArgument(self) -> None:
        """
        A line C{ALL} on standard input is an invalid queue ID, not every
        message.
        """
        self.crafted()
        status, out, err = self.postsuper("-d", "-", stdin=f"ALL\n{FIRST}\n")
        self.assertEqual(
            err,
            "mtaguard-postsuper: warning: invalid mail queue id: ALL\n"
            f"mtaguard-postsuper: {FIRST}: removed\n"
            "mtaguard-postsuper: Deleted: 1 message\n",
        )
        self.assertEqual(self.remaining(), [SECOND])

    def test_deleteMissing(self) -> None:
        """
        A queue ID without a file (delivered meanwhile) is not an error and
        not counted; with nothing deleted, nothing is printed.
        """
        self.assertEqual(self.postsuper("-d", FIRST), (0, "", ""))

    def test_invalidID(self) -> None:
        """
        Names that are not queue IDs are refused with Postfix's warning and
        never reach the file system.
        """
        self.crafted()
        status, out, err = self.postsuper("-d", "not-an-id", "-d", FIRST)
        self.assertEqual(status, 0)
        self.assertEqual(
            err,
            "mtaguard-postsuper: warning: invalid mail queue id: not-an-id\n"
            f"mtaguard-postsuper: {FIRST}: removed\n"
            "mtaguard-postsuper: Deleted: 1 message\n",
        )
        self.assertEqual(self.remaining(), [SECOND])

    def test_traversal(self) -> None:
        """
        A path that leads out of C{active/} is refused, on the command line
        and on standard input, and the file it names is left alone.
        """
        self.crafted()
        victim = self.put(SECOND, envelope("s@example.org", "r@example.net", arrival=1.0), CONTENT, "incoming")
        traversals = [f"../incoming/{SECOND}", f"{SECOND}/../{SECOND}", "/etc/passwd", "..", ""]
        status, out, err = self.postsuper(
            "-d", traversals[0], "-d", "-", stdin="\n".join(traversals[1:]) + "\n"
        )
        self.assertEqual(status, 0)
        self.assertEqual(err.count("warning: invalid mail queue id: "), 4, err)
        self.assertTrue(os.path.exists(victim))
        self.assertEqual(self.remaining(), [FIRST, SECOND])
        self.assertRaises(ValueError, deleteMessage, self.queue, f"../incoming/{SECOND}")

    def test_requeue(self) -> None:
        """
        C{-r} needs the running service: without one it fails saying so
        and changes nothing.
        """
        self.crafted()
        for value in (FIRST, "ALL"):
            status, out, err = self.postsuper("-r", value)
            self.assertEqual((status, out), (1, ""))
            self.assertTrue(err.startswith("mtaguard-postsuper: fatal: Cannot requeue - "), err)
        self.assertEqual(self.remaining(), [FIRST, SECOND])

    def test_usage(self) -> None:
        """
        No action, an unknown option or an unknown queue name is fatal.
        """
        for argv in [(), ("-x",), ("-d", "ALL", "deferred")]:
            status, out, err = self.postsuper(*argv)
            self.assertEqual(status, 1, argv)
            self.assertIn("mtaguard-postsuper: fatal: ", err)

    def test_unlinkOnly(self) -> None:
        """
        Deleting a message that a delivery has open only unlinks it: the
        open file stays readable and writable (the delivery agent's status
        write lands on the unlinked inode).
        """
        self.crafted()
        with open(os.path.join(self.active, FIRST), "r+b") as delivering:
            self.assertEqual(self.postsuper("-d", FIRST)[0], 0)
            self.assertTrue(parseQueueFile(delivering.read()).header.pending)
        self.assertEqual(self.remaining(), [SECOND])


