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
        f'{path}:3:3: fileinto: "/" in folder name "a/b" (the hierarchy separator is ".")',
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


def test_cli_test_delivers_and_records_nothing(user, tmp_path):
    path = write(tmp_path, "d.sieve", 'require "duplicate"; if duplicate { discard; }\n')
    for _ in range(2):
        done = user.run("sieve", "test", path, input=PLAIN.encode(), check=0)
        assert done.stdout == b"keep (implicit)\n"
    assert not user.maildir.exists()
    assert not user.state.exists()
