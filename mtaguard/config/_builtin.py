# -*- test-case-name: tests.test_config_configuration -*-
"""
The built-in configuration: what C{twistd mtaguard} runs without C{-c}.

It is an ordinary main.cf and master.cf, kept as text so that it reads like
the stock files an admin knows: an SMTP server on loopback port 2525, the
smtp client, and compatibility level 3.6 as in Postfix's stock main.cf.  The
queue and data directories are set to a directory the current user can
write.
"""

from __future__ import annotations

import os

from ._configuration import Configuration, parseConfiguration

BUILTIN_MAIN_CF = """\
# mtaguard built-in main.cf: used when twistd mtaguard runs without -c.
# Postfix's stock main.cf sets this level; the defaults it selects are the
# ones a new installation expects (mynetworks_style = host, and so on).
compatibility_level = 3.6

# Loopback only: this configuration is for trying mtaguard out as an
# ordinary user, not for facing the internet.
inet_interfaces = loopback-only
mydestination = $myhostname, localhost.$mydomain, localhost

# Address harvesting gets nothing (Postfix's default is VRFY on).
disable_vrfy_command = yes
"""

BUILTIN_MASTER_CF = """\
# mtaguard built-in master.cf: used when twistd mtaguard runs without -c.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
#               (yes)   (yes)   (no)    (never) (100)
# ==========================================================================
127.0.0.1:2525 inet n   -       n       -       -       smtpd
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postfix/$service_name
"""


def userDataDirectory() -> str:
    """
    Where the built-in configuration keeps its queue and data: under
    C{$XDG_DATA_HOME} (default C{~/.local/share}), in C{mtaguard}.
    """
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "mtaguard")


def builtinConfiguration(dataDirectory: str | None = None) -> Configuration:
    """
    The built-in configuration, with its queue and data under
    C{dataDirectory} (default L{userDataDirectory}).
    """
    if dataDirectory is None:
        dataDirectory = userDataDirectory()
    configuration = parseConfiguration(
        "(built-in)",
        BUILTIN_MAIN_CF,
        BUILTIN_MASTER_CF,
        fixed=(
            ("queue_directory", os.path.join(dataDirectory, "queue")),
            ("data_directory", os.path.join(dataDirectory, "data")),
        ),
    )
    configuration.check()
    return configuration
