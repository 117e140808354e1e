"""lda and a real Dovecot 2.3 on one Maildir: the same quota figures.

Dovecot's quota plugin (Maildir++ backend) and lda both keep `maildirsize`;
an IMAP user's Dovecot and lda's deliveries must agree on what a mailbox
holds, whoever delivered, flagged or expunged what.  Run with -s to see the
figures at each step.
"""

import json

import pytest

from conftest import mailbox_paths, message, write_lda_toml
from dovecot import dovecot  # noqa: F401  (the fixture)

ALICE = "alice@example.org"


class Managed:
    """lda in managed mode, run as Dovecot's mail owner, and one mailbox
    that Dovecot's user "alice" reads as her Maildir."""

    def __init__(self, server, **settings):
        self.server = server
        self.state = server.root / "lda-state"
        self.state.mkdir()
        self.config = write_lda_toml(server.root / "lda.toml",
                                     {"state_dir": str(self.state), "log": "stderr",
                                      **settings})
        server.owner.chown_tree(self.state)
        self.run("mailbox", "create", ALICE)
        self.maildir = self._maildir()
        server.add_user("alice", maildir=self.maildir)

    def run(self, *args, input=b"", check=0):
        done = self.server.lda(*args, input=input, env={"LDA_CONFIG": str(self.config)})
        assert done.returncode == check, (args, done.returncode, done.stderr.decode())
        return done

    def _maildir(self):
        return mailbox_paths(self.state, ALICE)[1]

    def show(self):
        return json.loads(self.run("quota", "show", ALICE, "--json").stdout)


def on_disk(maildir):
    """(bytes, messages) of every file in new/ and cur/ of the Maildir and of
    each of its folders: what Dovecot 2.3's recount counts."""
    dirs = [maildir] + [p for p in maildir.iterdir() if p.name.startswith(".")
                        and not p.name.startswith("..") and p.is_dir()]
    files = [f for d in dirs for sub in ("new", "cur") if (d / sub).is_dir()
             for f in (d / sub).iterdir()]
    return sum(f.stat().st_size for f in files), len(files)


def in_maildirsize(maildir):
    """(quota line, (bytes, messages) summed over the usage lines)."""
    quota, *lines = (maildir / "maildirsize").read_text().splitlines()
    return quota, (sum(int(line.split()[0]) for line in lines),
                   sum(int(line.split()[1]) for line in lines))


def figures(box, step):
    """One row of the table, printed; asserts what must agree at every step."""
    disk = on_disk(box.maildir)
    quota, summed = in_maildirsize(box.maildir)
    dove = box.server.quota("alice")
    shown = box.show()
    ours = (shown["storage_used"], shown["messages_used"])
    print(f"{step:<34} {disk[0]:>7} {disk[1]:>3} | {summed[0]:>7} {summed[1]:>3} | "
          f"{dove['STORAGE'][0]:>4}K {dove['MESSAGE'][0]:>3} | {ours[0]:>7} {ours[1]:>3}"
          f" | {quota}")
    # doveadm rounds KiB up (quota.c, quota_get_resource).
    assert (dove["STORAGE"][0], dove["MESSAGE"][0]) == ((ours[0] + 1023) // 1024, ours[1]), step
    assert quota == "204800S", step   # Dovecot's limit, never lda's 0S
    assert summed == disk, step
    return ours


def test_lda_and_doveadm_agree_on_every_message_and_folder(dovecot):  # noqa: F811
    box = Managed(dovecot)             # unlimited in lda; Dovecot: 200K
    dovecot.recalc("alice")            # Dovecot writes maildirsize: 204800S
    print(f"\n{'step':<34} {'files on disk':>11} | {'maildirsize':>11} | "
          f"{'doveadm':>8} | {'lda show':>11} | quota line")
    figures(box, "empty, after doveadm recalc")
    box.run("deliver", "-f", "s@example.org", ALICE,
            input=message("<lda1@x>", subject="lda", body=b"a" * 3000 + b"\n"))
    figures(box, "lda delivered one")
    done = dovecot.deliver("alice", message("<dove1@x>", subject="dove",
                                            body=b"b" * 5000 + b"\n"))
    assert done.returncode == 0, done.stderr
    figures(box, "dovecot-lda delivered one")
    box.run("deliver", "-f", "s@example.org", ALICE,
            input=message("<lda2@x>", subject="deleted", body=b"c" * 7000 + b"\n"))
    dovecot.doveadm("flags", "add", "-u", "alice", "\\Deleted",
                    "mailbox", "INBOX", "subject", "deleted")
    assert {"\\Deleted"} in [f & {"\\Deleted"} for f in dovecot.flags("alice")]
    figures(box, "lda delivered one, flagged T")
    done = dovecot.deliver("alice", message("<trash@x>", subject="trash",
                                            body=b"d" * 9000 + b"\n"), "s@example.org",
                           "-m", "Trash")
    assert done.returncode == 0, done.stderr
    assert any((box.maildir / ".Trash" / "new").iterdir())
    figures(box, "dovecot-lda filed one in Trash")
    dovecot.expunge("alice", "mailbox", "INBOX", "subject", "dove")
    figures(box, "doveadm expunged one")
    box.run("deliver", "-f", "s@example.org", ALICE,
            input=message("<lda3@x>", subject="lda3", body=b"e" * 11000 + b"\n"))
    figures(box, "lda delivered one more")

    box.run("quota", "recalc", ALICE)
    after_lda = in_maildirsize(box.maildir)
    ours = figures(box, "after lda quota recalc")
    dovecot.recalc("alice")
    after_dovecot = in_maildirsize(box.maildir)
    figures(box, "after doveadm quota recalc")
    assert after_lda == after_dovecot == ("204800S", on_disk(box.maildir))
    assert ours == on_disk(box.maildir) and ours[1] == 4

    # The courier rules leave out .Trash and the T-flagged message.
    courier = write_lda_toml(dovecot.root / "courier.toml",
                             {"state_dir": str(box.state), "log": "stderr",
                              "quota_rules": "courier"})
    done = dovecot.lda("quota", "recalc", ALICE, "--json",
                       env={"LDA_CONFIG": str(courier)})
    assert done.returncode == 0, done.stderr
    counted = json.loads(done.stdout)
    print(f"{'courier rules: lda quota recalc':<34} {'':>11} | "
          f"{counted['storage_used']:>7} {counted['messages_used']:>3}")
    assert counted["messages_used"] == 2


# 150,000 bytes, then 80,000 more: 230,000 and some headers, past the 200K
# limit (204,800) by more than 10% (20,480) and less than 30K (30,720).
@pytest.mark.parametrize("grace, lda_exits", [
    ("10%", [0, 75, 0, 77]),
    ("30K", [0, 0, 75, 77]),
], ids=["percent", "size"])
def test_quota_grace_decides_as_dovecot_does(dovecot, grace, lda_exits):  # noqa: F811
    """The same messages into two Maildirs with Dovecot's 200K limit, one by
    dovecot-lda, one by lda: the same ones are taken, the same refused
    (lda defers a full mailbox, 75, and refuses one too big, 77)."""
    # Dovecot expands % in plugin settings: its docs write 10%% for 10%.
    dovecot.configure(grace=grace.replace("%", "%%"))
    box = Managed(dovecot, quota_grace=grace)
    dovecot.add_user("bob")
    for name in ("alice", "bob"):
        dovecot.recalc(name)
    sizes = [150_000, 80_000, 1_000, 230_000]
    taken = {"lda": [], "dovecot": []}
    for n, size in enumerate(sizes):
        msg = message(f"<g{n}@x>", body=b"g" * size + b"\n")
        by_lda = box.server.lda("deliver", "-f", "s@example.org", ALICE, input=msg,
                                env={"LDA_CONFIG": str(box.config)})
        by_dovecot = dovecot.deliver("bob", msg, "s@example.org", "-e")
        taken["lda"].append(by_lda.returncode)
        taken["dovecot"].append(by_dovecot.returncode)
        print(f"grace {grace}: {size:>7} bytes: lda exit {by_lda.returncode} "
              f"{by_lda.stderr.decode()[:5]!r}, dovecot-lda -e exit {by_dovecot.returncode} "
              f"{by_dovecot.stderr.decode()[:120]!r}")
    assert [code == 0 for code in taken["lda"]] == [code == 0 for code in taken["dovecot"]]
    assert taken["lda"] == lda_exits


def inbox_on_disk(maildir, ignored):
    """on_disk without the folders Dovecot's `NAME:ignore` rules leave out."""
    everything, skipped = on_disk(maildir), [on_disk(maildir / f".{name}") for name in ignored]
    return (everything[0] - sum(s[0] for s in skipped),
            everything[1] - sum(s[1] for s in skipped))


def test_a_folder_dovecot_ignores_is_left_out_of_every_lda_recount(dovecot):  # noqa: F811
    """Dovecot's `quota_rule2 = Trash:ignore`, lda's quota_ignore_folders =
    ["Trash"]: lda's recounts (`lda quota recalc`, and a delivery's when
    maildirsize cannot be trusted) write what `doveadm quota recalc` writes,
    a copy lda files into Trash adds no line, and a message that fits by
    Dovecot's rules is taken by lda and by dovecot-lda alike."""
    dovecot.configure(more_rules=["Trash:ignore"])
    box = Managed(dovecot, quota_ignore_folders=["Trash"])
    dovecot.recalc("alice")

    def deliver(n, size, *options):
        return box.server.lda("deliver", "-f", "s@example.org", *options, ALICE,
                              input=message(f"<q{n}@x>", body=b"q" * size + b"\n"),
                              env={"LDA_CONFIG": str(box.config)})

    def by_dovecot(n, size, *options):
        done = dovecot.deliver("alice", message(f"<d{n}@x>", body=b"d" * size + b"\n"),
                               "s@example.org", *options)
        return done.returncode, done.stderr.decode().strip()

    def recalc_by_doveadm():
        before = (box.maildir / "maildirsize").read_text()
        dovecot.recalc("alice")
        return before, (box.maildir / "maildirsize").read_text()

    for n in range(3):                           # 150K that Dovecot does not count
        assert by_dovecot(n, 50_000, "-m", "Trash") == (0, "")
    assert deliver(10, 20_000, "-m", "Trash").returncode == 0
    assert (box.maildir / ".Trash").is_dir()
    for n in range(20, 22):
        assert deliver(n, 40_000).returncode == 0
    assert by_dovecot(22, 40_000) == (0, "")
    inbox = inbox_on_disk(box.maildir, ["Trash"])
    print(f"\nINBOX {inbox}, Trash {on_disk(box.maildir / '.Trash')}")
    # dovecot-lda adds no line for Trash; neither may lda.
    assert in_maildirsize(box.maildir) == ("204800S", inbox)

    box.run("quota", "recalc", ALICE)
    by_lda, by_doveadm = recalc_by_doveadm()
    print(f"lda quota recalc: {by_lda.split()}, doveadm quota recalc: {by_doveadm.split()}")
    assert by_lda == by_doveadm == f"204800S\n{inbox[0]} {inbox[1]}\n"

    # Two lines and over the limit with the next message: lda recounts.
    assert by_dovecot(30, 30_000) == (0, "")
    refused = deliver(31, 60_000)
    assert refused.returncode == 75, refused.stderr
    by_lda, by_doveadm = recalc_by_doveadm()
    print(f"lda's recount at delivery: {by_lda.split()}, "
          f"doveadm quota recalc: {by_doveadm.split()}")
    assert by_lda == by_doveadm
    assert by_lda == "204800S\n%d %d\n" % inbox_on_disk(box.maildir, ["Trash"])

    # 10K fits by Dovecot's rules (Trash left out): both take it.
    taken = deliver(40, 10_000)
    assert taken.returncode == 0, taken.stderr
    assert by_dovecot(41, 10_000, "-e") == (0, "")
    dove, shown = dovecot.quota("alice"), box.show()
    print(f"doveadm quota get: {dove}, lda quota show: {shown['storage_used']} "
          f"{shown['messages_used']}")
    assert in_maildirsize(box.maildir)[1] == inbox_on_disk(box.maildir, ["Trash"])
    assert (dove["STORAGE"][0], dove["MESSAGE"][0]) == (
        (shown["storage_used"] + 1023) // 1024, shown["messages_used"])


# A site's namespace and the quota_rule masks it writes in its names;
# lda.toml lists the same masks.  Each folder, its Maildir++ directory, and
# whether Dovecot counts it: case matters, "*" takes the separator too, "?"
# one character, a non-ASCII name is matched as IMAP shows it.
NAMESPACES = {
    "default": ("", ["Archive.*", "Entwürfe", "Spam?"]),
    "separator /": ("namespace inbox {\n  inbox = yes\n  separator = /\n}\n",
                    ["Archive/*", "Entwürfe", "Spam?"]),
    "prefix INBOX.": ("namespace inbox {\n  inbox = yes\n  prefix = INBOX.\n"
                      "  separator = .\n}\n", ["INBOX.Archive.*", "INBOX.Entwürfe",
                                             "INBOX.Spam?"]),
}
FOLDERS = [(".Archive", True), (".Archive.2023", False), (".Archive.2023.Q1", False),
           (".archive.2023", True), (".Entw&APw-rfe", False), (".Entw&APw-rfe.Alt", True),
           (".Spam1", False), (".Spam", True), (".Spam12", True)]


@pytest.mark.parametrize("namespace", NAMESPACES, ids=str)
def test_quota_ignore_folders_names_what_dovecot_quota_rules_name(dovecot, namespace):  # noqa: F811
    """The same masks in Dovecot's quota_rule2, 3... (NAME:ignore) and in
    lda's quota_ignore_folders: `lda quota recalc` and `doveadm quota
    recalc` write the same maildirsize, whatever the namespace."""
    extra, masks = NAMESPACES[namespace]
    dovecot.configure(extra=extra, more_rules=[f"{mask}:ignore" for mask in masks])
    box = Managed(dovecot, quota_ignore_folders=masks)
    dovecot.recalc("alice")
    box.run("deliver", "-f", "s@example.org", ALICE, input=message("<inbox@x>"))
    for n, (directory, _) in enumerate(FOLDERS):
        folder = box.maildir / directory
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        (folder / "new" / f"{n}.M1P1.host,S={1000 * (n + 1)}").write_bytes(b"x")
    dovecot.owner.chown_tree(box.maildir)
    counted = [d for d, counts in FOLDERS if counts]
    expected = in_maildirsize(box.maildir)[1][0] + sum(
        1000 * (n + 1) for n, (d, _) in enumerate(FOLDERS) if d in counted)
    box.run("quota", "recalc", ALICE)
    by_lda = (box.maildir / "maildirsize").read_text()
    dovecot.recalc("alice")
    by_doveadm = (box.maildir / "maildirsize").read_text()
    print(f"\n{namespace}: lda {by_lda.split()}, doveadm {by_doveadm.split()}")
    assert by_lda == by_doveadm == f"204800S\n{expected} {1 + len(counted)}\n"
