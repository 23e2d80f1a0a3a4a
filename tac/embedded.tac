# An application that keeps its own twisted.mail IMessageDelivery and puts
# mtaguard's hardened SMTP server in front of it:
#
#   twistd -ny tac/embedded.tac      (listens on 127.0.0.1:2526)
#
# MTAGUARD_LISTEN, a Twisted endpoint string, listens elsewhere.
#
# Messages are written to ./embedded-mail/<n>.eml by the application's own
# delivery code; mtaguard answers 250 only after eomReceived has fired.
import itertools
import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Application
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.endpoints import serverFromString
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from zope.interface import implementer

from mtaguard.smtpd import SMTPServerFactory

SPOOL = os.path.abspath("embedded-mail")
_numbers = itertools.count(1)


@implementer(IMessageSMTP)
class FileMessage:
    def __init__(self):
        self.lines = []

    def lineReceived(self, line):
        self.lines.append(line)

    def eomReceived(self):
        os.makedirs(SPOOL, exist_ok=True)
        path = os.path.join(SPOOL, f"{next(_numbers)}.eml")
        with open(path, "wb") as handle:
            handle.write(b"\r\n".join(self.lines) + b"\r\n")
            handle.flush()
            os.fsync(handle.fileno())
        return succeed(None)

    def connectionLost(self):
        self.lines = []


@implementer(IMessageDelivery)
class ApplicationDelivery:
    def receivedHeader(self, helo, origin, recipients):
        return b"Received: from " + helo[0] + b" by embedded-example"

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        return FileMessage


application = Application("embedded-mtaguard")
factory = SMTPServerFactory.forDelivery(ApplicationDelivery(), clock=reactor)
listen = os.environ.get("MTAGUARD_LISTEN", "tcp:2526:interface=127.0.0.1:backlog=1024")
StreamServerEndpointService(serverFromString(reactor, listen), factory).setServiceParent(application)
