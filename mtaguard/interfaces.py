"""
Every seam of mtaguard, as zope interfaces: what a component needs from its
collaborators, so that each can be replaced (by a plugin, an embedding
application or a test fake) and checked with C{verifyObject}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class IQueuedMessage(Interface):
    """
    One message being received into the durable queue.

    It is an C{IConsumer}: the SMTP server registers its transport as a
    streaming producer, and the message pauses it while writes to disk are
    behind, so that no buffer grows without a bound.
    """

    queueID = Attribute("The queue ID (C{str}), assigned when the message is created.")

    def registerProducer(producer: object, streaming: bool) -> None:
        """
        Register the producer of the content (the client's transport); it is
        paused while more than a bounded amount of content awaits writing.
        """

    def unregisterProducer() -> None:
        """
        Forget the producer registered with L{registerProducer}.
        """

    def write(data: bytes) -> None:
        """
        Append message content: CRLF line endings, dot-unstuffed, as
        received.  Never blocks; the write happens off the reactor thread.
        """

    def commit() -> Deferred[str]:
        """
        Finish the message: write what is pending, fsync the file and its
        directory (grouped with other messages committing at the same time).

        @return: a C{Deferred} that fires with the queue ID once the message
            is on stable storage, or fails (for example with C{OSError} for a
            full disk) in which case nothing was queued.
        """

    def abort() -> None:
        """
        Discard the message (client gone, size limit, rejected content);
        the partial file is removed.  Idempotent.
        """


class IQueue(Interface):
    """
    The durable mail queue.
    """

    def newMessage(envelope: object) -> IQueuedMessage:
        """
        Start receiving a message for C{envelope} (a
        L{mtaguard.queue.Envelope}).

        @raise OSError: if the queue file cannot be created; the server
            answers C{452 4.3.1 Insufficient system storage}.
        """


class IQueueWorker(Interface):
    """
    Runs the blocking file-system work of the queue and of delivery agents
    away from the reactor thread (a thread pool in production; a synchronous
    or manually stepped worker in tests).
    """

    def run(job: Callable[[], Any]) -> Deferred[Any]:
        """
        Run C{job}, a callable without arguments.

        @return: a C{Deferred} that fires in the reactor thread with the
            result of C{job}, or fails with its exception.
        """


class IVerdictCache(Interface):
    """
    postscreen's temporary allowlist cache: per client address, the time
    until which each test's pass verdict holds (a
    L{mtaguard.postscreen.Verdicts}), like Postfix's C{postscreen_cache_map}.

    Providers never block the reactor thread; a slow or failed store shows
    as a failed (or late) L{Deferred}, which
    L{mtaguard.postscreen.DegradingCache} turns into "no cache".
    """

    name = Attribute(
        "How the cache is named in log lines (C{str}), e.g."
        " C{btree:/var/lib/mtaguard/postscreen_cache}."
    )

    def get(clientAddress: str) -> Deferred[Any]:
        """
        Look up the verdicts stored for C{clientAddress} (an IP address as
        text).

        @return: a C{Deferred} firing with the stored C{Verdicts} (expired
            tests included: the caller compares each expiry with the time)
            or C{None} when nothing (or nothing readable) is stored; it fails
            when the store cannot be reached in time.
        """

    def put(clientAddress: str, verdicts: Any) -> Deferred[None]:
        """
        Store C{verdicts} (a C{Verdicts}) for C{clientAddress}, replacing
        what was stored.

        @return: a C{Deferred} firing with C{None} once stored, or failing
            when the store cannot be reached in time.
        """

    def cleanup() -> Deferred[tuple[int, int]]:
        """
        Drop the entries whose every expiry lies more than the retention time
        in the past.

        @return: a C{Deferred} firing with C{(retained, dropped)} entry
            counts (C{(0, 0)} for a store that expires entries itself).
        """

    def close() -> Deferred[None]:
        """
        Release the connection or file; later calls may reopen it.

        @return: a C{Deferred} firing once released.
        """


class IPostscreenCheck(Interface):
    """
    One postscreen test, found as a Twisted plugin: an object in a module of
    the C{mtaguard.plugins} package (or of a third-party package's
    C{mtaguard/plugins/} directory) that provides this interface and
    C{twisted.plugin.IPlugin}.

    Postfix's own tests (C{access}, C{pregreet}, C{dnsbl}, C{pipelining},
    C{non_smtp_command}, C{bare_newline}) are plugins too; postscreen runs
    them in Postfix's order with Postfix's semantics and cache format.  Any
    other check runs generically: a before-greeting check while postscreen
    waits for the greeting (in parallel with the DNSBL lookups), an
    after-greeting check on each command of the dummy SMTP engine.  See
    C{docs/postscreen-checks.md}.
    """

    name = Attribute(
        "The test's name (C{str}): used in log lines and as its key in the"
        " verdict cache.  Third-party names must not collide with Postfix's."
    )
    phase = Attribute(
        "When the test runs: C{mtaguard.postscreen.BEFORE_GREETING} or"
        " C{mtaguard.postscreen.AFTER_GREETING}."
    )

    def configure(view: Any, resources: Any) -> Any:
        """
        Read the test's parameters for one postscreen service.

        @param view: the service's C{ParameterView}; read parameters with
            C{view[parameter]}, where C{parameter} is declared with
            C{mtaguard.config} (third-party names start with C{mtaguard_}).
        @param resources: a C{mtaguard.postscreen.CheckResources}: the
            reactor, the DNS resolver, a file reader.
        @return: an L{IConfiguredCheck} provider, or C{None} when the test
            is disabled.
        @raise mtaguard.config.ConfigurationError: for a bad setting; the
            service does not start.
        """


class IConfiguredCheck(Interface):
    """
    A postscreen test configured for one service (what
    L{IPostscreenCheck.configure} returns).
    """

    action = Attribute(
        "What a failure does (C{str}): C{ignore} (log only), C{enforce}"
        " (the client gets the test's reply to every RCPT and is never handed"
        " to smtpd) or C{drop} (the reply, then hang up)."
    )
    ttl = Attribute("How long a pass is cached (seconds, C{float}).")

    def check(client: Any) -> Any:
        """
        Before-greeting tests: judge a new client.

        @param client: a C{mtaguard.postscreen.ClientInfo}.
        @return: a C{CheckPass} or C{CheckFail}, or a C{Deferred} firing
            with one; a result that arrives after the greeting wait ended
            counts as no result (nothing cached, nothing enforced).  A
            failing Deferred is logged and counts as no result.
        """

    def command(client: Any, verb: bytes, line: bytes) -> Any:
        """
        After-greeting tests: judge one command line of the dummy SMTP
        engine.

        @param verb: the command word, upper-cased.
        @param line: the whole line without its line ending.
        @return: C{CheckFail} to fail the test now, or C{None}.  The test
            passes when the client reaches RCPT TO without failing it.
        """
