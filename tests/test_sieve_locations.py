"""Where a delivery finds Sieve scripts, as Pigeonhole users keep them:
~/.dovecot.sieve (a symlink into ~/sieve/), and the admin's sieve_before,
sieve_after and sieve_default, run in Pigeonhole's sequence (the next
script runs only while a keep is in effect)."""

import os

import pytest

from conftest import maildir_files, message, write_lda_toml
from test_deliver import modules_after_delivery

FILEINTO = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'
COPY_INTO = 'require ["fileinto", "mailbox", "copy"];\nfileinto :copy :create "{}";\n'


def folder(user, name):
    return maildir_files(user.maildir / f".{name}")


def configure(user, tmp_path, **values):
    """Per-user mode with these lda.toml keys, its log on stderr."""
    config = write_lda_toml(tmp_path / "lda-user.toml",
                            {"mode": "user", "log": "stderr", **values})
    user.env = dict(user.env, LDA_CONFIG=str(config))


def script(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


# --- ~/.dovecot.sieve ---------------------------------------------------------


def test_dovecot_sieve_is_found_without_an_lda_script(user):
    script(user.home / ".dovecot.sieve", FILEINTO.format("Dovecot"))
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Dovecot")) == 1 and maildir_files(user.maildir) == []


def test_dovecot_sieve_symlink_into_the_home_is_followed(user):
    """ManageSieve's layout: ~/sieve/NAME.sieve, the active one linked."""
    script(user.home / "sieve" / "main.sieve", FILEINTO.format("Managed"))
    (user.home / ".dovecot.sieve").symlink_to("sieve/main.sieve")
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Managed")) == 1


def test_dovecot_sieve_symlink_out_of_the_home_is_not_followed(user, tmp_path):
    elsewhere = script(tmp_path / "elsewhere" / "planted.sieve", "discard;\n")
    (user.home / ".dovecot.sieve").symlink_to(elsewhere)
    configure(user, tmp_path)
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1  # not discarded
    assert b"points outside" in done.stderr


def test_lda_sieve_wins_over_dovecot_sieve(user):
    script(user.home / ".lda.sieve", FILEINTO.format("Lda"))
    script(user.home / ".dovecot.sieve", FILEINTO.format("Dovecot"))
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Lda")) == 1 and folder(user, "Dovecot") == []


def test_a_configured_sieve_script_is_the_only_personal_one(user, tmp_path):
    script(user.home / ".dovecot.sieve", FILEINTO.format("Dovecot"))
    configure(user, tmp_path, sieve_script=str(tmp_path / "missing.sieve"))
    user.deliver(message(), "a@example.org", check=0)
    assert folder(user, "Dovecot") == [] and len(maildir_files(user.maildir)) == 1


# --- sieve_before, sieve_after, sieve_default -----------------------------------


def test_before_directory_runs_in_name_order_then_the_users_script(user, tmp_path):
    before = tmp_path / "before.d"
    script(before / "20-second.sieve", COPY_INTO.format("Second"))
    script(before / "10-first.sieve", 'require "variables";\nset "x" "1";\n')
    script(before / "ignored.txt", "discard;\n")
    script(user.home / ".lda.sieve", FILEINTO.format("Mine"))
    configure(user, tmp_path, sieve_before=str(before))
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Second")) == 1 and len(folder(user, "Mine")) == 1
    assert maildir_files(user.maildir) == []


def test_discard_and_stop_in_a_before_script_ends_all_processing(user, tmp_path):
    before = script(tmp_path / "spam.sieve", "discard;\nstop;\n")
    script(user.home / ".lda.sieve", FILEINTO.format("Mine"))
    configure(user, tmp_path, sieve_before=[before])
    user.deliver(message(), "a@example.org", check=0)
    assert folder(user, "Mine") == [] and maildir_files(user.maildir) == []


def test_stop_with_the_keep_in_effect_ends_only_that_script(user, tmp_path):
    """Pigeonhole (and draft-degener-sieve-multiscript): stop ends its own
    script; the next runs while the keep is in effect."""
    before = script(tmp_path / "stop.sieve", "stop;\ndiscard;\n")
    script(user.home / ".lda.sieve", FILEINTO.format("Mine"))
    configure(user, tmp_path, sieve_before=before)
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Mine")) == 1


def test_keep_in_a_before_script_only_lets_the_next_one_run(user, tmp_path):
    before = script(tmp_path / "keep.sieve", "keep;\n")
    script(user.home / ".lda.sieve", "discard;\n")
    configure(user, tmp_path, sieve_before=before)
    user.deliver(message(), "a@example.org", check=0)
    assert maildir_files(user.maildir) == []


@pytest.mark.parametrize("personal, after_runs", [
    (FILEINTO.format("Mine"), False),
    ('if false { discard; }\n', True),
    (None, True),
], ids=["fileinto cancels the keep", "implicit keep", "no personal script"])
def test_after_scripts_run_only_while_the_keep_is_in_effect(user, tmp_path, personal,
                                                            after_runs):
    after = script(tmp_path / "after.sieve", COPY_INTO.format("After"))
    if personal:
        script(user.home / ".lda.sieve", personal)
    configure(user, tmp_path, sieve_after=[after])
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "After")) == (1 if after_runs else 0)
    assert len(maildir_files(user.maildir)) == (1 if after_runs else 0)


def test_an_error_in_a_before_script_ends_the_sequence_with_a_keep(user, tmp_path):
    before = script(tmp_path / "broken.sieve", "this is not sieve\n")
    script(user.home / ".lda.sieve", "discard;\n")
    configure(user, tmp_path, sieve_before=before)
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1 and b"broken.sieve" in done.stderr


def test_before_actions_stay_when_a_later_script_fails(user, tmp_path):
    before = script(tmp_path / "copy.sieve", COPY_INTO.format("Before"))
    script(user.home / ".lda.sieve", "this is not sieve\n")
    configure(user, tmp_path, sieve_before=before)
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Before")) == 1 and len(maildir_files(user.maildir)) == 1


def test_one_store_per_folder_across_scripts(user, tmp_path):
    before = script(tmp_path / "copy.sieve", COPY_INTO.format("Same"))
    script(user.home / ".lda.sieve", FILEINTO.format("Same"))
    configure(user, tmp_path, sieve_before=before)
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Same")) == 1 and maildir_files(user.maildir) == []


def test_sieve_default_runs_only_without_a_personal_script(user, tmp_path):
    default = script(tmp_path / "default.sieve", FILEINTO.format("Default"))
    configure(user, tmp_path, sieve_default=default)
    user.deliver(message(), "a@example.org", check=0)
    assert len(folder(user, "Default")) == 1
    script(user.home / ".lda.sieve", FILEINTO.format("Mine"))
    user.deliver(message("<m2@example.org>"), "a@example.org", check=0)
    assert len(folder(user, "Default")) == 1 and len(folder(user, "Mine")) == 1


def test_managed_mailbox_default_and_before(site, tmp_path):
    alice = site.create("alice@example.org")
    bob = site.create("bob@example.org")
    (bob / "lda.sieve").write_text(FILEINTO.format("Bobs"))
    default = script(tmp_path / "default.sieve", FILEINTO.format("Default"))
    before = script(tmp_path / "before.sieve", COPY_INTO.format("Before"))
    site.write_config({"state_dir": str(site.state), "aliases": str(site.aliases),
                       "log": "stderr", "sieve_default": default, "sieve_before": before})
    site.deliver(message(), "alice@example.org", "bob@example.org", check=0)
    assert len(maildir_files(alice / ".Default")) == 1
    assert len(maildir_files(bob / ".Bobs")) == 1 and maildir_files(bob / ".Default") == []
    assert len(maildir_files(alice / ".Before")) == 1 == len(maildir_files(bob / ".Before"))


@pytest.mark.parametrize("kind", ["fifo", "link-out", "dangling"])
def test_an_lda_sieve_passed_over_is_logged_once_per_delivery(site, tmp_path, kind):
    """A FIFO at a managed mailbox's lda.sieve is no script a delivery runs
    (opening it could hang, reading it would read a writer's bytes): the
    message goes to the inbox, and the log says so, as it says why a
    symlink is not followed (or leads to no file): one line naming the
    path, once per delivery however many of its recipients are that
    mailbox."""
    alice = site.create("alice@example.org")
    active = alice / "lda.sieve"
    if kind == "fifo":
        os.mkfifo(active, 0o600)
    elif kind == "link-out":
        active.symlink_to(script(tmp_path / "elsewhere.sieve", "discard;\n"))
    else:  # ManageSieve's form, to a script since removed by hand
        active.symlink_to("sieve/gone.sieve")
    done = site.deliver(message(), "alice@example.org", "alice+lists@example.org", check=0)
    assert maildir_files(alice) != []
    log = done.stderr.decode()
    assert log.count(f"{active} ") == 1, log
    assert {"fifo": "is a FIFO: not read", "link-out": "not followed, no script run",
            "dangling": "which does not exist: no script run"}[kind] in log, log


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling"])
def test_an_lda_sieve_in_the_home_passed_over_is_logged_and_runs_no_other(user, tmp_path,
                                                                          kind):
    """Per-user mode: ~/.lda.sieve that is there but no script (a FIFO, a
    directory, a symlink to a script since removed) is passed over with a
    log line, as a managed mailbox's lda.sieve is, and ~/.dovecot.sieve,
    Pigeonhole's script for a user who has no lda one, does not run in its
    place."""
    active = user.home / ".lda.sieve"
    if kind == "fifo":
        os.mkfifo(active, 0o600)
    elif kind == "directory":
        active.mkdir()
    else:
        active.symlink_to("sieve/gone.sieve")
    script(user.home / ".dovecot.sieve", FILEINTO.format("Dovecot"))
    configure(user, tmp_path)
    done = user.deliver(message(), "a@example.org", check=0)
    assert len(maildir_files(user.maildir)) == 1 and folder(user, "Dovecot") == []
    log = done.stderr.decode()
    assert log.count(f"{active} ") == 1, log
    assert {"fifo": "is a FIFO: not read", "directory": "is a directory: not read",
            "dangling": "which does not exist: no script run"}[kind] in log, log


def test_a_delivery_with_no_script_anywhere_imports_no_sieve_code(user, tmp_path):
    configure(user, tmp_path, sieve_before=[str(tmp_path / "nothing.sieve")],
              sieve_after=str(tmp_path / "none.d"), sieve_default=str(tmp_path / "no.sieve"))
    rc, loaded, stderr = modules_after_delivery(user.env, "alice@example.org")
    assert rc == 0, stderr
    assert not {"lda.sieve", "lda.deliver.filtering"} & loaded


@pytest.mark.parametrize("value", [[1], [""], 3, True], ids=["number in list", "empty",
                                                                "number", "bool"])
def test_bad_sieve_before_values_are_configuration_errors(user, tmp_path, value):
    configure(user, tmp_path, sieve_before=value)
    done = user.deliver(message(), "a@example.org", check=78)
    assert b"sieve_before" in done.stderr


def test_nothing_is_done_twice_across_the_sequence():
    """One store per folder with the first store's flags, one redirect per
    address, the first vacation reply only (Pigeonhole's rule; dovecot-lda
    side by side in test_sieve_migration.py)."""
    from lda.deliver.filtering import sequence_outcome
    from lda.sieve import FileInto, Keep, Outcome, Redirect, Vacation

    first = Outcome([FileInto("A", ("\\Seen",), copy=True), Redirect("x@example.org", True),
                     Vacation("s@example.org", b"one", "h", 1), Keep(("\\Flagged",))],
                    implicit_keep=False)
    second = Outcome([FileInto("A", ("\\Flagged",)), Redirect("x@example.org"),
                      Vacation("s@example.org", b"two", "h", 1)], implicit_keep=False)
    merged = sequence_outcome([first, second])
    assert merged.all_actions() == [
        FileInto("A", ("\\Seen",), copy=True), Redirect("x@example.org", True),
        Vacation("s@example.org", b"one", "h", 1)]
