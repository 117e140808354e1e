"""lda in place of dovecot-lda or procmail: their command lines, with only
the program path changed, deliver (issue 19).  Every option is run through
the installed `lda`; an option lda does not know defers (78, 4.3.5), never
bounces; a hostile value in a new option is refused or ignored with a
clear line, and the message is never lost."""

import io
import os
import pwd
import shutil

import pytest

from conftest import fill_mailbox, maildir_files, message, without_site, write_lda_toml, write_maildirsize

# Per-user mode's -d must name the running user (a line naming another one
# is meant for managed mode: 78); these tests run as whoever runs pytest.
ME = pwd.getpwuid(os.getuid()).pw_name
DOVECOT_LINE = ["-f", "sender@example.org", "-d", f"{ME}@example.org",
                "-a", "alice+lists@example.org"]


def first_line(done):
    return done.stderr.decode(errors="replace").splitlines()[0]


def folder(user, name):
    """A Maildir++ folder the user made, as an IMAP client makes one."""
    path = user.maildir / name
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True)
    return path


# --- no `deliver`: the argv decides ------------------------------------------------

@pytest.mark.parametrize("argv", [
    DOVECOT_LINE,
    ["-c", "/etc/dovecot/dovecot.conf", "-d", f"{ME}@example.org"],
    ["-a", ""],  # procmail -a "$EXTENSION" for a recipient without one
    ["-f", "sender@example.org"],
    ["-d", ME],  # procmail -d USER
    ["-ek", "-fsender@example.org", f"-d{ME}@example.org"],  # clustered, attached
    [],  # mailbox_command = /usr/bin/procmail
], ids=["dovecot-lda-pipe", "dovecot-conf", "procmail-empty-extension", "sender-only",
        "procmail-d", "clustered", "bare"])
def test_a_line_without_deliver_delivers(user, argv):
    done = user.run(*argv, input=message())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1


@pytest.mark.parametrize("destination", ["alice@example.org", "alice", "ALICE+x@example.org"],
                         ids=["virtual-user", "procmail-user", "with-extension"])
def test_d_naming_another_user_in_per_user_mode_defers(user, destination):
    """dovecot-lda's virtual line (`-d ${user}@${nexthop}`, run as vmail)
    with only the path changed and no lda.toml: per-user mode stored every
    user's mail, unknown users' too, in vmail's own Maildir, and Postfix
    logged each one sent.  -d names the user to deliver to; per-user mode
    can only deliver to the running one: 78, 4.3.5, the MTA keeps it."""
    done = user.run("-f", "sender@example.org", "-d", destination, input=message())
    assert done.returncode == 78, done.stderr
    assert first_line(done).startswith("4.3.5 ") and 'mode = "managed"' in first_line(done)
    assert maildir_files(user.maildir) == []
    mine = user.run("-f", "sender@example.org", "-d", f"{ME.upper()}+x@example.org",
                    input=message())
    assert mine.returncode == 0 and len(maildir_files(user.maildir)) == 1


def test_main_knows_every_admin_command():
    """lda/main.py tells an admin command from a delivery without click."""
    from lda.cli import cli
    from lda.main import ADMIN_COMMANDS

    assert ADMIN_COMMANDS == set(cli.commands)


def test_bare_lda_without_a_message_prints_the_admin_help(user):
    """A terminal or /dev/null on stdin is a person, not an MTA."""
    import subprocess

    from conftest import LDA

    done = subprocess.run([LDA], stdin=subprocess.DEVNULL, capture_output=True,
                          env=user.env, timeout=60)
    assert b"Commands:" in done.stdout + done.stderr
    assert maildir_files(user.maildir) == []


def test_the_admin_form_with_c_still_works(site):
    alice = site.create("alice@example.org")
    for config in (["-c", str(site.config)], ["--config", str(site.config)],
                   [f"-c{site.config}"], [f"--config={site.config}"]):
        listed = site.run(*config, "mailbox", "list", check=0)
        assert b"alice@example.org" in listed.stdout
    site.run("-c", str(site.config), "deliver", "-f", "s@example.org",
             "alice@example.org", input=message(), check=0)
    site.run("--config", str(site.config), "--help", check=0)
    assert len(maildir_files(alice)) == 1


def test_the_dovecot_line_delivers_to_a_managed_mailbox(site):
    alice = site.create("alice@example.org")
    done = site.run("-f", "sender@example.org", "-d", "alice@example.org",
                    "-a", "alice+lists@example.org", input=message(), check=0)
    assert b"orig_to=<alice+lists@example.org>" in done.stderr
    [path] = maildir_files(alice)
    assert path.read_bytes().startswith(b"Return-Path: <sender@example.org>\n"
                                        b"Delivered-To: alice@example.org\n")


# --- an option lda does not know: the configuration's mistake ----------------------

@pytest.mark.parametrize("argv, named", [
    (["-x", "alice@example.org"], "-x"),
    (["deliver", "-x", "alice@example.org"], "-x"),
    (["-Y", "-d", ME], "-Y"),  # procmail's -Y
    (["--bogus", "alice@example.org"], "--bogus"),
    (["-ez", "alice@example.org"], "-z"),
    (["-d", f"{ME}@example.org", "-m"], "-m requires an argument"),
], ids=["x", "deliver-x", "procmail-Y", "long", "in-a-cluster", "missing-value"])
def test_an_unknown_option_defers_with_78_and_names_it(user, argv, named):
    done = user.run(*argv, input=message())
    assert done.returncode == 78, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("4.3.5 ") and named in first_line(done)
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert maildir_files(user.maildir) == []


@pytest.mark.parametrize("argv", [
    ["-h"], ["--help"], ["--version"], ["-f", "sender@example.org", "-h"], ["-eh"],
    ["deliver", "--help"], ["-c", "/etc/dovecot/dovecot.conf", "--help"],
], ids=["h", "help", "version", "h-after-f", "in-a-cluster", "deliver-help", "after-c"])
def test_a_request_for_help_with_a_message_waiting_defers_it(user, argv):
    """dovecot-lda bounces -h as an unknown option (64).  lda printed its
    usage and exited 0, which Postfix logs as delivered: the message was
    gone.  With a message waiting it is the configuration's mistake, as any
    unknown option is: 78 and 4.3.5, and Postfix keeps the mail."""
    done = user.run(*argv, input=message())
    assert done.returncode == 78, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("4.3.5 ")
    assert maildir_files(user.maildir) == []


def test_a_request_for_help_with_p_naming_the_message_defers_it(user, tmp_path):
    path = tmp_path / "message.eml"
    path.write_bytes(message())
    done = user.run("-h", "-p", str(path))
    assert done.returncode == 78 and first_line(done).startswith("4.3.5 ")


@pytest.mark.parametrize("argv", [["-h"], ["deliver", "--help"], ["--help"]])
def test_a_request_for_help_without_a_message_still_prints_it(user, argv):
    done = user.run(*argv, input=b"")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"usage" in done.stdout.lower()


# --- several recipients, one exit status --------------------------------------------

@pytest.mark.parametrize("argv", [
    ["-d", "alice@example.org", "-f", "sender@example.org", "extra"],
    ["-d", "alice@example.org", "-f", "sender@example.org", "--", "nobody@example.org"],
    ["deliver", "-f", "sender@example.org", "alice@example.org", "nobody@example.org"],
    ["deliver", "-f", "sender@example.org", "nobody@example.org", "alice@example.org"],
], ids=["stray-word", "stray-address", "deliver-unknown-last", "deliver-unknown-first"])
def test_a_recipient_refused_for_good_stores_no_copy_for_the_others(site, argv):
    """A command has one exit status for all its recipients: Postfix's
    pipe(8) bounces every one on a 5.X.X.  lda stored alice's copy and then
    exited 67, so the sender was told the mail failed where it had arrived,
    and sends it again.  A recipient refused for good before the message is
    read now stops the whole command, so the bounce is true for all (a
    stray word after dovecot-lda's line, which dovecot-lda bounces too)."""
    alice = site.create("alice@example.org")
    done = site.run(*argv, input=message())
    assert done.returncode in (64, 67), done.stderr.decode(errors="replace")
    assert first_line(done)[:2] == "5."
    assert maildir_files(alice) == []
    assert b"alice@example.org" in done.stderr  # the log says why its copy was not stored


def looping(message_id, address):
    """A message that says it was delivered to `address` already."""
    return message(message_id=message_id).replace(
        b"Subject:", f"Delivered-To: {address}\nSubject:".encode(), 1)


@pytest.mark.parametrize("order", ["looping-last", "looping-first"])
def test_a_mail_loop_for_one_recipient_stores_no_copy_for_the_others(site, order):
    """A loop is found once the header is read, after resolving: lda stored
    bob's copy, then exited 65 for alice's loop, and pipe(8) bounced both."""
    site.create("alice@example.org")
    bob = site.create("bob@example.org")
    recipients = ["bob@example.org", "alice@example.org"]
    if order == "looping-first":
        recipients.reverse()
    done = site.deliver(looping("<loop@x>", "alice@example.org"), *recipients)
    assert done.returncode == 65, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("5.4.6 ")
    assert maildir_files(bob) == []
    assert b"not stored: alice@example.org was refused" in done.stderr


@pytest.mark.parametrize("how", ["quota_full-reject", "-e"])
def test_a_full_mailbox_refused_for_good_stores_no_copy_for_the_others(site, how):
    """Over quota with quota_full = "reject" (or dovecot-lda's -e) is 77,
    5.2.2, for every recipient of the command: alice's copy was stored."""
    if how == "quota_full-reject":
        site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                           "log": "stderr", "quota_full": "reject"})
    alice = site.create("alice@example.org")
    full = site.create("full@example.org", "--quota-storage", "1K")
    fill_mailbox(full, 1024)
    argv = ["deliver", "-f", "sender@example.org", "alice@example.org", "full@example.org"]
    if how == "-e":
        argv[1:1] = ["-e"]
    done = site.run(*argv, input=message())
    assert done.returncode == 77, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("5.2.2 ")
    assert maildir_files(alice) == [] and maildir_files(full) == []
    assert b"not stored: full@example.org was refused" in done.stderr


def test_a_full_mailbox_that_has_the_message_already_stops_no_one(site):
    """A resend: full@ got the message before it filled up, so its copy is
    a duplicate, not a refusal, and bob's copy goes in."""
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "log": "stderr", "quota_full": "reject"})
    full = site.create("full@example.org", "--quota-storage", "2K")
    site.deliver(message(), "full@example.org", check=0)
    fill_mailbox(full, 2048)
    bob = site.create("bob@example.org")
    site.deliver(message(), "bob@example.org", "full@example.org", check=0)
    assert len(maildir_files(bob)) == 1 and len(maildir_files(full)) == 1


def full_with_a_script(site):
    """(bob's Maildir, full's): full@ is over quota under quota_full =
    "reject", and has a Sieve script, so it is judged under its locks."""
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "sendmail": [str(site.root / "sendmail"), "-i"], "log": "stderr",
                       "quota_full": "reject"})
    bob = site.create("bob@example.org")
    full = site.create("full@example.org", "--quota-storage", "1K")
    (full / "lda.sieve").write_text("keep;\n")
    fill_mailbox(full, 1024)
    return bob, full


@pytest.mark.parametrize("order", ["full-last", "full-first"])
def test_a_refusal_found_after_another_copy_is_stored_goes_out_as_a_dsn(site, order):
    """A full mailbox with a Sieve script is judged only when its script
    has run, under the locks, after bob's copy may be stored (so is one
    that filled in a race with the pre-check).  lda exited 77 with bob's
    copy stored: pipe(8) bounced both, and the sender sends bob's again.
    The one refused recipient now gets its own DSN, as Postfix's local(8)
    bounces one recipient, and the command succeeds for bob."""
    bob, full = full_with_a_script(site)
    recipients = ["bob@example.org", "full@example.org"]
    if order == "full-first":
        recipients.reverse()
    done = site.deliver(message(), *recipients, sender="carol@example.net")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(bob)) == 1 and maildir_files(full) == []
    [(args, dsn)] = site.sent()
    assert args[-4:] == ["-f", "<>", "--", "carol@example.net"], args
    assert b'report-type="delivery-status"' in dsn and b"Status: 5.2.2" in dsn
    assert b"Final-Recipient: rfc822; full@example.org" in dsn
    assert b"bob@example.org" not in dsn.split(b"Content-Type: text/rfc822-headers")[0]
    assert b"DSN sent to carol@example.net" in done.stderr
    # A resend of the same message: bob's copy is a duplicate, full's still
    # refused; the sender hears of it again (a new attempt), bob gets nothing.
    again = site.deliver(message(), *recipients, sender="carol@example.net")
    assert again.returncode == 0, again.stderr.decode(errors="replace")
    assert len(maildir_files(bob)) == 1 and len(site.sent()) == 2


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON"])
def test_a_refusal_after_a_stored_copy_with_the_null_sender_sends_nothing(site, sender):
    """A bounce is never bounced (RFC 5321 section 4.5.5): with -f "" (or
    pipe(8)'s default null_sender, MAILER-DAEMON) the refusal is logged, no
    DSN goes out, and bob's copy stands."""
    bob, full = full_with_a_script(site)
    done = site.deliver(message(), "bob@example.org", "full@example.org", sender=sender)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(bob)) == 1 and site.sent() == []
    assert b"no DSN to the null sender" in done.stderr


def test_a_refusal_after_a_stored_copy_whose_dsn_cannot_go_out_bounces_all(site):
    """When sendmail refuses the DSN, the command's 77 is the only way left
    to tell the sender: as before, with the reason logged."""
    bob, full = full_with_a_script(site)
    (site.root / "sendmail").write_text("#!/bin/sh\necho refused >&2\nexit 75\n")
    done = site.deliver(message(), "bob@example.org", "full@example.org",
                        sender="carol@example.net")
    assert done.returncode == 77, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("5.2.2 ")
    assert len(maildir_files(bob)) == 1 and maildir_files(full) == []
    assert b"DSN not sent" in done.stderr


def test_an_ereject_of_one_recipient_of_several_sends_the_mdn_instead(site):
    """A Sieve ereject refuses in the protocol, for one recipient; a command
    has one status for all, so lda exited 77 with bob's copy stored.  As for
    one mailbox of an alias, the refusal goes out as an MDN instead."""
    alice, bob = site.create("alice@example.org"), site.create("bob@example.org")
    (alice / "lda.sieve").write_text('require "ereject";\nereject "Not me.";\n')
    site.deliver(message(), "alice@example.org", "bob@example.org",
                 sender="carol@example.net", check=0)
    assert maildir_files(alice) == [] and len(maildir_files(bob)) == 1
    [(args, mdn)] = site.sent()
    assert args[-1] == "carol@example.net" and b"Not me." in mdn


def test_no_recipient_in_managed_mode_is_a_configuration_error(site):
    """`lda deliver -f S` with no recipient and no RECIPIENT: a pipe line
    that lost its ${recipient}.  It exited 64, 5.5.4, and Postfix bounced
    the mail; it is the line's mistake, as an unknown option's is: 78."""
    site.create("alice@example.org")
    done = site.run("deliver", "-f", "sender@example.org", input=message())
    assert done.returncode == 78, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("4.3.5 ")


@pytest.mark.parametrize("word", ["alice@example.org", "alice", "delivr"])
def test_a_word_that_names_no_command_with_a_message_waiting_defers_it(site, word):
    """`mailbox_command = lda "$RECIPIENT"` (procmail's habit, not lda's
    form) got the admin's "No such command" and exit 64: Postfix bounced
    every message (64), with no status code in its reason.  A mistake in the
    MTA's line is a configuration error: 78, 4.3.5, and the mail waits."""
    alice = site.create("alice@example.org")
    done = site.run(word, input=message())
    assert done.returncode == 78, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("4.3.5 ") and "lda deliver" in first_line(done)
    assert maildir_files(alice) == []
    done = site.run(word, input=b"")  # no message: an admin's typo, as before
    assert done.returncode == 64 and b"No such command" in done.stderr


# --- each option -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Lists", "INBOX/Lists", "INBOX.Lists", "inbox.Lists"])
def test_m_names_the_default_folder(user, name):
    lists = folder(user, ".Lists")
    user.run("-d", f"{ME}@example.org", "-m", name, input=message(), check=0)
    assert len(maildir_files(lists)) == 1 and maildir_files(user.maildir) == []


@pytest.mark.parametrize("name", ["INBOX.INBOX", "inbox.INBOX", "INBOX/INBOX"])
def test_m_inbox_within_the_inbox_namespace_is_the_inbox(user, name):
    """"INBOX." is the namespace prefix lda drops ("INBOX.Lists" is
    .Lists), so "INBOX.INBOX" is the INBOX.  It was a TypeError since
    1ec6d52: 75 with a traceback, on every retry until the message bounced."""
    done = user.run("-d", f"{ME}@example.org", "-m", name, "-o",
                    "lda_mailbox_autocreate=yes", input=message())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1
    assert not (user.maildir / ".INBOX").exists()


def test_m_makes_no_folder_unless_autocreate_says_so(user):
    user.run("-m", "Lists/Python", input=message(message_id="<1@x>"), check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert not (user.maildir / ".Lists.Python").exists()
    user.run("-m", "Lists/Python", "-o", "lda_mailbox_autocreate=yes",
             input=message(message_id="<2@x>"), check=0)
    assert len(maildir_files(user.maildir / ".Lists.Python")) == 1
    assert (user.maildir / ".Lists.Python" / "maildirfolder").is_file()


@pytest.mark.parametrize("script", [None, "keep;\n", 'if header :is "subject" "x" { discard; }\n'],
                         ids=["no-script", "keep", "implicit-keep"])
def test_m_with_autocreate_makes_the_folder_a_sieve_keep_goes_to(user, script):
    """dovecot-lda's -m with lda_mailbox_autocreate: the keep (a script's,
    or the implicit one) goes to that folder, made if need be, with or
    without a Sieve script, as dovecot-lda makes it."""
    if script is not None:
        (user.home / ".lda.sieve").write_text(script)
    user.run("-m", "Lists", "-o", "lda_mailbox_autocreate=yes", input=message(), check=0)
    assert len(maildir_files(user.maildir / ".Lists")) == 1
    assert maildir_files(user.maildir) == []


def test_a_resend_of_a_delivered_message_makes_no_folder_the_user_deleted(user):
    """The first copy made .Lists; the user deleted the folder and the
    message with it; the MTA resends.  DeliveredTo discards the resend,
    and that is all it does: the folder was made when the message was
    first written, before the check, and came back, empty and subscribed."""
    msg = message(message_id="<again@x>")
    options = ("-m", "Lists", "-o", "lda_mailbox_autocreate=yes")
    user.run(*options, input=msg, check=0)
    assert len(maildir_files(user.maildir / ".Lists")) == 1
    shutil.rmtree(user.maildir / ".Lists")
    user.run(*options, input=msg, check=0)
    assert not (user.maildir / ".Lists").exists()
    assert maildir_files(user.maildir) == []


@pytest.mark.parametrize("name", ["~x", "~", "Lists.~x", "L" * 255, "\u00e9" * 127,
                                  "L" * 253 + "\u00e9"],
                         ids=["tilde", "tilde-alone", "tilde-below", "255-bytes", "utf7-longer",
                              "utf7-just-longer"])
def test_m_naming_a_folder_dovecot_cannot_open_is_the_inbox(user, name):
    """Dovecot refuses a mailbox name that begins with "~" (its fs-name
    check), and a folder whose directory name (".", then modified UTF-7)
    is over 255 bytes cannot be made: dovecot-lda stores into INBOX.  lda
    made .~x, which IMAP lists but never opens, or deferred forever on
    "File name too long"."""
    user.run("-m", name, "-o", "lda_mailbox_autocreate=yes", input=message(), check=0)
    made = [p.name for p in user.maildir.iterdir() if p.name.startswith(".") and p.is_dir()]
    if name == "Lists.~x":  # only the name's start is Dovecot's concern
        assert made == [".Lists.~x"]
        return
    assert len(maildir_files(user.maildir)) == 1 and made == []


@pytest.mark.parametrize("key", ["lda_original_recipient_header", "mail_location",
                                 "plugin/quota_exceeded_message", "hostname",
                                 "postmaster_address", "recipient_delimiter", "sendmail_path"])
def test_an_empty_o_value_is_the_setting_s_default(user, key):
    """dovecot-lda takes -o KEY= as the setting left empty, which for the
    first two is Dovecot's own default (no header; the mail location found
    by itself): it delivers.  lda deferred (78) on several of them, a line
    a site copied from its dovecot-lda transport."""
    done = user.run("-f", "sender@example.org", "-o", f"{key}=", input=message())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1


def test_an_empty_m_after_a_folder_leaves_the_folder(user):
    """dovecot-lda ignores -m "" (its ${extension} without an extension)
    wherever it comes, so "-m Lists -m ${extension}" files into Lists;
    lda let the last -m win and stored into the inbox."""
    lists = folder(user, ".Lists")
    user.run("-m", "Lists", "-m", "", input=message(), check=0)
    assert len(maildir_files(lists)) == 1 and maildir_files(user.maildir) == []


def test_an_empty_m_is_the_inbox(user):
    """-m "${extension}" without an extension, as dovecot-lda takes it."""
    user.run("-d", f"{ME}@example.org", "-m", "", input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1


def test_a_without_at_is_procmails_extension(user):
    lists = folder(user, ".lists")
    user.run("-a", "lists", input=message(), check=0)
    assert len(maildir_files(lists)) == 1


def test_p_reads_the_message_from_a_file(user, tmp_path):
    path = tmp_path / "message.eml"
    path.write_bytes(message(subject="from a file"))
    user.run("-d", f"{ME}@example.org", "-p", str(path), input=b"not this", check=0)
    [stored] = maildir_files(user.maildir)
    assert b"Subject: from a file" in stored.read_bytes()


FROM_LINE = b"From bounce@example.net  Wed Jan  3 01:05:34 1996\n"


@pytest.mark.parametrize("first_line, argv, env, return_path", [
    (FROM_LINE, [], {}, b"Return-Path: <bounce@example.net>\n"),
    (b"From <bounce@example.net> Wed Jan  3 01:05:34 1996\n", [], {},
     b"Return-Path: <bounce@example.net>\n"),
    (b"From bounce@example.net Thu, 9 Nov 2002 22:33:52 +0300\n", [], {},
     b"Return-Path: <bounce@example.net>\n"),
    (b"From MAILER-DAEMON  Wed Jan  3 01:05:34 1996\n", [], {}, b"Return-Path: <>\n"),
    (FROM_LINE, ["-f", "other@example.org"], {}, b"Return-Path: <other@example.org>\n"),
    (FROM_LINE, [], {"SENDER": "env@example.org"}, b"Return-Path: <env@example.org>\n"),
], ids=["address", "bracketed", "rfc-date", "null-sender", "f-wins", "sender-env-wins"])
def test_the_from_line_names_the_sender_when_nothing_else_does(user, first_line, argv, env,
                                                               return_path):
    """dovecot-lda (src/lda/main.c) and procmail take the envelope sender
    from a leading mbox From_ line when -f does not name one: `formail -s`
    splitting an mbox, or pipe(8) with flag F and no ${sender}.  Postfix
    writes MAILER-DAEMON there for the null sender."""
    user.run(*argv, "-d", ME, input=first_line + message(), env=env, check=0)
    [stored] = maildir_files(user.maildir)
    assert stored.read_bytes() == return_path + f"Delivered-To: {ME}\n".encode() + message()


POSTFIX_TOP = (FROM_LINE + b"Return-Path: <bounce@example.net>\n"
               b"X-Original-To: alice@example.org\nDelivered-To: alice@example.org\n")


@pytest.mark.parametrize("argv, env, added", [
    ([], {}, b""),
    ([], {"RECIPIENT": "alice@example.org"}, b""),
    ([], {"RECIPIENT": "bob@example.org"}, b"Delivered-To: bob@example.org\n"),
    (["-d", f"{ME}@example.org"], {}, f"Delivered-To: {ME}@example.org\n".encode()),
], ids=["none-named", "recipient-env", "another-named", "another-d"])
def test_postfix_fields_on_top_are_this_deliverys(user, argv, env, added):
    """What Postfix's local(8) hands procmail, and procmail hands lda from a
    `| lda` recipe with RECIPIENT cleared: a Delivered-To on top that names
    no address lda was given is still this delivery's when none was given
    (the login name is then the recipient, and no MTA writes it)."""
    user.run(*argv, input=POSTFIX_TOP + message(), env=env, check=0)
    [stored] = maildir_files(user.maildir)
    assert stored.read_bytes() == added + POSTFIX_TOP[len(FROM_LINE):] + message()


@pytest.mark.parametrize("first_line, warned", [
    (b"From bad\x01sender@example.net  Wed Jan  3 01:05:34 1996\n", b"control character"),
    (b"From " + b"a" * 400 + b"@example.net  Wed Jan  3 01:05:34 1996\n", b"320 octets"),
    # Past the 1,024 bytes lda reads of it: no date follows what is read.
    (b"From " + b"a" * (3 << 20) + b"  Wed Jan  3 01:05:34 1996\n", None),
    (b"From caf\xe9@example.net  Wed Jan  3 01:05:34 1996\n", b"not UTF-8"),
    (b"From \n", None),
    (b"From  Wed Jan  3 01:05:34 1996\n", None),
    (b"From : Sender <sender@example.org>\n", None),
    (b"From bounce@example.net\n", None),
    (b"From bounce@example.net yesterday\n", None),
], ids=["control", "long", "3mb", "not-utf8", "empty", "no-address", "obsolete-from-field",
        "no-date", "not-a-date"])
def test_a_hostile_from_line_names_no_sender(user_log_on_stderr, first_line, warned):
    """A From_ line lda's sender check refuses (as it refuses -f) gives no
    sender, with one warning; one without a date after the address is no
    envelope line (RFC 5322's obsolete "From :" field, say) and names none,
    as in dovecot-lda (mbox_from_parse).  The line is dropped all the same,
    as dovecot-lda drops it, and the message delivered, never refused."""
    user = user_log_on_stderr
    done = user.run("-d", ME, input=first_line + message(), check=0)
    [stored] = maildir_files(user.maildir)
    assert stored.read_bytes() == f"Delivered-To: {ME}\n".encode() + message()
    if warned:
        [line] = [line for line in done.stderr.splitlines() if b"From_ line" in line]
        assert b"sender ignored" in line and warned in line and len(line) < 400
    else:
        assert b"From_ line" not in done.stderr


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_p_naming_no_file_defers_with_78(user, tmp_path, make):
    path = tmp_path / "message.eml"
    if make == "directory":
        path.mkdir()
    done = user.run("-d", f"{ME}@example.org", "-p", str(path), input=message())
    assert done.returncode == 78 and first_line(done).startswith("4.3.5 -p ")


def test_r_is_the_recipient_without_d(site):
    alice = site.create("alice@example.org")
    site.run("-r", "alice@example.org", input=message(), check=0)
    done = site.run("-d", "alice@example.org", "-r", "bob@example.org",
                    input=message(message_id="<2@x>"), check=0)
    assert b"-r 'bob@example.org'" in done.stderr
    assert len(maildir_files(alice)) == 2


def test_c_naming_dovecot_conf_is_ignored_with_a_warning(user_log_on_stderr):
    done = user_log_on_stderr.run("-c", "/etc/dovecot/dovecot.conf", "-d", ME,
                                  input=message(), check=0)
    assert b"/etc/dovecot/dovecot.conf" in done.stderr and b"ignored" in done.stderr
    assert len(maildir_files(user_log_on_stderr.maildir)) == 1


needs_doveconf = pytest.mark.skipif(not os.access("/usr/bin/doveconf", os.X_OK),
                                    reason="Dovecot's doveconf is not installed")


@needs_doveconf
@pytest.mark.parametrize("conf", [
    "lda_mailbox_autocreate = yes\n",
    "protocol lda {\n  lda_mailbox_autocreate = yes\n}\n",
    "lda_mailbox_autocreate = yes\nprotocol imap {\n  lda_mailbox_autocreate = no\n}\n",
], ids=["global", "protocol-lda", "protocol-imap-says-no"])
def test_m_makes_its_folder_when_the_dovecot_conf_c_names_says_so(user, tmp_path, conf):
    """A site's dovecot-lda line, -c and all: the folder dovecot-lda made
    (lda_mailbox_autocreate = yes in its dovecot.conf, as `protocol lda`
    sees it) is made, where lda stored into the INBOX."""
    (tmp_path / "dovecot.conf").write_text(conf)
    user.run("-c", str(tmp_path / "dovecot.conf"), "-m", "Lists", input=message(), check=0)
    assert len(maildir_files(user.maildir / ".Lists")) == 1
    assert maildir_files(user.maildir) == []


@needs_doveconf
def test_o_on_the_line_wins_over_dovecot_conf(user, tmp_path):
    (tmp_path / "dovecot.conf").write_text("lda_mailbox_autocreate = yes\n")
    user.run("-c", str(tmp_path / "dovecot.conf"), "-m", "Lists", "-o",
             "lda_mailbox_autocreate=no", input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert not (user.maildir / ".Lists").exists()


@needs_doveconf
def test_a_broken_dovecot_conf_defers_a_folder_it_would_decide(user, tmp_path):
    """dovecot-lda cannot start on a dovecot.conf Dovecot cannot parse
    (it exits 75): lda defers too, 78 with 4.3.5 naming the file, when it
    needs the file, for a -m folder that does not exist yet."""
    conf = tmp_path / "dovecot.conf"
    conf.write_text("lda_mailbox_autocreate = maybe\n")
    done = user.run("-c", str(conf), "-m", "Lists", input=message())
    assert done.returncode == 78
    assert first_line(done).startswith("4.3.5 ") and str(conf) in first_line(done)
    assert maildir_files(user.maildir) == []
    lists = folder(user, ".Lists")
    user.run("-c", str(conf), "-m", "Lists", input=message(), check=0)
    assert len(maildir_files(lists)) == 1


def test_a_dovecot_conf_that_cannot_be_read_is_one_warning(user_log_on_stderr, tmp_path):
    missing = tmp_path / "no" / "dovecot.conf"
    done = user_log_on_stderr.run("-c", str(missing), "-m", "Lists", input=message(), check=0)
    assert done.stderr.decode().count(str(missing)) == 1
    assert len(maildir_files(user_log_on_stderr.maildir)) == 1
    assert not (user_log_on_stderr.maildir / ".Lists").exists()


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_dovecot_conf_that_is_no_file_is_one_warning(user_log_on_stderr, tmp_path, kind):
    """-c naming a FIFO opened (non-blocking) as readable, and doveconf then
    waited on it for a writer: the delivery hung until pipe(8)'s time limit.
    Only a regular file is read; anything else is one warning, as a file
    that cannot be read is."""
    conf = tmp_path / "dovecot.conf"
    os.mkfifo(conf) if kind == "fifo" else conf.mkdir()
    done = user_log_on_stderr.run("-c", str(conf), "-m", "Lists", input=message(), check=0,
                                  timeout=30)
    assert done.stderr.decode().count(str(conf)) == 1
    assert len(maildir_files(user_log_on_stderr.maildir)) == 1


@pytest.mark.parametrize("doveconf, conf", [
    (("/nonexistent/doveconf",), "lda_mailbox_autocreate = yes\n"),
    (("/usr/bin/doveconf",), None),
], ids=["no-doveconf", "no-file"])
def test_without_doveconf_or_the_file_the_settings_are_lda_s(tmp_path, doveconf, conf):
    """As without Dovecot: autocreate no, subscribe as lda.toml says."""
    from lda.deliver.dropin import FolderSettings

    path = tmp_path / "dovecot.conf"
    if conf is not None:
        path.write_text(conf)
    assert FolderSettings(conf=str(path), doveconf=doveconf).for_new_folder() == (False, None)


@needs_doveconf
@pytest.mark.parametrize("conf, given, settings", [
    ("lda_mailbox_autocreate = yes\nlda_mailbox_autosubscribe = yes\n", {}, (True, True)),
    ("lda_mailbox_autosubscribe = yes\n", {}, (False, True)),
    # Dovecot's default, written or not, leaves lda.toml's subscribe_new_folders.
    ("lda_mailbox_autocreate = yes\nlda_mailbox_autosubscribe = no\n", {}, (True, None)),
    ("protocol imap {\n  lda_mailbox_autocreate = yes\n}\n", {}, (False, None)),
    ("lda_mailbox_autocreate = yes\nprotocol lda {\n  lda_mailbox_autocreate = no\n}\n",
     {}, (False, None)),
    ("lda_mailbox_autocreate = yes\nlda_mailbox_autosubscribe = yes\n",
     {"autocreate": False, "subscribe_given": True}, (False, None)),
], ids=["both", "subscribe-only", "written-default", "other-protocol", "protocol-lda-says-no",
        "o-gave-both"])
def test_dovecot_conf_is_read_as_the_protocol_lda_filter_sees_it(tmp_path, conf, given,
                                                                  settings):
    from lda.deliver.dropin import FolderSettings

    (tmp_path / "dovecot.conf").write_text(conf)
    assert FolderSettings(conf=str(tmp_path / "dovecot.conf"),
                          **given).for_new_folder() == settings


def test_k_t_and_e_are_accepted(user):
    user.run("-k", "-t", "-e", "-d", ME, input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1


@pytest.mark.parametrize("options, status, code", [
    ([], 75, "4.2.2"),
    (["-o", "quota_full_tempfail=no"], 77, "5.2.2"),
    (["-o", "quota_full_tempfail=yes"], 75, "4.2.2"),
    (["-e"], 77, "5.2.2"),
    (["-e", "-o", "quota_full_tempfail=yes"], 75, "4.2.2"),
], ids=["default", "tempfail-no", "tempfail-yes", "e", "e-tempfail-yes"])
def test_o_quota_full_tempfail_decides_an_over_quota_answer(user, options, status, code):
    write_maildirsize(user.maildir, b"1000S\n1000 1\n")
    done = user.run(*options, "-d", ME, input=message())
    assert done.returncode == status and first_line(done).startswith(code + " ")


def test_o_recipient_delimiter_and_mail_location(user, tmp_path):
    lists = tmp_path / "Mail" / ".lists"
    for sub in ("tmp", "new", "cur"):
        (lists / sub).mkdir(parents=True)
    user.run("-d", f"{ME}-lists@example.org", "-o", "recipient_delimiter=-",
             "-o", f"mail_location=maildir:{tmp_path / 'Mail'}", input=message(), check=0)
    assert len(maildir_files(lists)) == 1 and maildir_files(user.maildir) == []


def test_o_without_an_lda_equivalent_is_one_warning(user_log_on_stderr):
    done = user_log_on_stderr.run("-o", "mail_plugins=quota sieve", "-d", ME,
                                  input=message(), check=0)
    warned = [line for line in done.stderr.decode().splitlines() if "mail_plugins" in line]
    assert len(warned) == 1 and "ignored" in warned[0]
    assert len(maildir_files(user_log_on_stderr.maildir)) == 1


@pytest.mark.parametrize("setting", [
    "quota_full_tempfail=maybe", "lda_mailbox_autocreate=", "no-equals-sign", "=yes",
    "recipient_delimiter=\n", "recipient_delimiter=@", "mail_location=mbox:~/mail",
    "mail_location=maildir:~/Maildir:LAYOUT=fs", "mail_location=maildir:/home/%u",
], ids=["not-yes-or-no", "empty-bool", "no-equals", "no-key", "delimiter-lf",
        "delimiter-at", "mbox", "layout-option", "variable"])
def test_o_with_a_value_lda_cannot_take_defers_with_78(user, setting):
    done = user.run("-o", setting, "-d", ME, input=message())
    assert done.returncode == 78, done.stderr.decode(errors="replace")
    assert first_line(done).startswith("4.3.5 ")
    assert maildir_files(user.maildir) == []


# --- hostile values ---------------------------------------------------------------

FOLDER_ATTACKS = {
    "dot-dot": "../../etc", "inbox-dot-dot": "INBOX/../x", "lf": "Lists\nX-Injected: 1",
    "cr": "Lists\rX", "long": "L" * 300, "leading-dot": ".hidden", "c1": "Lists\x85",
}


@pytest.mark.parametrize("value", FOLDER_ATTACKS.values(), ids=FOLDER_ATTACKS.keys())
@pytest.mark.parametrize("option", ["-m", "-a"])
def test_a_hostile_folder_or_extension_goes_to_the_inbox(user_log_on_stderr, tmp_path,
                                                        option, value):
    user = user_log_on_stderr
    done = user.run(option, value, "-d", ME, "-o", "lda_mailbox_autocreate=yes",
                    input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1
    assert sorted(p.name for p in user.maildir.iterdir()) == ["cur", "new", "tmp"]
    log = done.stderr.decode(errors="replace")
    assert "delivered to INBOX" in log
    assert not any(line.startswith("X-Injected") for line in log.splitlines()), log
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("option", ["-d", "-r"])
@pytest.mark.parametrize("value", ["a\nX-Injected: yes@example.net", "a\x01b@example.net",
                                   "a" * 988 + "@example.net"], ids=["lf", "soh", "long"])
def test_a_hostile_d_or_r_is_refused_as_a_recipient_is(site, option, value):
    alice = site.create("alice@example.org")
    done = site.run(option, value, input=message())
    assert done.returncode == 67 and first_line(done).startswith("5.1.3 ")
    assert maildir_files(alice) == []


@pytest.mark.parametrize("value", ["x\ny", "x" * 5000, "../../../etc/shadow\r"],
                         ids=["lf", "long", "dot-dot-cr"])
def test_a_hostile_p_or_c_is_a_clear_78_or_warning(user_log_on_stderr, value):
    user = user_log_on_stderr
    done = user.run("-d", ME, "-p", value, input=message())
    assert done.returncode == 78 and first_line(done).startswith("4.3.5 -p ")
    assert len(first_line(done)) < 400
    done = user.run("-d", ME, "-c", value, input=message(), check=0)
    assert "\n" not in value or "x\ny" not in done.stderr.decode()
    assert len(maildir_files(user.maildir)) == 1


@pytest.mark.parametrize("argv, status", [
    (["-p", "a\0b"], 78), (["-m", "a\0b"], 0), (["-a", "a\0b"], 0), (["-o", "a\0=b"], 0),
    (["-o", "hostname=a\0b"], 78), (["-o", "postmaster_address=a\r\nBcc: x"], 78),
    (["-c", "a\0b"], 0),
], ids=["p", "m", "a", "o-key", "o-value", "o-crlf", "c"])
def test_a_nul_in_process_is_refused_or_ignored(tmp_path, argv, status):
    """No execve passes a NUL; an in-process caller may."""
    from lda.deliver.command import deliver

    assert deliver([*argv, "-d", ME], stdin=io.BytesIO(message()),
                   environ={"HOME": str(tmp_path)}) == status
    assert len(maildir_files(tmp_path / "Maildir")) == (status == 0)


def test_a_long_o_key_is_warned_shortly(user_log_on_stderr):
    done = user_log_on_stderr.run("-o", "k" * 10000 + "=1", "-d", ME,
                                  input=message(), check=0)
    assert max(map(len, done.stderr.decode().splitlines())) < 400


def test_help_lists_every_option(user):
    out = user.run("deliver", "--help", check=0).stdout.decode()
    for option in ("-f", "-a", "-c", "-d", "-e", "-k", "-m", "-o", "-p", "-r", "-t"):
        assert f"  {option} " in out or f"  {option}," in out or f" {option}\n" in out, option


def test_the_config_file_of_a_toml_name_is_still_read(user, tmp_path):
    config = write_lda_toml(tmp_path / "other.toml", {"mode": "user",
                                                      "maildir": str(tmp_path / "M")})
    user.run("-c", str(config), "-d", ME, input=message(), check=0)
    assert len(maildir_files(tmp_path / "M")) == 1


@pytest.mark.parametrize("argv, absent", [
    (["-f", "s@x.org", "-d", ME], ("lda.deliver.dropin", "lda.store.folders")),
    (["-f", "s@x.org", "-a", "", "-d", ME], ("lda.deliver.dropin",)),
    (["-d", ME, "-m", "INBOX/Lists"], ("lda.sieve",)),
], ids=["plain", "empty-extension", "m"])
def test_a_delivery_imports_only_the_options_it_uses(user, argv, absent):
    """The start-up budget (lda/startup/__init__.py): dovecot-lda's options
    cost nothing to a line without them, and -m does not bring lda.sieve."""
    script = ("import io, sys\n"
              "from lda.deliver.command import deliver\n"
              f"rc = deliver({argv!r}, stdin=io.BytesIO(b'Message-ID: <i@x>\\n\\nb\\n'))\n"
              "print(rc, ' '.join(sorted(sys.modules)))\n")
    rc, *loaded = without_site(script, user.env).stdout.split()
    assert rc == "0" and sorted(set(loaded).intersection(absent)) == []


@pytest.mark.parametrize("argv, header, logged", [
    ([], b"X-Original-To: <List@example.org>\n", "orig_to=<List@example.org>"),
    (["-a", "given@example.org"], b"X-Original-To: list@example.org\n",
     "orig_to=<given@example.org>"),
    ([], b"X-Original-To: a\x01b@example.org\n", "original recipient ignored"),
    ([], b"X-Original-To: a@example.org\n folded@example.org\n", "original recipient ignored"),
    ([], b"", "status=sent"),
], ids=["from-the-header", "a-wins", "hostile", "folded", "absent"])
def test_o_lda_original_recipient_header(user_log_on_stderr, argv, header, logged):
    """dovecot's lda_original_recipient_header: the field an MTA wrote the
    original recipient into, read when -a and ORIGINAL_RECIPIENT are not
    given; checked as -a is, since a sender could write it too."""
    user = user_log_on_stderr
    done = user.run(*argv, "-o", "lda_original_recipient_header=X-Original-To", "-d",
                    f"{ME}@example.org", input=header + message(), check=0)
    assert logged in done.stderr.decode(errors="replace")
    assert len(maildir_files(user.maildir)) == 1


@pytest.mark.parametrize("name", [" ", "X Original", "X-Original:To", "X-\u00e9"],
                         ids=["blank", "space", "colon", "non-ascii"])
def test_o_lda_original_recipient_header_must_name_a_field(user, name):
    done = user.run("-o", f"lda_original_recipient_header={name}", "-d", ME,
                    input=message())
    assert done.returncode == 78 and first_line(done).startswith("4.3.5 ")


PROCMAILRC = b':0:\n* ^List-Id:.*python\nPython/\n'


@pytest.mark.parametrize("sieve", [None, ".lda.sieve", ".dovecot.sieve"])
def test_a_procmailrc_that_lda_does_not_read_is_named_in_the_log(user_log_on_stderr, sieve):
    """A site that swaps procmail for lda keeps its users' ~/.procmailrc,
    which lda does not read: without a Sieve script to take its place, each
    delivery says so, naming procmail-convert, and the message still goes
    to the inbox.  With a script, the user has moved on: nothing said."""
    user = user_log_on_stderr
    (user.home / ".procmailrc").write_bytes(PROCMAILRC)
    if sieve:
        (user.home / sieve).write_text("keep;\n")
    done = user.run("-a", "", input=message(), check=0)
    assert len(maildir_files(user.maildir)) == 1
    said = [line for line in done.stderr.decode().splitlines() if ".procmailrc" in line]
    if sieve:
        assert said == []
    else:
        [line] = said
        assert f"{user.home}/.procmailrc is not read" in line
        assert f"lda procmail-convert {user.home}/.procmailrc" in line


def test_without_a_procmailrc_nothing_is_said(user_log_on_stderr):
    done = user_log_on_stderr.run("-a", "", input=message(), check=0)
    assert b".procmailrc" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_lda_run_by_a_procmailrc_recipe_says_nothing_of_it(user_log_on_stderr):
    """procmail exports PROCMAIL_VERSION to the programs its recipes run:
    `| lda` in ~/.procmailrc, where the rc is read, by procmail
    (tests/test_procmail_pipe.py runs the real one)."""
    user = user_log_on_stderr
    (user.home / ".procmailrc").write_bytes(b":0 w\n| lda\n")
    done = user.run(input=message(), env={"PROCMAIL_VERSION": "3.23pre"}, check=0)
    assert b".procmailrc" not in done.stderr
    assert len(maildir_files(user.maildir)) == 1


def test_message_present_tells_a_message_from_nothing_on_pipes_sockets_and_files(tmp_path):
    """lda.deliver.stdin.message_present, which decides whether --help with a pipe
    on stdin is a person's or an MTA's: it takes no byte, counts an open
    pipe still empty after the wait as a message, and leaves the
    descriptor blocking."""
    import os
    import socket

    from lda.deliver.stdin import message_present

    def pipe(data, close):
        r, w = os.pipe()
        os.write(w, data)
        if close:
            os.close(w)
        return r, (None if close else w)

    for data, close, wait, expected in ((b"", True, 1, False), (b"x", True, 1, True),
                                        (b"", False, 0.05, True)):
        r, w = pipe(data, close)
        try:
            assert message_present(r, wait=wait) is expected
            assert os.read(r, 1) == data if close else True
        finally:
            os.close(r)
            if w is not None:
                os.close(w)
    for data in (b"", b"x"):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.send(data)
            theirs.shutdown(socket.SHUT_WR)
            assert message_present(ours.fileno()) is bool(data) and ours.getblocking()
            assert ours.recv(1) == data
    for data in (b"", b"x"):
        path = tmp_path / "message"
        path.write_bytes(data)
        with open(path, "rb") as f:
            assert message_present(f.fileno()) is bool(data)
