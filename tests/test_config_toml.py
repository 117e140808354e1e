"""lda.toml's fast reader against tomllib.

lda.startup.tomllib.flat_toml() reads plain `key = value` files without
importing tomllib (~10 ms of every delivery) and hands everything else to it.
Whenever it answers, tomllib must read the same file to the same values;
the files lda ships and documents must take the fast path.
"""

import re
import tomllib
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lda import config as lda_config
from lda.config import load_config
from lda.startup.tomllib import flat_toml

ROOT = Path(__file__).resolve().parent.parent

KEYS = ["state_dir", "aliases", "n", "quota_storage", "a-b", "1", "", "a b", "a.b", '"q"']
VALUES = ['"/var/lib/lda"', "'/srv/mail'", '""', "''", '"a#b"', "'a\"b'", '"x\\ny"',
          '"""x"""', "'''x'''", '"unterminated', "1", "0", "-0", "-12", "01", "+1",
          "1_000", "1.5", "1e3", "true", "false", "True", "tru", "truex", "[1]",
          '["a", "b"]', "[]", "[ ]", "[,]", '["a",]', '["a" ,\t\'b\' , ]', '["a" "b"]',
          '["a",,]', '[1, "a"]', '["a", 1]', '["a"', '["a\\nb"]', '[["a"]]', '["a"]x',
          "['#', \"]\"]", "{a = 1}", "2026-11-25", "inf", "nan", "", "0x10", '"é"',
          "9" * 30, '"tab\there"']
SPACE = st.sampled_from(["", " ", "  ", "\t"])
COMMENT = st.sampled_from(["", "# note", "#", "# é", "# \x01", "#\t"])
EOL = st.sampled_from(["\n", "\r\n", "\r", ""])


@st.composite
def lines(draw):
    kind = draw(st.sampled_from(["pair", "pair", "pair", "comment", "blank", "table", "raw"]))
    if kind == "pair":
        return (draw(SPACE) + draw(st.sampled_from(KEYS)) + draw(SPACE) + "=" + draw(SPACE)
                + draw(st.sampled_from(VALUES)) + draw(SPACE) + draw(COMMENT))
    if kind == "comment":
        return draw(SPACE) + draw(COMMENT)
    if kind == "table":
        return draw(st.sampled_from(["[t]", "[[t]]", "t.x = 1"]))
    if kind == "raw":
        return draw(st.text(alphabet="a=\"'#1 \t\x00\x7f.", max_size=12))
    return draw(SPACE)


@settings(max_examples=3000, deadline=None, derandomize=True, database=None)
@given(document=st.lists(st.tuples(lines(), EOL), max_size=8))
@example(document=[('state_dir = "/x"', "\n"), ("state_dir = '/y'", "\n")])
@example(document=[('a = "x" "y"', "\n")])
def test_whenever_the_fast_reader_answers_tomllib_agrees(document):
    text = "".join(line + eol for line, eol in document)
    data = text.encode("utf-8", "surrogatepass")
    fast = flat_toml(data)
    if fast is not None:
        assert tomllib.loads(text) == fast


def test_what_lda_ships_and_documents_takes_the_fast_path(tmp_path):
    """The example file with every key set, each lda.toml in the man page,
    and a configuration as the tests write it; a reader that always said
    None would pass the test above and speed nothing up."""
    example = (ROOT / "contrib" / "lda.toml.example").read_text()
    # Every key set, as an admin uncomments them.
    every_key = re.sub(r"(?m)^#\s?(?=[a-z_]+ = )", "", example)
    blocks = re.findall(r"(?s)\.EX\n(.*?)\n\.EE", (ROOT / "man" / "lda.toml.5").read_text())
    assert len(blocks) == 4  # the examples of KEYS, per-user mode, quota warnings, spamtest
    for text in [example, every_key, *blocks]:
        assert flat_toml(text.encode()) == tomllib.loads(text), text
    assert len(flat_toml(every_key.encode())) == len(lda_config.KEYS)
    assert flat_toml(b'sendmail = ["/usr/sbin/sendmail", "-i"]\n') == {
        "sendmail": ["/usr/sbin/sendmail", "-i"]}
    config = tmp_path / "lda.toml"
    config.write_text('state_dir = "/srv/lda"  # the state\nlmtp_workers = 8\n')
    loaded = load_config(str(config), environ={"HOME": str(tmp_path)})
    assert (loaded.state_dir, loaded.lmtp_workers) == ("/srv/lda", 8)
