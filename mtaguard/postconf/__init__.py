"""
C{mtaguard-postconf}: Postfix's C{postconf} command for mtaguard's main.cf
and master.cf.  It takes the same options, prints the same output and
rewrites the files the same way, so that configuration-management tools
written for Postfix drive mtaguard unchanged.

Without C{-c}, the configuration directory is C{$MAIL_CONFIG} if set, else
C{/etc/mtaguard}.  C{--json} (an extension) prints a query's answer as one
JSON object C{{name: value}}.
"""

from ._cli import main

__all__ = ["main"]
