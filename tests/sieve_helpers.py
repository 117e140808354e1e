"""What the Sieve unit tests share: the sample messages, a script run
against one as the delivery path reads it, and outcomes as
Outcome.describe() lists them."""

import io

from lda.deliver.message import Reader
from lda.sieve import Envelope, compile_script, run

PLAIN = """\
From: Coyote <coyote@desert.example.org>
To: Road Runner <roadrunner@acme.example.com>
Cc: wile+lists@example.org
Subject: I have a present for you
Message-ID: <present@desert.example.org>
Date: Tue, 24 Nov 2026 10:00:00 +0000
X-Caffeine: C8H10N4O2

Beep beep.
"""
LIST = """\
From: Guido <guido@python.example.org>
To: python-dev@python.example.org
Subject: [python-dev] PEP 999 accepted
List-Id: Python development <python-dev.python.example.org>
Precedence: list
Message-ID: <pep999@python.example.org>

Yay.
"""
SPAM = """\
From: money@spam.example.net
To: roadrunner@acme.example.com
Subject: MAKE MONEY FAST
X-Spam-Score: ******
Message-ID: <spam1@spam.example.net>

Buy.
"""
ENCODED = """\
From: =?utf-8?q?Andr=C3=A9?= <andre@example.fr>
To: roadrunner@acme.example.com
Subject: =?utf-8?b?Q2Fmw6kgY3LDqG1l?=
Subject-Folded: a long
 folded value
Reply-To: <>
Resent-To: undisclosed-recipients:;
Message-ID: <enc@example.fr>

Bonjour.
"""
MESSAGES = {"plain": PLAIN, "list": LIST, "spam": SPAM, "encoded": ENCODED}
SENDERS = {"plain": "coyote@desert.example.org", "list": "python-dev-bounces@python.example.org",
           "spam": "money@spam.example.net", "encoded": "andre@example.fr"}
RECIPIENT = "roadrunner@acme.example.com"


def parse(text, size=None):
    """The message as the delivery path reads it (lda.deliver.message.Reader),
    with raw(limit) giving its bytes as a body or mime test reads them."""
    reader = Reader(io.BytesIO(text.encode("utf-8") if isinstance(text, str) else text))
    data = b"".join(reader.chunks())
    reader.info()
    reader.raw = lambda limit: data[:limit]
    if size is not None:
        reader.size = size
    return reader


def with_headers(*lines, base=PLAIN):
    """PLAIN with `lines` replacing (or adding) header fields."""
    names = {line.split(":", 1)[0].lower() for line in lines}
    head, body = base.split("\n\n", 1)
    kept = [f for f in head.split("\n") if f.split(":", 1)[0].lower() not in names]
    return "\n".join(kept + list(lines)) + "\n\n" + body


def outcome_of(script, msg="plain", sender=None, to=RECIPIENT, state=None, size=None,
               original=None):
    text = MESSAGES.get(msg, msg)
    sender = SENDERS.get(msg, "coyote@desert.example.org") if sender is None else sender
    return run(compile_script(script), parse(text, size), Envelope(sender, to, original),
               state)


def actions(script, **kwargs):
    outcome = outcome_of(script, **kwargs)
    assert outcome.errors == []
    return outcome.describe()


KEEP = ["keep (implicit)"]
DISCARD = ["discard"]

SCRIPT = 'require ["fileinto"];\nif header :contains "subject" "present" { fileinto "Gifts"; }\n'


def cached_run_probe(path, cache, text):
    """Python source that loads the script at `path` from its cache in
    `cache`, runs it on the message `text`, prints the cache status and the
    actions on stderr and the modules it loaded on stdout: for the tests
    that a cached script imports only what it uses."""
    return f"""
import io, sys
from lda.deliver.message import Reader
from lda.sieve import Envelope, MemoryState, load_script, run
reader = Reader(io.BytesIO({text.encode()!r}))
for _ in reader.chunks():
    pass
reader.info()
script = load_script({str(path)!r}, {str(cache)!r})
outcome = run(script, reader, Envelope("a@example.org", "b@example.org"), MemoryState())
print(script.cache_status, outcome.describe(), file=sys.stderr)
print(" ".join(sorted(sys.modules)))
"""
