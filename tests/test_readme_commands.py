"""Every command README.md and docs/*.md show, and every command ./run prints, works as printed on
a fresh copy of the repository, after ./run has run there once, as a new user would type them.

The commands are read from the documents' own text (their ``sh`` blocks, and inline spans that
start like a command), the README first and then docs/ by name, so the documentation and this test
cannot drift apart: a command added to any of them is run here. What a command leaves to the
reader (``<folder or zip>``, ``PATH``, ``<username>``) is filled in as a user would;
``[--option]`` is run without and with the option. Only two kinds are
not run, each for the reason in NOT_RUN. Each ``./run`` line is started in a process group of its
own and stopped with Ctrl-C (SIGINT to the group) before the next one, and at the end.

The copy uses this test run's virtualenv (a symlink, as ``.venv``): ./run takes a virtualenv that
already holds every requirement as it is, so the test installs nothing. ``createsuperuser`` is
answered in a pseudo-terminal, each prompt awaited with a timeout. Around the commands, probes that
are not README commands check that the processes ./run started and manage.py run by hand agree:
the superuser made by hand signs in to the web server, and the session the server stored decodes
by hand (one database, one secret key); images imported by hand are embedded by the worker and
served from the data directory; the token made by hand opens the API.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.constants import ROOT
from tests.support.images import image_bytes
from tests.support.processes import free_port

README = ROOT / "README.md"
# The README first (it starts with ./run), then docs/ in name order: the order commands run in.
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# An inline code span that is a command (the prose also quotes paths such as `./data`).
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:\.venv/bin/\S+ |\./(?:run|test)$|pg_dump |pg_restore )")
# Commands not run here, and why. Matched against the README's text of the command.
NOT_RUN = {
    "./test": "the test suite itself: it is what runs this test (CI runs it)",
    "pg_dump": "PostgreSQL's backup, for a PostgreSQL deployment; this copy runs on SQLite, whose "
    "backup command from the same README line is run",
    "pg_restore": "the restore of that PostgreSQL backup",
}
# A block of commands naming a deployment's own hosts is a template for several machines, filled in
# by whoever deploys: tests/test_two_machines.py runs that set-up with a PostgreSQL (pgvector), a
# Redis and a shared media directory of its own.
DEPLOYMENT_TEMPLATE = "example.com"
COMMAND_TIMEOUT = 600  # the slowest, the full-size random CLIP, takes ~25 s on an idle machine
READ_TIMEOUT = 120  # per prompt of createsuperuser, per wait for the web server


def documentation_text() -> str:
    """The README and docs/*.md, one after the other, in DOCUMENTS' order."""
    return "\n\n".join(document.read_text() for document in DOCUMENTS)


def readme_commands(text: str) -> list[str]:
    """The commands in ``text``, in reading order: each line of a ``sh`` block, and each inline
    code span that starts like a command (``.venv/bin/...``, ``./...``, ``VAR=value ./...``)."""
    found: list[tuple[int, str]] = []
    for block in re.finditer(r"```sh\n(.*?)```", text, re.S):
        offset = block.start(1)
        for line in block.group(1).splitlines(keepends=True):
            if line.strip() and not line.lstrip().startswith("#"):
                found.append((offset, line.strip()))
            offset += len(line)
    prose = re.sub(r"```.*?```", lambda m: " " * len(m.group(0)), text, flags=re.S)
    for span in re.finditer(r"`([^`\n]+)`", prose):
        if COMMAND_START.match(span.group(1)) and span.group(1) not in {"./run", "./test"}:
            found.append((span.start(), span.group(1)))
    return list(dict.fromkeys(command for _, command in sorted(found)))


def deployment_template_lines(text: str) -> set[str]:
    """The lines of the ``sh`` blocks that name a deployment's own hosts (DEPLOYMENT_TEMPLATE)."""
    return {
        line.strip()
        for block in re.finditer(r"```sh\n(.*?)```", text, re.S)
        if DEPLOYMENT_TEMPLATE in block.group(1)
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }


def expand_optional(command: str) -> list[str]:
    """``cmd [--opt]`` -> ``cmd`` and ``cmd --opt``."""
    optional = re.search(r" \[([^\]]+)\]", command)
    if not optional:
        return [command]
    without = command[: optional.start()] + command[optional.end() :]
    with_it = command[: optional.start()] + " " + optional.group(1) + command[optional.end() :]
    return [*expand_optional(without), *expand_optional(with_it)]


class Installation:
    """A fresh copy of the repository and the processes of its current ``./run``."""

    def __init__(self, directory: Path, env: dict[str, str], log_dir: Path) -> None:
        self.dir = directory
        self.env = env
        self.log_dir = log_dir
        self.run_proc: subprocess.Popen | None = None
        self.run_log: Path | None = None
        self.address: str | None = None
        self.transcript: list[str] = []
        self.exports: list[str] = []
        self.username = "admin"
        self.password = secrets.token_urlsafe(16)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    # --- commands ---------------------------------------------------------------------------

    def run(self, command: str, *, timeout: float = COMMAND_TIMEOUT) -> str:
        """A one-shot command, through bash in the copy's root, as typed: it must succeed."""
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        output = done.stdout + done.stderr
        self.transcript.append(f"$ {command}\n{output[-3000:]}")
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{output[-5000:]}"
        assert "Traceback" not in output, f"{command!r} printed a traceback:\n{output[-5000:]}"
        return output

    def run_interactively(self, command: str, dialogue: list[tuple[str, str]]) -> str:
        """Run ``command`` in a pseudo-terminal (its controlling terminal, as in a shell) and answer
        each prompt (a regex) as it appears; every read has a timeout, so it can never hang."""
        import pty

        pid, fd = pty.fork()
        if pid == 0:  # the child: a shell in the copy, nothing else
            try:
                os.chdir(self.dir)
                os.execvpe("bash", ["bash", "-c", command], self.env)
            finally:
                os._exit(127)
        output = ""
        try:
            for prompt, answer in dialogue:
                output = self._read_until(fd, output, prompt, command)
                os.write(fd, answer.encode() + b"\r")
            output = self._read_until(fd, output, None, command)
            _, status = _wait_child(pid, READ_TIMEOUT)
        finally:
            _kill_child(pid)
            os.close(fd)
        self.transcript.append(f"$ {command}\n{output[-3000:]}")
        assert status == 0, f"{command!r} exited with status {status}:\n{output[-5000:]}"
        assert "Traceback" not in output, output[-5000:]
        return output

    @staticmethod
    def _read_until(fd: int, output: str, pattern: str | None, command: str) -> str:
        """Read until ``pattern`` appears after what was read so far (None: until the end)."""
        start = len(output)
        deadline = time.monotonic() + READ_TIMEOUT
        while pattern is None or not re.search(pattern, output[start:]):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{command!r}: no {pattern!r} within {READ_TIMEOUT}s:\n{output[-3000:]}"
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                assert pattern is None, f"{command!r} ended before {pattern!r}:\n{output[-3000:]}"
                return output
            output += chunk.decode(errors="replace")
        return output

    # --- ./run ------------------------------------------------------------------------------

    def start_run(self, command: str) -> str:
        """Start a ``./run`` line (stopping the one before, as Ctrl-C would) and wait until the
        address it prints answers. Returns what it printed up to then."""
        self.stop_run()
        self.run_log = self.log_dir / f"run-{len(self.transcript)}.log"
        with self.run_log.open("wb") as log:
            self.run_proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, as a terminal's job
                # A terminal's job starts with Ctrl-C's default action, even when this test
                # runs as a background job of a script (which ignores SIGINT, and bash cannot
                # trap a signal ignored when it starts).
                preexec_fn=_terminal_signals,
            )
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            printed = self.run_log.read_text(errors="replace")
            found = re.search(r"Open http://(\S+)/ to search\.", printed)
            if found and _answers(f"http://{found.group(1)}/"):
                self.address = found.group(1)
                self.transcript.append(f"$ {command}\n{printed[-3000:]}")
                return printed
            assert self.run_proc.poll() is None, (
                f"{command!r} exited {self.run_proc.returncode}:\n{printed[-5000:]}"
            )
            assert time.monotonic() < deadline, f"{command!r} did not answer:\n{printed[-5000:]}"
            time.sleep(0.5)

    def stop_run(self) -> None:
        """Ctrl-C, as a terminal sends it: SIGINT to ./run's foreground process group. Whatever
        ./run started must stop by itself (./run did not have to kill it) and be gone 30 s later;
        anything left (a failure) is killed by its id."""
        proc, self.run_proc = self.run_proc, None
        if proc is None:
            return
        session = proc.pid  # start_new_session: every process ./run starts stays in it
        with _suppress_gone():
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while (proc.poll() is None or _session_processes(session)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _session_processes(session)
        for pid, _ in left:
            with _suppress_gone():
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log = (self.run_log or Path()).read_text(errors="replace")[-3000:]
        assert not left, f"./run left processes behind 30 s after Ctrl-C: {left}\n{log}"
        # Stopped, not killed: ./run kills whatever is still running 10 s after Ctrl-C and says so.
        assert "killing them" not in log, f"./run had to kill its processes:\n{log}"

    # --- probes (not README commands) -------------------------------------------------------

    def url(self, path: str) -> str:
        assert self.address
        return f"http://{self.address}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        url = path if path.startswith("http://") else self.url(path)
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def sign_in(self) -> None:
        """Sign in to the admin of the web server ./run started, with the superuser made by hand."""
        status, page = self.get("/admin/login/")
        assert status == 200
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        form = urllib.parse.urlencode(
            {
                "username": self.username,
                "password": self.password,
                "csrfmiddlewaretoken": token,
                "next": "/admin/",
            }
        ).encode()
        request = urllib.request.Request(
            self.url("/admin/login/"), data=form, headers={"Referer": self.url("/admin/login/")}
        )
        with self.opener.open(request, timeout=60) as response:
            assert response.url == self.url("/admin/"), response.url
            assert b"Log out" in response.read()

    def python(self, code: str) -> str:
        """manage.py shell, run by hand in the copy (a probe)."""
        return self.run(f".venv/bin/python manage.py shell -c {_quote(code)}")


def _without_log_records(printed: str) -> str:
    """What ./run printed for a person to read, without the log records of the processes it started
    (a record may quote a command line it ran, such as the encoder's export)."""
    record = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
    return "\n".join(line for line in printed.splitlines() if not record.search(line))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _terminal_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _session_processes(session: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes of a session (zombies are gone already)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append((int(entry.name), command[:120]))
    return found


class _suppress_gone:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is ProcessLookupError


def _wait_child(pid: int, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return done, os.waitstatus_to_exitcode(status)
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not end within {timeout}s")


def _kill_child(pid: int) -> None:
    with _suppress_gone():
        os.killpg(pid, signal.SIGKILL)  # pty.fork() made it a session (and group) leader
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _fresh_copy(destination: Path) -> None:
    """The repository's files as a clone would hold them (tracked, and new files not ignored),
    without the virtualenv, the data directory or anything else git ignores."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if name == ".venv" or name.startswith(".venv/") or not os.path.lexists(source):
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def _clean_environment(port: int) -> dict[str, str]:
    """A new user's shell: none of this test run's settings (data directory, database, broker,
    secret key, queue). The web server binds a free port (IMAGESEARCH_BIND, a documented setting),
    so that this test never collides with another server on 8000; the commands read the address
    from what ./run prints."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMAGESEARCH_", "DJANGO_", "CELERY_", "DATABASE_URL", "PYTEST", "CI"))
    }
    env["IMAGESEARCH_BIND"] = f"127.0.0.1:{port}"
    return env


@pytest.fixture
def installation(tmp_path) -> Iterator[Installation]:
    copy = tmp_path / "imagesearch"
    copy.mkdir()
    _fresh_copy(copy)
    # ./run takes a virtualenv that already holds every requirement as it is (this run's own).
    (copy / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "logs").mkdir()
    inst = Installation(copy, _clean_environment(free_port()), tmp_path / "logs")
    try:
        yield inst
    finally:
        inst.stop_run()
        shutil.rmtree(copy / "data", ignore_errors=True)  # a full-size model: 600 MB


def _image_folder(root: Path) -> Path:
    """A folder with one sub-folder per label, as the import command's --labels-from-dirs reads."""
    for label, seeds in {"sunset": (1, 2), "bicycle": (3,)}.items():
        (root / label).mkdir(parents=True)
        for seed in seeds:
            (root / label / f"photo{seed}.png").write_bytes(image_bytes(seed, size=(64, 48)))
    return root


# Two starts of ./run, a full-size random CLIP built and loaded by three processes: minutes on a
# loaded two-core machine.
@pytest.mark.slow
@pytest.mark.own_database
@pytest.mark.timeout(1200)
def test_every_command_in_the_readme_and_printed_by_run_works_verbatim(installation, tmp_path):
    inst = installation
    text = documentation_text()
    commands = [c for command in readme_commands(text) for c in expand_optional(command)]
    template = deployment_template_lines(text)
    assert commands[0] == "./run", "the README starts with ./run"
    assert any("createsuperuser" in c for c in commands) and any("import_images" in c for c in commands)
    folder = _image_folder(tmp_path / "photos")
    printed_by_run: set[str] = set()
    not_run: list[str] = []
    probed: set[str] = set()

    def fill(command: str) -> str:
        """What the README leaves to the reader, filled in as a user would."""
        command = command.replace("<folder or zip>", str(folder)).replace("<username>", inst.username)
        if re.search(r"\bexport_images PATH\b", command):
            inst.exports.append(f"export-{len(inst.exports) + 1}")  # a new folder, each time
            command = command.replace("PATH", inst.exports[-1])
        elif re.search(r"\bimport_images PATH\b", command):
            assert inst.exports, "the README imports an export before making one"
            command = command.replace("PATH", inst.exports[-1])
        leftover = re.findall(r"<[^>]+>|\b(?:PATH|DBNAME)\b", command)
        assert not leftover, f"{command!r}: say in this test what a user fills in for {leftover}"
        return command

    for readme_command in commands:
        started = time.monotonic()
        reason = next((why for start, why in NOT_RUN.items() if readme_command.startswith(start)), None)
        if readme_command in template:
            reason = "a line of the several-machines template (its hosts are the deployment's own)"
        if reason:
            not_run.append(f"{readme_command}: {reason}")
            continue
        command = fill(readme_command)
        if re.search(r"(^|\s)\./run$", command):
            printed = inst.start_run(command)
            printed_by_run |= set(
                re.findall(r"^.*?(\.venv/bin/\S.*?)\s*$", _without_log_records(printed), re.M)
            )
            # The probe of the first ./run: its own key is kept where manage.py reads it.
            assert (inst.dir / "data" / "secret_key").stat().st_mode & 0o077 == 0
        elif "createsuperuser" in command:
            assert inst.address, "createsuperuser needs ./run to have run (migrations)"
            output = inst.run_interactively(
                command,
                [
                    (r"Username[^:]*: $", inst.username),
                    (r"Email address: $", "admin@example.com"),
                    (r"Password: $", inst.password),
                    (r"Password \(again\): $", inst.password),
                ],
            )
            assert "Superuser created successfully." in output
            _probe_same_database_and_key(inst)
            probed.add("superuser")
        else:
            output = inst.run(command)
            probed |= _probe_after(inst, command, output)
        print(f"{time.monotonic() - started:6.1f} s  {readme_command}")

    assert probed == {"superuser", "import", "token"}, probed
    assert printed_by_run, "./run printed no command"
    assert printed_by_run <= set(commands), (
        f"./run prints commands the documentation does not show: {printed_by_run}"
    )
    # Every manage.py command the documentation names answers --help (no traceback, no setting missing).
    names = sorted(set(re.findall(r"manage\.py (\w+)", text)))
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        helps = dict(
            zip(
                names,
                pool.map(lambda n: inst.run(f".venv/bin/python manage.py {n} --help"), names),
                strict=True,
            )
        )
    for name, text in helps.items():
        assert f"usage: manage.py {name}" in text, text
    # ./test, pg_dump, pg_restore and the several-machines template: nothing else goes unrun.
    assert len(not_run) == 3 + len(template), not_run
    started = time.monotonic()
    inst.stop_run()
    print(f"{time.monotonic() - started:6.1f} s  Ctrl-C")


def _probe_same_database_and_key(inst: Installation) -> None:
    """The superuser made by hand signs in to the server ./run started (one database), and the
    session that server stored decodes by hand (one secret key)."""
    inst.sign_in()
    session_key = next(c.value for c in inst.cookies if c.name == "sessionid")
    printed = inst.python(
        "from django.contrib.auth.models import User;"
        "from django.contrib.sessions.models import Session;"
        f"print('SESSION', Session.objects.get(pk='{session_key}').get_decoded().get('_auth_user_id'));"
        f"print('USER', User.objects.get(username='{inst.username}').pk)"
    )
    assert re.search(r"SESSION (\d+)", printed).group(1) == re.search(r"USER (\d+)", printed).group(1)


def _probe_after(inst: Installation, command: str, output: str) -> set[str]:
    """Checks after some commands; returns the names of those that ran."""
    if re.search(r"import_images \S+ --labels-from-dirs", command):
        assert re.search(r"^3 added\b", output, re.M), output
        # Imported by hand, embedded by the worker ./run started, served from the same data dir.
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            status, body = inst.get("/api/search?" + urllib.parse.urlencode({"text": "bicycle"}))
            results = json.loads(body).get("results", []) if status == 200 else []
            if len(results) == 3:
                break
            assert time.monotonic() < deadline, (status, body[:2000])
            time.sleep(1)
        assert results[0]["labels"] == ["bicycle"], results
        status, _ = inst.get(results[0]["image_url"])
        assert status == 200
        return {"import"}
    elif "create_api_token" in command:
        token = output.splitlines()[0].strip()  # printed alone on stdout (the note goes to stderr)
        status, body = inst.get("/api/status", {"Authorization": f"Bearer {token}"})
        assert status == 200, body[:2000]
        assert json.loads(body)["counts"]["ready"] == 3
        return {"token"}
    return set()
