"""A PostgreSQL URL as lda shows it: without its password.

Apart from lda/admin/pgdirectory.py so that a command that only prints the
configuration (`lda config show`) masks the `directory` URL without
importing psycopg.
"""

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit


def public_url(url):
    """url without its password (in the user part or as ?password=), for
    every message, log line and the mirror's `source` row."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = user.partition(":")[0] + "@" + host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k != "password"], safe="/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets(url):
    """The password(s) the URL carries, to scrub from libpq's messages:
    as written and decoded, and whatever stands between the first ':' and
    the last '@' of the authority when the URL does not parse."""
    try:
        parts = urlsplit(url)
        found = [v for k, v in parse_qsl(parts.query) if k == "password"]
        found += [parts.password, unquote(parts.password)] if parts.password else []
    except ValueError:
        authority = url.partition("://")[2].partition("/")[0]
        found = [authority.rpartition("@")[0].partition(":")[2]]
    return [s for s in found if s]


def scrubbed(text, url):
    for secret in secrets(url):
        text = text.replace(secret, "***")
    return text.strip().splitlines()[0] if text.strip() else "no reason given"
