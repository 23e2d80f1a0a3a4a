# -*- test-case-name: tests.test_tap -*-
"""
The C{twistd mtaguard} command: options and service construction.
"""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from .config import Configuration, ConfigurationError, builtinConfiguration, loadConfiguration
from .config import userDataDirectory
from .logobserver import twistdLogObserver
from .service import makeMasterService

log = Logger()


class Options(usage.Options):
    """
    Command-line options of C{twistd mtaguard}.
    """

    synopsis = "[-c DIR]"
    longdesc = (
        "Run mtaguard, configured by main.cf and master.cf in DIR as Postfix"
        " would be; without -c, run the built-in configuration (an SMTP server"
        " on 127.0.0.1:2525, data under ~/.local/share/mtaguard)."
    )
    optParameters = [
        [
            "config-directory",
            "c",
            None,
            "Directory holding main.cf and master.cf (default: built-in configuration).",
        ],
    ]


def loadFromOptions(options: Options, stderr: TextIO) -> Configuration:
    """
    Load the configuration the options name, printing one line and exiting
    non-zero when it cannot be used: no traceback, no port bound.
    """
    directory = options["config-directory"]
    try:
        if directory is None:
            configuration = builtinConfiguration()
        else:
            configuration = loadConfiguration(directory)
            if any("unused parameter: mtaguard_" in warning for warning in configuration.warnings):
                # Check plugins declare their own parameters when imported.
                from .postscreen._checks import declarePluginParameters

                declarePluginParameters(setting.name for setting in configuration.main.settings)
                configuration = loadConfiguration(directory)
    except ConfigurationError as error:
        stderr.write(f"mtaguard: fatal: {error}\n")
        stderr.flush()
        raise SystemExit(1)
    for warning in configuration.warnings:
        stderr.write(f"mtaguard: warning: {warning}\n")
    if directory is None:
        stderr.write(
            f"mtaguard: built-in configuration; data under {userDataDirectory()}\n"
        )
    return configuration


def makeService(options: Options) -> IService:
    """
    Build the service tree for C{twistd mtaguard}.
    """
    from twisted.internet import reactor

    configuration = loadFromOptions(options, sys.stderr)
    try:
        master = makeMasterService(configuration, reactor=reactor)
    except ConfigurationError as error:
        sys.stderr.write(f"mtaguard: fatal: {error}\n")
        raise SystemExit(1)
    # The same log lines as twistd's own observer, written faster.
    master.logObserver = twistdLogObserver(getattr(options, "parent", None))
    return master
