"""
mtaguard: a hardened SMTP front door built on Twisted, configured and
administered like Postfix.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
