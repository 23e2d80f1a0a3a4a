"""
mtaguard's SMTP server: the hardened front door.

The protocol adapts a transport to the sans-I/O parser of L{mtaguard.smtp};
the factory enforces per-client limits and stress mode; the policy decides
relaying.
"""

from ._factory import SMTPServerFactory
from ._protocol import ServerContext, SMTPServerProtocol

__all__ = ["SMTPServerFactory", "SMTPServerProtocol", "ServerContext"]
