"""Scripts users upload through Dovecot's ManageSieve (RFC 5804), run by lda.

A site that puts lda in place of dovecot-lda or Dovecot's lmtp keeps Dovecot
for IMAP and ManageSieve, so webmail's filter editor (Roundcube's
managesieve plugin, SOGo, Thunderbird's add-on) goes on writing scripts
through Pigeonhole; lda must run what it writes:
- per-user mode: Pigeonhole's usual `sieve = file:~/sieve;active=~/.dovecot.sieve`;
- managed mode: the Dovecot user's home is the mailbox root and
  `sieve = file:~/sieve;active=~/lda.sieve`, so ManageSieve keeps the scripts
  in the root's sieve/ (where `lda sieve install` keeps them) and makes
  lda.sieve a symlink to sieve/NAME.sieve.
Also compared with Pigeonhole: the script names each takes, RENAMESCRIPT of
the active script, and what CHECKSCRIPT accepts against lda's compiler (the
expected differences are named where they are asserted).
One private Dovecot (tests/dovecot.py) with its managesieve service on a
loopback port; the client is tests/managesieve.py.  Needs root and Debian's
dovecot-managesieved (`.ci/run` installs it); skips without them.
"""

import json
import os
import socket

import pytest

from conftest import mailbox_paths, maildir_files, message, write_lda_toml
from dovecot import private_dovecot
from lda.admin.sieve import check_name
from lda.errors import UsageError
from lda.sieve import SieveError, compile_script
from managesieve import ManageSieve

MANAGESIEVE = next((p for p in ("/usr/lib/dovecot/managesieve",
                                "/usr/libexec/dovecot/managesieve") if os.access(p, os.X_OK)),
                   None)
BOX = "mb@example.org"
FILEINTO = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'
# A comment's bytes are octets (RFC 5228 section 8.1), to Pigeonhole and lda.
LATIN1_COMMENT = b'# caf\xe9\nrequire ["fileinto", "mailbox"];\nfileinto :create "Latin";\n'

EXTRA = """\
protocols = sieve
disable_plaintext_auth = no
auth_username_format = %Ln
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {port}
  }}
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """The private Dovecot; its user `pu` is a per-user lda user, its user
    `mb` the managed mailbox BOX (home: the mailbox root)."""

    def __init__(self, server, port):
        self.server, self.port = server, port
        self.home = server.home("pu")
        self.pu_maildir = server.add_user("pu")
        state = server.root / "lda-state"
        state.mkdir()
        server.owner.chown_tree(state)
        config = write_lda_toml(server.root / "lda.toml",
                                {"state_dir": str(state), "log": "stderr"})
        self.env = {"LDA_CONFIG": str(config)}
        user_config = write_lda_toml(server.root / "lda-user.toml",
                                     {"mode": "user", "log": "stderr"})
        self.user_env = {"LDA_CONFIG": str(user_config)}
        done = server.lda("mailbox", "create", BOX, env=self.env)
        assert done.returncode == 0, done.stderr.decode()
        self.root = mailbox_paths(state, BOX)[1]
        server.add_user("mb", maildir=str(self.root),
                        fields=[f"userdb_home={self.root}",
                                "userdb_sieve=file:~/sieve;active=~/lda.sieve"])

    def client(self, user):
        return ManageSieve(self.port, user)

    def deliver_pu(self, message_id):
        done = self.server.lda("deliver", "-f", "s@example.org", "pu@example.org",
                               home=self.home, env=self.user_env,
                               input=message(message_id=message_id))
        assert done.returncode == 0, done.stderr.decode()
        return done.stderr.decode()

    def deliver_mb(self, message_id):
        done = self.server.lda("deliver", "-f", "s@example.org", BOX, env=self.env,
                               input=message(message_id=message_id))
        assert done.returncode == 0, done.stderr.decode()
        return done.stderr.decode()

    def lda(self, *args):
        return self.server.lda(*args, env=self.env)


def where(maildir, message_id):
    """The folder ("" for the inbox) whose new/ holds message_id."""
    found = [folder for folder in ["", *sorted(p.name for p in maildir.iterdir()
                                               if p.name.startswith("."))]
             for f in maildir_files(maildir / folder)
             if message_id.encode() in f.read_bytes()]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if MANAGESIEVE is None:
        pytest.skip("Dovecot's managesieve is not installed (apt-get install dovecot-managesieved)")
    port = free_port()
    with private_dovecot(tmp_path_factory.mktemp("dovecot"), quota_rule=None,
                         extra=EXTRA.format(port=port)) as server:
        yield Site(server, port)


# --- (1) per-user mode: ~/sieve and ~/.dovecot.sieve --------------------------

def test_per_user_upload_activate_switch_and_deactivate(site):
    ms = site.client("pu")
    try:
        assert ms.putscript("work", FILEINTO.format("Work").encode())[0] == "OK"
        assert ms.putscript("lists", FILEINTO.format("Lists").encode())[0] == "OK"
        ms.setactive("work")
        assert os.readlink(site.home / ".dovecot.sieve") == "sieve/work.sieve"
        site.deliver_pu("<pu1@x>")
        assert where(site.pu_maildir, "<pu1@x>") == ".Work"

        ms.setactive("lists")
        assert ms.listscripts() == {"work": False, "lists": True}
        site.deliver_pu("<pu2@x>")
        assert where(site.pu_maildir, "<pu2@x>") == ".Lists"

        ms.setactive("")
        assert not os.path.lexists(site.home / ".dovecot.sieve")
        site.deliver_pu("<pu3@x>")
        assert where(site.pu_maildir, "<pu3@x>") == ""
        ms.deletescript("work")
        assert ms.listscripts() == {"lists": False}
    finally:
        ms.close()


# --- (2) managed mode: the mailbox root's sieve/ and lda.sieve ------------------

def test_managed_upload_activate_runs_and_lda_sieve_reads_the_symlink(site):
    ms = site.client("mb")
    try:
        assert ms.putscript("spam", FILEINTO.format("Junk").encode())[0] == "OK"
        assert ms.putscript("work", FILEINTO.format("Work").encode())[0] == "OK"
        ms.setactive("spam")
        assert (site.root / "sieve" / "spam.sieve").is_file()
        assert os.readlink(site.root / "lda.sieve") == "sieve/spam.sieve"
        site.deliver_mb("<mb1@x>")
        assert where(site.root, "<mb1@x>") == ".Junk"

        listed = site.lda("sieve", "list", BOX)
        assert listed.returncode == 0, listed.stderr.decode()
        rows = [line.split() for line in listed.stdout.decode().splitlines()[1:]]
        assert rows == [[BOX, "spam", "True", "58"], [BOX, "work", "False", "58"]], rows
        shown = site.lda("sieve", "show", BOX)
        assert shown.returncode == 0 and b':create "Junk"' in shown.stdout, shown
        # lda sieve activate keeps ManageSieve's form: webmail sees the change.
        done = site.lda("sieve", "activate", BOX, "work")
        assert done.returncode == 0, done.stderr.decode()
        assert os.readlink(site.root / "lda.sieve") == "sieve/work.sieve"
        assert ms.listscripts() == {"spam": False, "work": True}
        source = site.server.root / "vac.sieve"
        source.write_text(FILEINTO.format("Vac"))
        source.chmod(0o644)
        done = site.lda("sieve", "install", BOX, str(source))
        assert done.returncode == 0, done.stderr.decode()
        assert os.readlink(site.root / "lda.sieve") == "sieve/vac.sieve"
        assert ms.listscripts() == {"spam": False, "work": False, "vac": True}
        ms.setactive("spam")

        ms.setactive("work")
        site.deliver_mb("<mb2@x>")
        assert where(site.root, "<mb2@x>") == ".Work"
        ms.setactive("")
        site.deliver_mb("<mb3@x>")
        assert where(site.root, "<mb3@x>") == ""
        # With none active, lda sieve activate makes ManageSieve's symlink
        # too: a copy there would show in webmail as no script active, and
        # the next activation in webmail would keep it as "dovecot.orig".
        done = site.lda("sieve", "activate", BOX, "work")
        assert done.returncode == 0, done.stderr.decode()
        assert os.readlink(site.root / "lda.sieve") == "sieve/work.sieve"
        assert ms.listscripts() == {"spam": False, "work": True, "vac": False}
        ms.setactive("spam")
        assert ms.listscripts() == {"spam": True, "work": False, "vac": False}
        ms.setactive("")
    finally:
        ms.close()


# --- (3) accepted by ManageSieve, refused by lda ------------------------------

def test_a_latin1_comment_is_uploaded_and_runs(site):
    """Pigeonhole takes a comment's bytes as octets (RFC 5228 section 8.1),
    and so does lda: the script files the message."""
    ms = site.client("mb")
    try:
        status, final = ms.putscript("latin", LATIN1_COMMENT)
        assert status == "OK", final
        ms.setactive("latin")
        log = site.deliver_mb("<mb4@x>")
        assert where(site.root, "<mb4@x>") == ".Latin", log
        assert "UTF-8" not in log
        ms.setactive("")
        ms.deletescript("latin")
    finally:
        ms.close()


# --- (4) hostile: what a delivery must not follow or read ---------------------

def plant(root, make):
    link = root / "lda.sieve"
    if os.path.lexists(link):
        os.unlink(link)
    make(link)


@pytest.mark.parametrize("kind", ["link-out", "link-up-and-back", "fifo", "huge"])
def test_hostile_active_script_is_refused_and_the_message_kept(site, kind, tmp_path):
    outside = site.server.root / "outside.sieve"
    outside.write_text(FILEINTO.format("Stolen"))
    site.server.owner.chown_tree(outside)
    sieve_dir = site.root / "sieve"
    sieve_dir.mkdir(exist_ok=True)
    huge = sieve_dir / "huge.sieve"
    if kind == "link-out":
        plant(site.root, lambda p: p.symlink_to(outside))
    elif kind == "link-up-and-back":
        # Inside the mailbox, but not in its sieve/: a Maildir file.
        (site.root / "notes").write_text(FILEINTO.format("Stolen"))
        site.server.owner.chown_tree(site.root / "notes")
        plant(site.root, lambda p: p.symlink_to("sieve/../notes"))
    elif kind == "fifo":
        plant(site.root, lambda p: os.mkfifo(p, 0o600))
    else:
        huge.write_bytes(b"#" * (1 << 20) + b"\nkeep;\n")
        plant(site.root, lambda p: p.symlink_to("sieve/huge.sieve"))
    for path in (site.root / "lda.sieve", huge):
        if os.path.lexists(path):
            os.lchown(path, site.server.owner.uid, site.server.owner.gid)
    try:
        message_id = f"<hostile-{kind}@x>"
        log = site.deliver_mb(message_id)
        assert where(site.root, message_id) == ""
        if kind.startswith("link"):
            assert "not followed, no script run" in log, log
        if kind == "fifo":
            assert log.count(f"{site.root}/lda.sieve is a FIFO: not read") == 1, log
        if kind == "huge":
            assert "larger than 1 MiB" in log, log
    finally:
        os.unlink(site.root / "lda.sieve")
        for path in (huge, site.root / "notes"):
            if path.exists():
                path.unlink()


# --- (5) script names: what ManageSieve takes, lda takes ----------------------

# RFC 5804 section 1.6: a name is UTF-8 without control characters;
# Dovecot's file storage refuses "/" too.  lda sieve activate takes these.
SHARED_NAMES = ["my filter", '-old "café" \\ copy']
REFUSED_BY_BOTH = ["a/b", "", "tab\tx", "cr\rx", "lf\nx", "del\x7fx", "c1\x85x", "ls\u2028x"]
# Expected difference: Pigeonhole stores these (as sieve/..sieve,
# sieve/...sieve, sieve/.hidden.sieve); lda refuses a name starting with
# ".": a hidden file no `ls` shows, the namespace of lda's temporary files,
# and "." and ".." read as paths to anyone who reads a command or a log.
DOT_NAMES = [".", "..", ".hidden"]


def refused_by_lda(name):
    try:
        check_name(name)
    except UsageError:
        return True
    return False


def test_script_names_managesieve_takes_lda_takes(site):
    ms = site.client("mb")
    try:
        for name in SHARED_NAMES:
            assert ms.putscript(name, b"keep;\n")[0] == "OK"
        ms.setactive(SHARED_NAMES[0])  # lda keeps ManageSieve's link a link
        for name in reversed(SHARED_NAMES):
            done = site.lda("sieve", "activate", BOX, "--", name)
            assert done.returncode == 0, done.stderr.decode()
            assert os.readlink(site.root / "lda.sieve") == f"sieve/{name}.sieve"
            assert ms.listscripts()[name] is True
        for name in REFUSED_BY_BOTH:
            status, final = ms.putscript(name, b"keep;\n")
            assert (status, refused_by_lda(name)) == ("NO", True), (name, final)
        for name in DOT_NAMES:
            assert ms.putscript(name, b"keep;\n")[0] == "OK" and refused_by_lda(name), name
        # Expected difference: Dovecot cuts a literal name at a NUL and
        # stores the rest ("nul"); RFC 5804 section 1.6 allows no control
        # character, and lda refuses the name.
        status, _ = ms.putscript("nul\0x", b"keep;\n")
        assert refused_by_lda("nul\0x")
        if status == "OK":
            assert "nul" in ms.listscripts() and not (site.root / "sieve" / "nul\0x").exists()
            ms.deletescript("nul")
        ms.setactive("")
        for name in SHARED_NAMES + DOT_NAMES:
            ms.deletescript(name)
    finally:
        ms.close()


def test_an_active_script_webmail_named_with_a_leading_dot_is_one_lda_sees(site):
    """ManageSieve stores ".hidden" as sieve/.hidden.sieve, lists it and can
    make it the active one; a delivery runs it.  lda sieve list and show,
    and lda config check, read the same script (lda's own install refuses
    such a name: its temporary files are hidden ones)."""
    ms = site.client("mb")
    try:
        assert ms.putscript(".hidden", b'require "fileinto";\nfileinto "Hidden"\n')[0] == "NO"
        assert ms.putscript(".hidden", FILEINTO.format("Hidden").encode())[0] == "OK"
        ms.setactive(".hidden")
        assert ms.listscripts()[".hidden"] is True
        site.deliver_mb("<hidden1@x>")
        assert where(site.root, "<hidden1@x>") == ".Hidden"
        listed = site.lda("sieve", "list", BOX)
        assert listed.returncode == 0, listed.stderr.decode()
        rows = [line.split() for line in listed.stdout.decode().splitlines()[1:]]
        assert [BOX, ".hidden", "True", str(len(FILEINTO.format("Hidden")))] in rows, rows
        assert [row[1] for row in rows if row[2] == "True"] == [".hidden"], rows
        shown = site.lda("sieve", "show", BOX)
        assert shown.returncode == 0 and b':create "Hidden"' in shown.stdout, shown
        # lda sieve activate takes it back after webmail turned it off.
        ms.setactive("")
        done = site.lda("sieve", "activate", BOX, ".hidden")
        assert done.returncode == 0, done.stderr.decode()
        assert os.readlink(site.root / "lda.sieve") == "sieve/.hidden.sieve"
        assert ms.listscripts()[".hidden"] is True
        # A mistake in it is one config check finds: written as webmail's
        # editor would leave it, not through ManageSieve, which refuses it.
        (site.root / "sieve" / ".hidden.sieve").write_text('require "fileinto";\nfileinto "X"\n')
        checked = site.lda("config", "check")
        assert checked.returncode == 78, checked.stdout.decode()
        assert ".hidden.sieve:3:1: " in checked.stdout.decode(), checked.stdout.decode()
    finally:
        ms.setactive("")
        ms.deletescript(".hidden")
        ms.close()


def test_lda_sieve_deactivate_and_delete_are_what_webmail_sees(site):
    """lda sieve deactivate is SETACTIVE "": ManageSieve then lists no
    script active; lda sieve delete is DELETESCRIPT, and both refuse to
    delete the active script."""
    ms = site.client("mb")
    try:
        assert ms.putscript("on", FILEINTO.format("On").encode())[0] == "OK"
        assert ms.putscript("spare", b"keep;\n")[0] == "OK"
        ms.setactive("on")
        assert ms.command(b'DELETESCRIPT "on"')[0] == "NO"  # the active one
        assert site.lda("sieve", "delete", BOX, "on").returncode == 64
        assert site.lda("sieve", "delete", BOX, "spare").returncode == 0
        listed = ms.listscripts()
        assert "spare" not in listed and listed["on"] is True, listed
        assert site.lda("sieve", "deactivate", BOX).returncode == 0
        listed = ms.listscripts()
        assert "on" in listed and not any(listed.values()), listed
        site.deliver_mb("<off1@x>")
        assert where(site.root, "<off1@x>") == ""
        # lda sieve rename of the active script is RENAMESCRIPT's.
        ms.setactive("on")
        assert site.lda("sieve", "rename", BOX, "on", "lit").returncode == 0
        listed = ms.listscripts()
        assert listed.get("lit") is True and "on" not in listed, listed
        assert site.lda("sieve", "rename", BOX, "lit", "on").returncode == 0
    finally:
        ms.setactive("")
        ms.deletescript("on")
        ms.close()


# --- (6) RENAMESCRIPT and CHECKSCRIPT -----------------------------------------

def test_renaming_the_active_script_keeps_it_running(site):
    """Pigeonhole renames sieve/NAME.sieve and rewrites lda.sieve's link:
    the next delivery runs the script under its new name."""
    ms = site.client("mb")
    try:
        assert ms.putscript("filter one", FILEINTO.format("Renamed").encode())[0] == "OK"
        ms.setactive("filter one")
        ms.renamescript("filter one", "filter two")
        assert os.readlink(site.root / "lda.sieve") == "sieve/filter two.sieve"
        scripts = ms.listscripts()
        assert scripts["filter two"] is True and "filter one" not in scripts
        log = site.deliver_mb("<renamed@x>")
        assert where(site.root, "<renamed@x>") == ".Renamed" and "no script run" not in log, log
        listed = site.lda("sieve", "list", "--json", BOX)
        assert [r["name"] for r in json.loads(listed.stdout) if r["active"]] == ["filter two"]
        ms.setactive("")
        ms.deletescript("filter two")
    finally:
        ms.close()


# What Pigeonhole's CHECKSCRIPT says of each script, and lda's compiler (the
# site's lda.toml turns no extension on, as Pigeonhole's defaults here).
CHECKED = {
    "fileinto-create": FILEINTO.format("A").encode(),
    "vacation": b'require "vacation";\nvacation :days 0 "away";\n',  # Pigeonhole: a warning
    "body-variables": b'require ["body", "variables"];\nif body :contains "x" { set "a" "b"; }\n',
    "mime": b'require ["mime", "foreverypart", "extracttext", "variables"];\nforeverypart {\n'
            b'  if header :mime :type "content-type" "text" { extracttext "t"; }\n}\n',
    "date-relational": b'require ["date", "relational"];\n'
                       b'if currentdate :value "ge" "year" "2020" { keep; }\n',
    "imap4flags-regex": b'require ["imap4flags", "regex"];\n'
                        b'if header :regex "subject" "^a+$" { addflag "\\\\Seen"; }\n',
    "duplicate-enotify": b'require ["duplicate", "enotify"];\n'
                         b'if duplicate { notify "mailto:a@example.org"; }\n',
    "include-missing": b'require "include";\ninclude :personal "nosuch";\n',  # a warning
    "ihave-environment": b'require ["ihave", "environment"];\n'
                         b'if environment "name" "x" { if ihave "foo" { foo; } }\n',
    "crlf-empty": b"\r\n",
    "unknown-command": b"frob;\n",
    "missing-semicolon": b"keep\n",
    "no-require": b'fileinto "A";\n',
    "unknown-extension": b'require "vnd.nothing";\n',
    "editheader-off": b'require "editheader";\naddheader "X" "y";\n',
    "unterminated-string": b'if header "a" "b {\n',
    "unknown-tag": b'if header :foo "a" "b" { keep; }\n',
    "bad-redirect": b'redirect "not an address";\n',
    "latin1-string": b'require "fileinto";\nfileinto "caf\xe9";\n',
    "nested-33": b"if true {" * 33 + b"keep;" + b"}" * 33 + b"\n",
    "spamtest": b'require ["spamtest", "relational", "comparator-i;ascii-numeric"];\n'
                b'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { discard; }\n',
    "virustest": b'require ["virustest", "relational", "comparator-i;ascii-numeric"];\n'
                 b'if virustest :value "ge" :comparator "i;ascii-numeric" "3" { discard; }\n',
    "ereject": b'require "ereject";\nereject "no";\n',
    "vacation-seconds": b'require "vacation-seconds";\nvacation :seconds 60 "x";\n',
    "debug": b'require "vnd.dovecot.debug";\ndebug_log "x";\n',
}
# Expected difference: extensions lda has on by default that Pigeonhole
# leaves out of its default sieve_extensions (a site turns them on in
# dovecot.conf, `sieve_extensions = +spamtest ...`, and ManageSieve then
# takes such a script).  lda refuses nothing Pigeonhole takes, so every
# script ManageSieve stores compiles for a delivery.
LDA_ONLY = {"spamtest", "virustest", "ereject", "vacation-seconds", "debug"}


def test_checkscript_and_lda_agree_on_what_compiles(site):
    ms = site.client("mb")
    try:
        verdicts = {}
        for case, data in CHECKED.items():
            status, final = ms.checkscript(data)
            assert status in ("OK", "NO"), final
            try:
                compile_script(data)
                compiles = True
            except (SieveError, UnicodeDecodeError):
                compiles = False
            verdicts[case] = (status == "OK", compiles)
    finally:
        ms.close()
    assert sum(ok for ok, _ in verdicts.values()) == 10, verdicts
    assert {case for case, (ok, compiles) in verdicts.items() if ok != compiles} == LDA_ONLY
    assert all(compiles for case, (_, compiles) in verdicts.items() if case in LDA_ONLY)
