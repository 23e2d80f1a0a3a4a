"""
Helpers for tests that drive a real mtaguard process over loopback with real
clients (smtplib, swaks, Postfix's smtp-source, openssl s_client).

The server runs as C{twistd -n mtaguard -c DIR} in a child process with its
log in a file (a pipe could fill up and stall it); every wait here has a
deadline, and everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterable, Mapping
from unittest import SkipTest

#: The project root, put on C{PYTHONPATH} so that C{twistd} finds the
#: C{mtaguard} plugin in C{twisted/plugins/} of this checkout.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOST = "127.0.0.1"
HOSTNAME = "mx.test.example"


def requireTool(testCase: Any, name: str, *, probe: Iterable[str] | None = None) -> str:
    """
    The path of the command C{name}.  When it is missing (or C{probe}, a
    command line, fails), the test fails under CI (C{CI=true}), where every
    tool must be installed, and is skipped elsewhere.
    """
    path = shutil.which(name)
    problem = None if path is not None else f"the {name} command is not installed"
    if path is not None and probe is not None:
        try:
            subprocess.run(
                list(probe), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=20, check=True,
            )
        except (OSError, subprocess.SubprocessError):
            problem = f"{name} lacks what this test needs ({' '.join(probe)} failed)"
    if problem is None:
        assert path is not None
        return path
    if os.environ.get("CI") == "true":
        testCase.fail(f"{problem}; it is required under CI")
    raise SkipTest(problem)


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def portIsFree(port: int) -> bool:
    """
    Whether nothing listens on 127.0.0.1:C{port}.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex((HOST, port)) != 0


def writeConfiguration(
    directory: str,
    port: int,
    extra: Mapping[str, str] | None = None,
    *,
    masterExtra: str = "",
) -> dict[str, str]:
    """
    Write main.cf and master.cf for one smtpd on 127.0.0.1:C{port}, with
    the queue and the data directory inside C{directory}.

    @return: the paths: C{"config"}, C{"queue"}, C{"data"}, C{"maildir"}.
    """
    queue = os.path.join(directory, "queue")
    data = os.path.join(directory, "data")
    os.makedirs(queue, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    settings = {
        "compatibility_level": "3.6",
        "myhostname": HOSTNAME,
        "mydomain": "test.example",
        "mynetworks": "127.0.0.0/8",
        "queue_directory": queue,
        "data_directory": data,
    }
    settings.update(extra or {})
    with open(os.path.join(directory, "main.cf"), "w") as handle:
        for name, value in settings.items():
            handle.write(f"{name} = {value}\n")
    with open(os.path.join(directory, "master.cf"), "w") as handle:
        handle.write(f"{HOST}:{port} inet n - n - - smtpd\n{masterExtra}")
    return {
        "config": directory,
        "queue": queue,
        "data": data,
        "maildir": os.path.join(data, "maildir"),
    }


def makeCertificate(directory: str) -> str:
    """
    Run C{mtaguard-tls new-server-cert -c DIRECTORY} and return the chain
    file it wrote.
    """
    result = subprocess.run(
        [sys.executable, "-m", "mtaguard._certificate", "new-server-cert",
         "-c", directory, "--hostname", HOSTNAME],
        cwd=ROOT, env=childEnvironment(directory), capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"mtaguard-tls failed: {result.stderr}")
    for line in result.stdout.splitlines():
        if line.startswith("smtpd_tls_chain_files = "):
            return line.split(" = ", 1)[1]
    raise AssertionError(f"no chain file in mtaguard-tls output: {result.stdout}")


def childEnvironment(directory: str) -> dict[str, str]:
    """
    The environment of a child mtaguard: this checkout on the path and the
    user data directory inside C{directory}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_DATA_HOME"] = os.path.join(directory, "xdg")
    env.pop("MAIL_CONFIG", None)
    return env


def serverCommand(configDirectory: str) -> list[str]:
    """
    The command line that runs mtaguard in the foreground on a config dir.
    """
    return [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "mtaguard", "-c", configDirectory,
    ]


class LogFileReader:
    """
    Reading the log file of a server a test started (C{logPath}).
    """

    logPath: str

    def log(self) -> str:
        """
        Everything the server logged so far.
        """
        try:
            with open(self.logPath, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def waitForLog(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """
        Wait until C{text} appears C{count} times in the log; return the log.
        """
        deadline = _now() + timeout
        while _now() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            threading.Event().wait(0.05)
        raise AssertionError(f"{text!r} not in {self.logPath} after {timeout}s:\n{self.log()}")


class MtaguardProcess(LogFileReader):
    """
    A real C{twistd -n mtaguard} child process.
    """

    def __init__(self, configDirectory: str, port: int) -> None:
        self.configDirectory = configDirectory
        self.port = port
        self.logPath = os.path.join(configDirectory, "mtaguard.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """
        Start the process and wait until the port accepts connections.

        @raise AssertionError: if it exits or does not listen in time.
        """
        with open(self.logPath, "wb") as log:
            self.process = subprocess.Popen(
                serverCommand(self.configDirectory),
                cwd=self.configDirectory,
                env=childEnvironment(self.configDirectory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = _now() + timeout
        while _now() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"mtaguard exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                threading.Event().wait(0.05)
        self.stop()
        raise AssertionError(f"mtaguard did not listen on {self.port} in {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """
        Stop the process (SIGTERM, then SIGKILL after C{timeout}) and return
        its exit status.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid



def runTool(
    argv: list[str], *, input: bytes | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[bytes]:
    """
    Run a client command to completion, bounded by C{timeout}.
    """
    return subprocess.run(
        argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, timeout=timeout,
    )


class Interactive:
    """
    A child process driven line by line (C{openssl s_client}): its output
    is collected by a thread, and L{waitFor} waits with a deadline.
    """

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.output = b""
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            data = os.read(self.process.stdout.fileno(), 65536)
            with self._changed:
                if not data:
                    self._ended = True
                else:
                    self.output += data
                self._changed.notify_all()
            if not data:
                return

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def waitFor(self, text: bytes, count: int = 1, timeout: float = 15.0) -> None:
        """
        Wait until C{text} appeared C{count} times in the output.
        """
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.output.count(text) >= count or self._ended, timeout
            ) or self.output.count(text) < count:
                raise AssertionError(
                    f"{text!r} x{count} not seen; output:\n{self.output.decode(errors='replace')}"
                )

    def waitForEnd(self, timeout: float = 15.0) -> int:
        """
        Wait until the process ends; return its status.
        """
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout}s; output:\n{self.output.decode(errors='replace')}"
            ) from None
        self._reader.join(timeout)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class LineSocket:
    """
    A raw blocking client socket with a read deadline, for tests that must
    control exactly which bytes go into which segment.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock: Any = socket.create_connection((HOST, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readReply(self) -> bytes:
        """
        One complete (possibly multi-line) SMTP reply.

        @raise EOFError: if the connection closes first.
        """
        reply = b""
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError(self.buffer)
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            reply += line + b"\r\n"
            if len(line) < 4 or line[3:4] != b"-":
                return reply

    def readAvailable(self, wait: float) -> bytes:
        """
        Whatever arrives within C{wait} seconds (b"" if nothing does).
        """
        self.sock.settimeout(wait)
        data: bytes
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            data = b""
        finally:
            self.sock.settimeout(10.0)
        result, self.buffer = self.buffer + data, b""
        return result

    def isClosed(self, wait: float = 10.0) -> bool:
        """
        Whether the server closes the connection within C{wait} seconds
        without sending anything else.
        """
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b"" and self.buffer == b""
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


def waitForFiles(directory: str, count: int, timeout: float = 30.0) -> list[str]:
    """
    Wait until C{directory} holds at least C{count} files; return their
    paths, sorted.
    """
    deadline = _now() + timeout
    names: list[str] = []
    while _now() < deadline:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            names = []
        if len(names) >= count:
            return [os.path.join(directory, name) for name in names]
        threading.Event().wait(0.05)
    raise AssertionError(f"{len(names)} files in {directory} after {timeout}s, wanted {count}")


def temporaryDirectory(testCase: Any) -> str:
    """
    A fresh directory removed after the test.  Short, under /tmp, because
    some tools limit path lengths.
    """
    directory = tempfile.mkdtemp(prefix="mtaguard-realpeer-")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


def _now() -> float:
    return time.monotonic()
