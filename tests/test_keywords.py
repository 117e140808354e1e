"""Sieve imap4flags keywords stored as Dovecot stores them (issue 18): a
lower-case letter in the Maildir file name's info, named by the folder's
dovecot-keywords file, read back by the real Dovecot where it is installed."""

import os

import pytest

from conftest import maildir_files, message
from dovecot import dovecot  # noqa: F401 - a fixture

JUNK_SCRIPT = 'require "imap4flags";\naddflag "$Junk";\nkeep;\n'


def owned_script(server, name, text):
    """~/.lda.sieve for Dovecot user name, owned (and only writable) by the
    mail owner, as lda's per-user mode wants it."""
    path = server.home(name) / ".lda.sieve"
    path.write_text(text)
    os.chown(path, server.owner.uid, server.owner.gid)
    path.chmod(0o600)


def info_of(path):
    """The letters after ":2," in a Maildir file name."""
    return path.name.split(":2,", 1)[1]


@pytest.mark.xfail(reason="issue 18: keywords are logged and dropped", strict=True)
def test_addflag_keyword_is_a_letter_dovecot_names(dovecot):  # noqa: F811
    maildir = dovecot.add_user("alice")
    owned_script(dovecot, "alice", JUNK_SCRIPT)
    done = dovecot.lda("deliver", "-f", "sender@example.org", "alice@example.org",
                       home=dovecot.home("alice"), input=message())
    assert done.returncode == 0, done.stderr.decode()
    [stored] = maildir_files(maildir, "cur")
    assert info_of(stored) == "a"
    assert (maildir / "dovecot-keywords").read_text() == "0 $Junk\n"
    assert dovecot.flags("alice") == [{"$Junk"}]
