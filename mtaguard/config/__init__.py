"""
Configuration: the parameter registry, main.cf and master.cf, and typed,
stress-aware parameter lookups.

Components never read a parameter by its name as a string: they receive a
L{ParameterView} and look up the declared parameters of L{params}, e.g.
C{view[params.smtpd_timeout]}.
"""

from . import params
from . import _compat  # noqa: F401  (declares the compatibility-only names)
from ._builtin import builtinConfiguration, userDataDirectory
from ._configuration import (
    Configuration,
    ConfigurationError,
    loadConfiguration,
    parseConfiguration,
)
from ._mastercf import ServiceEntry
from ._registry import Kind, Parameter, registry
from ._view import ParameterError, ParameterView

__all__ = [
    "Configuration",
    "ConfigurationError",
    "Kind",
    "Parameter",
    "ParameterError",
    "ParameterView",
    "ServiceEntry",
    "builtinConfiguration",
    "loadConfiguration",
    "params",
    "parseConfiguration",
    "registry",
    "userDataDirectory",
]
