"""A private PostgreSQL for the tests of the shared directory.

Each instance is a cluster of its own: `initdb` into a fresh directory, a
server that listens on a unix socket in that directory only (no TCP port),
trust authentication for one role, `lda`, and `pg_ctl stop -m fast` at
teardown.  Nothing under /etc/postgresql is read or changed and the system's
cluster, if Debian's package started one, is left alone.

PostgreSQL refuses to run as root: when the tests run as root, the cluster
belongs to `nobody` (setpriv), in a directory made for it outside pytest's
0700 tmp_path.  Debian puts the server programs in
/usr/lib/postgresql/VERSION/bin, off PATH; the newest found is used.
`.ci/run` installs the postgresql package; without it the fixtures skip.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

ROLE = "lda"


def server_bin():
    """The directory of initdb, pg_ctl and postgres, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


class PrivatePostgreSQL:
    """One cluster under `root` (created here), started by start()."""

    def __init__(self, root=None):
        self.bin = server_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL's server programs are not installed (postgresql package)")
        # A directory nobody can enter: pytest's tmp_path is under a 0700
        # /tmp/pytest-of-root, and a unix socket path must stay short.
        self.root = root or tempfile.mkdtemp(prefix="lda-pg-")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self.port = 5432
        self.log = os.path.join(self.root, "postgresql.log")
        self.as_user = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                            "--clear-groups"]
        self._run("initdb", "-D", self.data, "-U", ROLE, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def _run(self, program, *args, check=True):
        return subprocess.run([*self.as_user, os.path.join(self.bin, program), *args],
                              capture_output=True, text=True, check=check, cwd=self.root,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})

    def start(self):
        """Start the server and wait until it takes connections."""
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
                   f"-p {self.port} -c fsync=on -c max_connections=100")
        done = self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w",
                         "-t", "60", "start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n"
                               f"{self.log_text()}")
        return self

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def running(self):
        return self._run("pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def dsn(self, database="postgres"):
        """The URL lda.toml's `directory` takes for `database`."""
        return f"postgresql://{ROLE}@/{database}?host={self.socket_dir}&port={self.port}"

    def psql(self, sql, database="postgres"):
        """Run SQL with psql (the client, not lda's code); returns stdout."""
        done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", self.socket_dir, "-p", str(self.port), "-U", ROLE,
                               "-d", database, "-c", sql],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr}")
        return done.stdout

    def create_database(self):
        """A fresh, empty database in this cluster; returns its name."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return name

    def remove(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster():
    """One private cluster for the whole run (a test gets its own database)."""
    cluster = PrivatePostgreSQL().start()
    yield cluster
    cluster.remove()


@pytest.fixture
def postgres(postgres_cluster):
    """(cluster, DSN of a fresh database) for one test."""
    name = postgres_cluster.create_database()
    yield postgres_cluster, postgres_cluster.dsn(name)
    # The test's own connections are closed by now; a leftover one (a
    # server the test left running) must not keep the database alive.
    postgres_cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def own_postgres():
    """A cluster of this test's own, for a test that stops and starts it."""
    cluster = PrivatePostgreSQL().start()
    yield cluster
    cluster.remove()


def wait_stopped(cluster, timeout=30):
    deadline = time.monotonic() + timeout
    while cluster.running() and time.monotonic() < deadline:
        time.sleep(0.1)
