"""`lda sieve check` and `lda sieve test`, through the installed command."""

from sieve_helpers import LIST, PLAIN, RECIPIENT, SCRIPT


def write(directory, name, text):
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_cli_check_ok_is_silent(user, tmp_path):
    path = write(tmp_path, "ok.sieve", SCRIPT)
    done = user.run("sieve", "check", path, check=0)
    assert (done.stdout, done.stderr) == (b"", b"")


def test_cli_check_lists_errors_and_exits_65(user, tmp_path):
    path = write(tmp_path, "bad.sieve", 'require "fileinto";\nif header :is "x" "y" {\n'
                 '  fileinto "a/b";\n}\nfrob;\nif envelope "to" "z" {}\n')
    done = user.run("sieve", "check", path, check=65)
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f'{path}:5:1: unknown command "frob"',
        f'{path}:6:4: test "envelope" needs require "envelope"']


def test_cli_check_syntax_error(user, tmp_path):
    path = write(tmp_path, "bad.sieve", 'keep;\nredirect "x@example.org"\n')
    done = user.run("sieve", "check", path, check=65)
    assert done.stderr.decode() == f'{path}:3:1: missing ";" after redirect at the end of the ' \
                                   "script\n"


def test_cli_check_missing_file_is_a_usage_error(user, tmp_path):
    done = user.run("sieve", "check", str(tmp_path / "nope.sieve"), check=64)
    assert b"does not exist" in done.stderr


def test_cli_test_prints_the_actions(user, tmp_path):
    path = write(tmp_path, "s.sieve", r'''require ["fileinto", "imap4flags", "variables", "copy"];
if header :matches "List-Id" "*<*.python.example.org>" {
    setflag "\\Seen";
    fileinto "Lists.Python";
    redirect :copy "bob@example.org";
    stop;
}
''')
    done = user.run("sieve", "test", path, input=LIST.encode(), check=0)
    assert done.stdout.decode().splitlines() == ['fileinto "Lists.Python" :flags "\\Seen"',
                                                 'redirect "bob@example.org" :copy']
    assert done.stderr.decode().splitlines()[0] == (
        "envelope: from <guido@python.example.org> to <python-dev@python.example.org>, "
        f"message size {len(LIST)}")


def test_cli_test_implicit_keep_vacation_and_envelope_options(user, tmp_path):
    path = write(tmp_path, "v.sieve", 'require ["vacation", "envelope"];\n'
                 'if envelope :is "from" "boss@example.org" { vacation "Away."; }\n')
    done = user.run("sieve", "test", path, "-f", "boss@example.org", "-r", RECIPIENT,
                    input=PLAIN.encode(), check=0)
    assert done.stdout.decode().splitlines() == [
        'vacation to boss@example.org (subject "Auto: I have a present for you")',
        "keep (implicit)"]
    assert f"{path}: vacation: reply to boss@example.org" in done.stderr.decode()


def test_cli_test_runtime_error_shows_and_keeps(user, tmp_path):
    path = write(tmp_path, "r.sieve", 'require ["fileinto", "variables"];\n'
                 'if header :matches "subject" "*" { fileinto "${1}/x"; }\n')
    done = user.run("sieve", "test", path, input=PLAIN.encode(), check=0)
    assert done.stdout == b"keep (implicit)\n"
    assert (f'{path}: runtime error: line 2: fileinto: "/" in folder name "I have a present '
            'for you/x" (the hierarchy separator is ".") (implicit keep)') \
        in done.stderr.decode()


def test_cli_test_broken_script_exits_65(user, tmp_path):
    path = write(tmp_path, "b.sieve", "frob;\n")
    done = user.run("sieve", "test", path, input=PLAIN.encode(), check=65)
    assert done.stdout == b""
    assert done.stderr.decode() == f'{path}:1:1: unknown command "frob"\n'


def test_cli_test_json_lists_actions_with_their_fields(user, tmp_path):
    import json

    path = write(tmp_path, "j.sieve", 'require ["fileinto", "imap4flags", "copy", "vacation"];\n'
                 'fileinto :copy :flags "\\\\Seen" "Lists.Python";\n'
                 'redirect :copy "bob@example.org";\nvacation "Away.";\n')
    done = user.run("sieve", "test", path, "--json", "-f", "coyote@desert.example.org",
                    "-r", RECIPIENT, "-a", "rr@acme.example.com",
                    input=PLAIN.encode(), check=0)
    record = json.loads(done.stdout)
    assert [a["action"] for a in record["actions"]] == ["fileinto", "redirect", "vacation",
                                                        "keep"]
    assert record["actions"][0] == {"action": "fileinto", "folder": "Lists.Python",
                                    "flags": ["\\Seen"], "copy": True, "create": False}
    assert record["actions"][1] == {"action": "redirect", "address": "bob@example.org",
                                    "copy": True}
    assert "reply_bytes" not in record["actions"][2]
    assert record["actions"][3] == {"action": "keep", "flags": [], "implicit": True}
    assert (record["implicit_keep"], record["errors"], record["compiled"]) == (True, [], True)


def test_cli_test_json_compile_error(user, tmp_path):
    import json

    path = write(tmp_path, "b.sieve", "frob;\n")
    done = user.run("sieve", "test", path, "--json", input=PLAIN.encode(), check=65)
    assert json.loads(done.stdout) == {"compiled": False,
                                       "errors": [f'{path}:1:1: unknown command "frob"']}


def test_cli_test_delivers_and_records_nothing(user, tmp_path):
    path = write(tmp_path, "d.sieve", 'require "duplicate"; if duplicate { discard; }\n')
    for _ in range(2):
        done = user.run("sieve", "test", path, input=PLAIN.encode(), check=0)
        assert done.stdout == b"keep (implicit)\n"
    assert not user.maildir.exists()
    assert not user.state.exists()


# --- lda sieve install / list / activate / show: managed mailboxes -----------

import json  # noqa: E402 - the admin commands' section
import os  # noqa: E402

import pytest  # noqa: E402

from conftest import maildir_files, message  # noqa: E402

FILEINTO = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'


def test_install_checks_then_activates_and_a_delivery_runs_it(site, tmp_path):
    alice = site.create("alice@example.org")
    path = write(tmp_path, "work.sieve", FILEINTO.format("Work"))
    done = site.run("sieve", "install", "alice@example.org", path, "--json", check=0)
    assert json.loads(done.stdout)["name"] == "work" and json.loads(done.stdout)["active"]
    assert (alice / "lda.sieve").read_text() == FILEINTO.format("Work")
    assert (alice / "sieve" / "work.sieve").read_text() == FILEINTO.format("Work")
    assert oct((alice / "lda.sieve").stat().st_mode & 0o777) == "0o644"
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(alice / ".Work")) == 1


def test_a_bad_script_is_refused_with_its_errors_and_nothing_changes(site, tmp_path):
    alice = site.create("alice@example.org")
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "good.sieve", "keep;\n"), check=0)
    bad = write(tmp_path, "good2.sieve", "frob;\n")
    done = site.run("sieve", "install", "alice@example.org", bad, "--name", "good", check=65)
    assert f"{bad}:1:1: unknown command" in done.stderr.decode()
    assert (alice / "lda.sieve").read_text() == "keep;\n"
    assert (alice / "sieve" / "good.sieve").read_text() == "keep;\n"
    assert [p.name for p in (alice / "sieve").iterdir()] == ["good.sieve"]  # no tmp left
    done = site.run("sieve", "install", "alice@example.org", bad, "--json", check=65)
    assert "unknown command" in json.loads(done.stdout)["errors"][0]


def test_list_activate_show(site, tmp_path):
    site.create("alice@example.org")
    site.create("bob@example.org")
    for name in ("a", "b"):
        site.run("sieve", "install", "alice@example.org",
                 write(tmp_path, f"{name}.sieve", FILEINTO.format(name.upper())),
                 "--no-activate", check=0)
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert [(r["name"], r["active"]) for r in listed] == [("a", False), ("b", False)]
    shown = json.loads(site.run("sieve", "show", "alice@example.org", "--json").stdout)
    assert shown["script"] is None
    site.run("sieve", "activate", "alice@example.org", "b", check=0)
    everyone = json.loads(site.run("sieve", "list", "--json").stdout)
    assert [(r["address"], r["name"], r["active"]) for r in everyone] == [
        ("alice@example.org", "a", False), ("alice@example.org", "b", True)]
    done = site.run("sieve", "show", "alice@example.org", check=0)
    assert done.stdout.decode() == FILEINTO.format("B")
    site.run("sieve", "activate", "alice@example.org", "nope", check=67)
    site.run("sieve", "show", "nobody@example.org", check=67)


def other_dir(tmp_path):
    (tmp_path / "v2").mkdir()
    return tmp_path / "v2"


def test_installing_the_active_name_replaces_the_running_script(site, tmp_path):
    alice = site.create("alice@example.org")
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "main.sieve", "keep;\n"), check=0)
    site.run("sieve", "install", "alice@example.org",
             write(other_dir(tmp_path), "main.sieve", "discard;\n"), "--no-activate", check=0)
    assert (alice / "lda.sieve").read_text() == "discard;\n"
    assert [p.name for p in (alice / "sieve").iterdir()] == ["main.sieve"]  # no rescue


def test_install_replaces_a_symlink_never_writes_through_it(site, tmp_path):
    alice = site.create("alice@example.org")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (alice / "lda.sieve").symlink_to(victim)
    (alice / "sieve").mkdir()
    (alice / "sieve" / "main.sieve").symlink_to(victim)
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "main.sieve", "keep;\n"), check=0)
    assert victim.read_text() == "precious\n"
    # Both links replaced: lda.sieve is lda's own, to the script now stored.
    assert os.readlink(alice / "lda.sieve") == "sieve/main.sieve"
    assert not (alice / "sieve" / "main.sieve").is_symlink()
    assert (alice / "lda.sieve").read_text() == "keep;\n"


def test_a_symlinked_scripts_directory_is_refused(site, tmp_path):
    alice = site.create("alice@example.org")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (alice / "sieve").symlink_to(elsewhere)
    done = site.run("sieve", "install", "alice@example.org",
                    write(tmp_path, "main.sieve", "keep;\n"))
    assert done.returncode == 78 and b"Traceback" not in done.stderr, done.stderr
    assert list(elsewhere.iterdir()) == [] and not (alice / "lda.sieve").exists()


# Names ManageSieve takes (RFC 5804 section 1.6: UTF-8, no control
# characters; Dovecot's file storage refuses "/"), as webmail writes them;
# tests/test_managesieve.py puts the same through Dovecot.  The longest one
# fits NAME.sieve and lda's temporary name for it in 255 bytes.
MANAGESIEVE_NAMES = ["my café filter", "-dash", ' q"x\\y ', "x" * 227]
# Still refused: a path, a dot file ("." and ".." too), a control
# character (C0 with CR, LF and TAB, DEL, C1, U+2028, U+2029), bytes that
# are not UTF-8, nothing, and a name longer than a file name takes.
HOSTILE_NAMES = ["../x", "a/b", ".hidden", ".", "..", "", "a\nb", "a\rb", "tab\tx", "del\x7fx",
                 "c1\x85x", "ls\u2028x", b"bad\xffx", "x" * 228, "é" * 114]


def test_names_managesieve_takes_are_taken(site, tmp_path):
    """A script named in webmail ("my filter") is one lda sieve install,
    activate, list and show take by that name."""
    alice = site.create("alice@example.org")
    for n, name in enumerate(MANAGESIEVE_NAMES):
        path = write(tmp_path, f"{n}.sieve", FILEINTO.format(f"Named{n}"))
        site.run("sieve", "install", "alice@example.org", path, "--name", name,
                 "--no-activate", check=0)
        done = site.run("sieve", "activate", "--json", "alice@example.org", "--", name, check=0)
        assert json.loads(done.stdout)["name"] == name
        assert (alice / "sieve" / f"{name}.sieve").is_file()
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert sorted((r["name"], r["active"]) for r in listed) == sorted(
        (name, name == MANAGESIEVE_NAMES[-1]) for name in MANAGESIEVE_NAMES)
    shown = json.loads(site.run("sieve", "show", "alice@example.org", "--json").stdout)
    assert shown["name"] == MANAGESIEVE_NAMES[-1]


def test_bad_names_and_unknown_mailboxes(site, tmp_path):
    """A hostile name is refused (64) with a clear error and changes
    nothing: each of them by the rule, a few through both commands."""
    from lda.admin.sieve import check_name
    from lda.errors import UsageError

    for name in HOSTILE_NAMES + ["a\0b"]:  # no command line carries a NUL
        with pytest.raises(UsageError, match="^bad script name "):
            check_name(os.fsdecode(name))
    alice = site.create("alice@example.org")
    path = write(tmp_path, "ok.sieve", "keep;\n")
    site.run("sieve", "install", "alice@example.org", path, "--name", "ok", check=0)
    before = sorted(p.relative_to(alice) for p in alice.rglob("*"))
    for name in ("../x", "", "a\nb", b"bad\xffx"):
        for args in (("install", "alice@example.org", path, "--name", name),
                     ("activate", "alice@example.org", "--", name)):
            done = site.run("sieve", *args, check=64)
            assert done.stderr.startswith(b"lda: bad script name "), done.stderr
            assert b"Traceback" not in done.stderr and len(done.stderr) < 400, done.stderr
    assert sorted(p.relative_to(alice) for p in alice.rglob("*")) == before
    assert (alice / "lda.sieve").read_text() == "keep;\n"
    site.run("sieve", "install", "nobody@example.org", path, check=67)



def test_a_hand_written_script_is_kept_when_another_is_activated(site, tmp_path):
    alice = site.create("alice@example.org")
    (alice / "lda.sieve").write_text("# by hand\nkeep;\n")
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert [(r["name"], r["active"]) for r in listed] == [(None, True)]
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "new.sieve", "discard;\n"), check=0)
    assert (alice / "sieve" / "lda.orig.sieve").read_text() == "# by hand\nkeep;\n"
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert [(r["name"], r["active"]) for r in listed] == [("lda.orig", False), ("new", True)]


# --- deactivate and delete, as doveadm sieve and ManageSieve have them ---------------

JUNK = 'require ["fileinto", "mailbox"];\nfileinto :create "Junk";\n'

def test_deactivate_turns_the_filter_off_and_delete_removes_a_stored_script(site, tmp_path):
    alice = site.create("alice@example.org")
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "spam.sieve", JUNK), check=0)
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "old.sieve", "discard;\n"), "--no-activate", check=0)
    # The active one is not deleted: ManageSieve refuses it too.
    done = site.run("sieve", "delete", "alice@example.org", "spam", check=64)
    assert b"active" in done.stderr and (alice / "sieve" / "spam.sieve").exists()
    done = site.run("sieve", "delete", "alice@example.org", "old", "--json", check=0)
    assert json.loads(done.stdout) == {"address": "alice@example.org", "name": "old",
                                       "deleted": True}
    assert not (alice / "sieve" / "old.sieve").exists()
    site.run("sieve", "delete", "alice@example.org", "old", check=67)
    site.run("sieve", "delete", "alice@example.org", "--", "../lda", check=64)
    done = site.run("sieve", "deactivate", "alice@example.org", "--json", check=0)
    assert json.loads(done.stdout) == {"address": "alice@example.org", "name": "spam",
                                       "active": False}
    assert not os.path.lexists(alice / "lda.sieve")
    assert (alice / "sieve" / "spam.sieve").exists()  # kept, as ManageSieve keeps it
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(alice)) == 1 and not (alice / ".Junk").exists()
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert [(r["name"], r["active"]) for r in listed] == [("spam", False)]
    # Nothing active: nothing to do, and it says so.
    done = site.run("sieve", "deactivate", "alice@example.org", "--json", check=0)
    assert json.loads(done.stdout)["name"] is None
    site.run("sieve", "deactivate", "nobody@example.org", check=67)


def test_deactivating_a_hand_written_script_keeps_it(site):
    """A regular lda.sieve (by hand, or an older lda's copy) is stored as
    lda.orig before it goes, as activating another script keeps it."""
    alice = site.create("alice@example.org")
    (alice / "lda.sieve").write_text("# by hand\ndiscard;\n")
    done = site.run("sieve", "deactivate", "alice@example.org", "--json", check=0)
    assert json.loads(done.stdout)["active"] is False
    assert not os.path.lexists(alice / "lda.sieve")
    assert (alice / "sieve" / "lda.orig.sieve").read_text() == "# by hand\ndiscard;\n"
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(alice)) == 1


def test_rename_keeps_the_active_script_active(site, tmp_path):
    """As ManageSieve's RENAMESCRIPT: the active script renamed stays the
    one that runs; a name taken, or not there, changes nothing."""
    alice = site.create("alice@example.org")
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "spam.sieve", JUNK), check=0)
    site.run("sieve", "install", "alice@example.org",
             write(tmp_path, "old.sieve", "discard;\n"), "--no-activate", check=0)
    done = site.run("sieve", "rename", "alice@example.org", "spam", "junk filter", "--json",
                    check=0)
    assert json.loads(done.stdout) == {"address": "alice@example.org", "name": "junk filter",
                                       "old_name": "spam", "active": True}
    assert os.readlink(alice / "lda.sieve") == "sieve/junk filter.sieve"
    assert not (alice / "sieve" / "spam.sieve").exists()
    site.deliver(message(), "alice@example.org", check=0)
    assert len(maildir_files(alice / ".Junk")) == 1
    site.run("sieve", "rename", "alice@example.org", "old", "junk filter", check=73)
    site.run("sieve", "rename", "alice@example.org", "gone", "new", check=67)
    site.run("sieve", "rename", "alice@example.org", "old", ".hidden", check=64)
    site.run("sieve", "rename", "alice@example.org", "old", "../x", check=64)
    assert (alice / "sieve" / "old.sieve").read_text() == "discard;\n"
    site.run("sieve", "rename", "alice@example.org", "old", "older", check=0)
    listed = json.loads(site.run("sieve", "list", "alice@example.org", "--json").stdout)
    assert [(r["name"], r["active"]) for r in listed] == [("junk filter", True),
                                                          ("older", False)]
