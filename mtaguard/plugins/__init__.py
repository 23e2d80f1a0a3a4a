"""
mtaguard's own plugin package: postscreen checks (and other mtaguard
extension points) are discovered here with
C{twisted.plugin.getPlugins(interface, mtaguard.plugins)}.

Third-party packages add modules to it by shipping a C{mtaguard/plugins/}
directory without C{__init__.py} files (neither in C{mtaguard/} nor in
C{mtaguard/plugins/}), as Twisted's plugin guide describes for a project's
own interfaces; the built-in checks register through the same mechanism.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
