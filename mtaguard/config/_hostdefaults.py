# -*- test-case-name: tests.test_config_params -*-
"""
Defaults that depend on the machine or the process, computed the way
Postfix 3.7 computes them for C{postconf -d}.

Each function is cached: the answer is computed once per process, as
Postfix does.  No subprocess is run.

  - L{myhostname}: the kernel's host name (C{gethostname()}, no DNS), with
    C{.localdomain} appended when it has no dot (mail_params.c
    C{check_myhostname}).
  - L{mydomain}: C{myhostname} minus its first label, but only when what
    remains still has a dot; otherwise C{localdomain} (C{check_mydomain}).
  - L{mynetworks}: the networks of the local interface addresses, for
    C{mynetworks_style = subnet} (the style C{postconf -d} uses, compatibility
    level 0), in interface order with duplicates dropped (mynetworks.c).
  - L{processID}, L{processName}: the running process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import functools
import ipaddress
import os
import socket
import struct
import sys
from typing import Iterator, Optional

#: Postfix's fallback domain (C{DEF_MYDOMAIN}).
DEFAULT_DOMAIN = "localdomain"

Address = tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def qualifyHostname(name: str) -> str:
    """
    Postfix's rule for C{myhostname}: a single-label name gets
    C{.localdomain} appended.
    """
    return name if "." in name else f"{name}.{DEFAULT_DOMAIN}"


def domainOf(hostname: str) -> str:
    """
    Postfix's rule for C{mydomain}: C{hostname} without its first label when
    the rest still contains a dot, else C{localdomain}.
    """
    _, dot, rest = hostname.partition(".")
    if not dot or "." not in rest:
        return DEFAULT_DOMAIN
    return rest


@functools.cache
def myhostname() -> str:
    """
    The default C{myhostname}: the kernel's host name, qualified by
    L{qualifyHostname}.
    """
    return qualifyHostname(socket.gethostname())


@functools.cache
def mydomain() -> str:
    """
    The default C{mydomain}: L{domainOf} the default C{myhostname}.
    """
    return domainOf(myhostname())


def processID() -> str:
    """
    The default (read-only) C{process_id}: this process's id.
    """
    return str(os.getpid())


@functools.cache
def processName() -> str:
    """
    The default (read-only) C{process_name}: the program name.
    """
    return os.path.basename(sys.argv[0] or "") or "mtaguard"


# --- interface addresses -----------------------------------------------------


class _SockAddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_SockAddr)),
    ("ifa_netmask", ctypes.POINTER(_SockAddr)),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

_IFF_UP = 0x1


def _rawSockaddr(pointer: "ctypes._Pointer[_SockAddr]", size: int) -> bytes:
    return ctypes.string_at(ctypes.cast(pointer, ctypes.c_void_p), size)


def _prefixLength(mask: bytes) -> int:
    # Count leading one bits, as mynetworks.c does (it stops at the first
    # byte that is not all ones and counts that byte's leading ones).
    bits = 0
    for byte in mask:
        if byte == 0xFF:
            bits += 8
            continue
        while byte & 0x80:
            bits += 1
            byte = (byte << 1) & 0xFF
        break
    return bits


def _getifaddrs(family: int) -> Optional[list[Address]]:
    """
    Interface addresses of one family from the C library's getifaddrs(3), in
    its order (what Postfix uses on glibc systems), or L{None} if it is not
    available.  Only Linux's sockaddr layout is understood.
    """
    if not sys.platform.startswith("linux"):
        return None
    libcName = ctypes.util.find_library("c")
    if libcName is None:
        return None
    try:
        libc = ctypes.CDLL(libcName, use_errno=True)
        getifaddrs = libc.getifaddrs
        freeifaddrs = libc.freeifaddrs
    except (OSError, AttributeError):
        return None
    head = ctypes.POINTER(_IfAddrs)()
    if getifaddrs(ctypes.byref(head)) != 0:
        return None
    result: list[Address] = []
    try:
        node = head
        while node:
            entry = node.contents
            node = entry.ifa_next
            if not entry.ifa_flags & _IFF_UP or not entry.ifa_addr:
                continue
            if entry.ifa_addr.contents.sa_family != family:
                continue
            if family == socket.AF_INET:
                raw = _rawSockaddr(entry.ifa_addr, 16)[4:8]
                mask = _rawSockaddr(entry.ifa_netmask, 16)[4:8] if entry.ifa_netmask else b"\xff" * 4
                v4 = ipaddress.IPv4Address(raw)
                if int(v4) == 0:
                    continue
                result.append((family, v4, _prefixLength(mask)))
            else:
                raw = _rawSockaddr(entry.ifa_addr, 28)[8:24]
                mask = _rawSockaddr(entry.ifa_netmask, 28)[8:24] if entry.ifa_netmask else b"\xff" * 16
                v6 = ipaddress.IPv6Address(raw)
                if int(v6) == 0:
                    continue
                result.append((family, v6, _prefixLength(mask)))
    finally:
        freeifaddrs(head)
    return result


_SIOCGIFCONF = 0x8912
_SIOCGIFNETMASK = 0x891B
_IFREQ_SIZE = 40


def _ioctlIPv4() -> list[Address]:
    """
    IPv4 interface addresses from ioctl(SIOCGIFCONF) and
    ioctl(SIOCGIFNETMASK) (Linux), the fallback when getifaddrs(3) is not
    usable.
    """
    result: list[Address] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        size = 4096
        while True:
            buffer = ctypes.create_string_buffer(size)
            request = struct.pack("iL", size, ctypes.addressof(buffer))
            used = struct.unpack("iL", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request))[0]
            if used < size // 2:
                break
            size *= 2
        data = buffer.raw[:used]
        for offset in range(0, used, _IFREQ_SIZE):
            ifreq = data[offset : offset + _IFREQ_SIZE]
            family = struct.unpack_from("H", ifreq, 16)[0]
            if family != socket.AF_INET:
                continue
            address = ipaddress.IPv4Address(ifreq[20:24])
            if int(address) == 0:
                continue
            maskReply = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, ifreq)
            result.append((socket.AF_INET, address, _prefixLength(maskReply[20:24])))
    return result


# Kernel address scopes as /proc/net/if_inet6 shows them, mapped to the
# order in which the kernel keeps (and getifaddrs reports) addresses of one
# interface: wider scope first.
_PROC_SCOPE_ORDER = {0x00: 0, 0x40: 1, 0x20: 2, 0x10: 3}


def _procIPv6() -> list[Address]:
    """
    IPv6 interface addresses from /proc/net/if_inet6 (the fallback when
    getifaddrs(3) is not usable), put into getifaddrs order: by interface
    index, wider scope first.
    """
    rows: list[tuple[int, int, Address]] = []
    try:
        with open("/proc/net/if_inet6") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        if int(address) == 0:
            continue
        index, prefix, scope = int(fields[1], 16), int(fields[2], 16), int(fields[3], 16)
        rows.append(
            (index, _PROC_SCOPE_ORDER.get(scope, 4), (socket.AF_INET6, address, prefix))
        )
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row[2] for row in rows]


def _ipv6Available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def localAddresses() -> Iterator[Address]:
    """
    The local interface addresses with their prefix lengths, IPv4 first,
    in the order Postfix's inet_addr_local() finds them (C{inet_protocols =
    all}).
    """
    v4 = _getifaddrs(socket.AF_INET)
    yield from (v4 if v4 is not None else _ioctlIPv4())
    if _ipv6Available():
        v6 = _getifaddrs(socket.AF_INET6)
        yield from (v6 if v6 is not None else _procIPv6())


def _network(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int) -> str:
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    if network.version == 6:
        return f"[{network.network_address}]/{prefix}"
    return f"{network.network_address}/{prefix}"


@functools.cache
def mynetworksForStyle(style: str) -> str:
    """
    C{mynetworks} computed as Postfix computes it for C{mynetworks_style}:
    C{subnet} gives the network of each interface address, C{host} the
    addresses themselves (C{/32}, C{/128}), C{class} the IPv4 class A/B/C
    network (IPv6 addresses as for C{subnet}).  Duplicates are dropped,
    interface order kept.
    """
    seen: list[str] = []
    for _, address, prefix in localAddresses():
        if style == "host":
            prefix = address.max_prefixlen
        elif style == "class" and address.version == 4:
            first = int(address) >> 24
            prefix = 8 if first < 128 else 16 if first < 192 else 24
        pattern = _network(address, prefix)
        if pattern not in seen:
            seen.append(pattern)
    return " ".join(seen)


def mynetworks() -> str:
    """
    The default C{mynetworks} as C{postconf -d} prints it: the C{subnet}
    style, which compatibility level 0 selects.
    """
    return mynetworksForStyle("subnet")
