# Run mtaguard from a configuration directory with twistd -y:
#
#   MTAGUARD_CONFIG=/etc/mtaguard twistd -ny tac/standalone.tac
#
# Without MTAGUARD_CONFIG it runs the built-in configuration (loopback port
# 2525), exactly as "twistd -n mtaguard" does.
import os
import sys

from twisted.application.service import Application

from mtaguard.config import ConfigurationError, builtinConfiguration, loadConfiguration
from mtaguard.service import makeMasterService

directory = os.environ.get("MTAGUARD_CONFIG")
try:
    configuration = (
        loadConfiguration(directory) if directory else builtinConfiguration()
    )
except ConfigurationError as error:
    sys.stderr.write(f"mtaguard: fatal: {error}\n")
    raise SystemExit(1)

application = Application("mtaguard")
from twisted.internet import reactor

makeMasterService(configuration, reactor=reactor).setServiceParent(application)
