"""Where every server listens: `lda lmtp`, `lda policy` and `lda socketmap`
on unix:PATH or HOST:PORT, from --listen or lda.toml's *_listen keys.  An
address that cannot be served is the administrator's to fix: exit 78 and
one line naming it, never a traceback, never 75 (waiting mends nothing),
and nothing on disk touched."""

import os
import shutil
import socket
import subprocess

import pytest
from conftest import LDA, wait_until
from postfix import free_port

SERVERS = ("lmtp", "policy", "socketmap")
# lda lmtp in one process: a test that times out kills all of it.
ARGS = {"lmtp": ["--processes", "1"], "policy": [], "socketmap": []}


def start(site, name, *listen, runner=()):
    """lda `name` (on `listen`, an option, or else its lda.toml key) in the
    site's directory, through `runner` (a command and its options)."""
    return subprocess.Popen([*runner, LDA, name, *listen, *ARGS[name]], env=site.env,
                            cwd=site.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def refused(site, name, *listen, runner=()):
    """The one line of stderr of a server that must exit 78 at once."""
    server = start(site, name, *listen, runner=runner)
    try:
        _, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        _, err = server.communicate()
        pytest.fail(f"lda {name} {' '.join(listen)} served: {err.decode()}")
    lines = err.decode().splitlines()
    assert server.returncode == 78 and len(lines) == 1, (server.returncode, lines)
    assert lines[0].startswith("lda: "), lines
    return lines[0]


def serves(server, path):
    """Whether the server answers on the unix socket at path."""
    if server.poll() is not None:
        pytest.fail(f"exited {server.returncode}: {server.stderr.read().decode()}")
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        conn.close()


def stop(server):
    server.terminate()
    _, err = server.communicate(timeout=60)
    assert server.returncode == 0 and b"Traceback" not in err, err.decode()


# --- unix:PATH ------------------------------------------------------------------

@pytest.mark.parametrize("name", SERVERS)
def test_a_file_at_the_socket_path_is_never_replaced(site, name):
    """`--listen unix:PATH` renamed its socket over whatever PATH was: a
    mistyped path (lda.toml, a .cf file) lost that file's contents, then
    served there.  Only a socket is replaced; anything else is named, kept."""
    precious = site.root / "main.cf"
    precious.write_text("precious\n")
    line = refused(site, name, "--listen", f"unix:{precious}")
    assert str(precious) in line and "not a socket" in line, line
    assert precious.read_text() == "precious\n"
    assert not (site.root / "main.cf.new").exists()


def test_a_file_at_the_staging_name_is_never_removed_either(site):
    """The socket is bound beside its path first, as PATH.new, and whatever
    was at PATH.new was unlinked, socket or not."""
    path = site.root / "lmtp"
    precious = site.root / "lmtp.new"
    precious.write_text("precious\n")
    line = refused(site, "lmtp", "--listen", f"unix:{path}")
    assert str(precious) in line and "not a socket" in line, line
    assert precious.read_text() == "precious\n" and not path.exists()


@pytest.mark.parametrize("name", SERVERS)
def test_a_socket_another_server_listens_on_is_not_taken(site, name):
    """A second server on the same path renamed its socket over the first
    one's, which then served nobody, and Postfix's connections went to
    whichever started last.  As Dovecot's master, a socket that answers is
    in use: 78, named; the first server goes on serving."""
    path = site.root / f"{name}.sock"
    first = start(site, name, "--listen", f"unix:{path}")
    try:
        assert wait_until(lambda: serves(first, path), 30, f"lda {name} on {path}")
        inode = path.stat().st_ino
        line = refused(site, name, "--listen", f"unix:{path}")
        assert str(path) in line and "listening" in line, line
        assert path.stat().st_ino == inode and serves(first, path)
    finally:
        stop(first)


@pytest.mark.parametrize("name", SERVERS)
def test_a_server_removes_its_own_socket_and_only_its_own(site, name):
    """At its stop, lda lmtp unlinked whatever was at its path, a successor's
    socket too, and lda policy and lda socketmap left theirs behind."""
    path = site.root / f"{name}.sock"
    server = start(site, name, "--listen", f"unix:{path}")
    assert wait_until(lambda: serves(server, path), 30, f"lda {name} on {path}")
    stop(server)
    assert not path.exists()
    server = start(site, name, "--listen", f"unix:{path}")
    try:
        assert wait_until(lambda: serves(server, path), 30, f"lda {name} on {path}")
        path.unlink()  # as a successor replaces it
        with socket.socket(socket.AF_UNIX) as successor:
            successor.bind(str(path))
            successor.listen()
            stop(server)
            assert path.exists(), "the successor's socket was removed"
    finally:
        if server.poll() is None:
            stop(server)


@pytest.mark.parametrize("name", SERVERS)
def test_a_socket_a_killed_server_left_is_replaced(site, name):
    """A server killed outright leaves its socket file: the next one
    replaces it (its staging name too), or a restart after a crash fails."""
    path = site.root / f"{name}.sock"
    for left in (path, site.root / f"{name}.sock.new"):
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(left))
    server = start(site, name, "--listen", f"unix:{path}")
    try:
        assert wait_until(lambda: serves(server, path), 30, f"lda {name} on {path}")
    finally:
        stop(server)


def test_a_socket_in_a_directory_that_does_not_exist_is_refused(site):
    """lda made every missing directory of the path (`unix:/nonexistent/dir/x`
    served there).  The directory is the administrator's to make, with the
    owner and mode the MTA needs, as Postfix's and Dovecot's are: lda says
    which one is missing and makes nothing."""
    missing = site.root / "missing" / "dir"
    line = refused(site, "socketmap", "--listen", f"unix:{missing}/socketmap")
    assert str(missing) in line, line
    assert not (site.root / "missing").exists()


def test_an_empty_socket_path_is_refused(site):
    """`unix:` bound a socket named `.new` in the working directory, then
    failed to rename it into the empty name: "lda: .new: No such file or
    directory", and the `.new` stayed behind."""
    line = refused(site, "lmtp", "--listen", "unix:")
    assert "'unix:'" in line, line
    assert not (site.root / ".new").exists()


def test_a_socket_path_too_long_for_a_unix_socket_is_a_configuration_error(site):
    """A path longer than a unix socket's address holds (108 bytes on
    Linux) exited 75 ("AF_UNIX path too long"): a configuration error, which
    a retry does not mend."""
    path = site.root / ("x" * 120)
    line = refused(site, "policy", "--listen", f"unix:{path}")
    assert "108" in line, line
    assert not path.exists()


# --- HOST:PORT ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "listen"), [
    ("policy", "127.0.0.1:99999"),
    ("socketmap", "127.0.0.1:65536"),
    ("lmtp", "127.0.0.1:0"),
    ("policy", "127.0.0.1:2\u00b2"),
    ("socketmap", "[::1:2424"),
    ("lmtp", "[]:2424"),
    ("policy", "localhost:24:25"),
    ("socketmap", "::1:2424"),
    ("lmtp", ":2424"),
    ("policy", "127.0.0.1:"),
], ids=["port-99999", "port-65536", "port-0", "superscript-digit", "unclosed-bracket",
        "empty-brackets", "two-ports", "ipv6-without-brackets", "no-host", "no-port"])
def test_a_tcp_address_that_is_no_address_is_a_configuration_error(site, name, listen):
    """Port 99999 was bound as 34463 (the port modulo 65536) while the log
    said 99999; port 0 as one the kernel picked, which no Postfix table
    names; `[::1:2424` as ::1; "2²" is a digit to str.isdigit() and
    failed int() with a traceback; `h:1:2` and `[]:2424` failed name
    resolution and exited 75."""
    line = refused(site, name, "--listen", listen)
    assert repr(listen) in line, line


def test_a_bad_address_in_lda_toml_is_refused_as_the_option_is(make_site):
    site = make_site(policy_listen="127.0.0.1:99999")
    line = refused(site, "policy")
    assert "'127.0.0.1:99999'" in line, line


@pytest.mark.parametrize("name", SERVERS)
def test_an_address_this_host_does_not_have_is_a_configuration_error(site, name):
    """192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface here: bind()
    fails with EADDRNOTAVAIL, which lda exited 75 for, as if waiting could
    bring the address, with Python's own words for it."""
    with socket.socket() as probe:
        try:
            probe.bind(("192.0.2.1", 0))
            pytest.skip("this host has 192.0.2.1")
        except OSError:
            pass
    line = refused(site, name, "--listen", "192.0.2.1:2525")
    assert "listen address '192.0.2.1:2525': Cannot assign requested address" in line, line


def without_bind_privilege(port):
    """A runner under which lda may not bind `port` (below 1024): as root,
    setpriv takes CAP_NET_BIND_SERVICE away (lda still reads the site as
    root does); anyone else has no such privilege."""
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as start_of:
        if port >= int(start_of.read()):
            pytest.skip("ip_unprivileged_port_start lets anyone bind that port")
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv") or pytest.skip("setpriv is not installed")
    return (setpriv, "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service")


@pytest.mark.parametrize("name", SERVERS)
def test_a_privileged_port_without_the_privilege_is_a_configuration_error(site, name):
    """Port 24 without root's CAP_NET_BIND_SERVICE: bind() fails with
    EACCES, which lda reported as 77, with "run lda as the user that owns
    state_dir", about a directory that was never the problem."""
    line = refused(site, name, "--listen", "127.0.0.1:24", runner=without_bind_privilege(24))
    assert "listen address '127.0.0.1:24': Permission denied" in line, line
    assert "state_dir" not in line and "1024" in line, line


@pytest.mark.parametrize("name", SERVERS)
def test_a_port_another_program_listens_on_is_a_configuration_error(site, name):
    """A TCP port another program listens on exited 75, where a unix
    socket another server listens on is 78 (above): a stopping lda closes
    its listening socket at once, so only a program that goes on serving
    holds the port, and waiting for it mends nothing."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        line = refused(site, name, "--listen", f"127.0.0.1:{port}")
    assert f"listen address '127.0.0.1:{port}': Address already in use" in line, line


def test_an_ipv6_address_in_brackets_is_served(site):
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        port = probe.getsockname()[1]
    server = start(site, "socketmap", "--listen", f"[::1]:{port}")

    def answering():
        if server.poll() is not None:
            pytest.fail(server.stderr.read().decode())
        try:
            socket.create_connection(("::1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        assert wait_until(answering, 30, "lda socketmap on [::1]")
    finally:
        stop(server)


@pytest.mark.parametrize("name", SERVERS)
def test_a_socket_directory_lda_may_not_write_is_a_configuration_error(site, name, tmp_path):
    """A unix socket in a directory lda may not write (a run-time
    directory the unit made for another user) exited 77 with "run lda as
    the user that owns state_dir", about a directory that was never the
    problem.  It is the listen address's mistake: 78, naming the path."""
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o555)
    runner = ()
    if os.geteuid() == 0:  # root writes anywhere until CAP_DAC_OVERRIDE is gone
        os.chown(sockets, 65534, 65534)
        setpriv = shutil.which("setpriv") or pytest.skip("setpriv is not installed")
        runner = (setpriv, "--inh-caps=-dac_override", "--bounding-set=-dac_override")
    line = refused(site, name, "--listen", f"unix:{sockets}/{name}", runner=runner)
    assert f"{sockets}/{name}" in line and "Permission denied" in line, line
    assert "state_dir" not in line, line
