"""The delivery hosts of a shared directory, as the admin sees them: a row
in the directory's `hosts` table (name, transport) for each host, and the
host that holds each mailbox database (`databases.host`).

The transport is what a front-end Postfix's transport map answers for the
mailboxes of that host (`lda socketmap`'s `transport` map, lda/services/
answers.py): a Postfix "transport:nexthop" such as lmtp:inet:10.0.0.2:24.
Each host delivers only to its own databases (lda.toml's host_name; the
check is on the delivery path, lda/store/directory.py).

Admin commands only; written through the same `db["table"]` calls on the
SQLite directory and on PostgreSQL.
"""

import re
import time

from ..errors import AlreadyExists, UnknownName, UsageError
from .databases import iso_utc
from .mailboxes import create_database

MAX_HOST_NAME = 253    # a DNS name's limit; a host name is one, or a label
MAX_TRANSPORT = 255
# Labels of letters, digits, "-" and "_", joined by dots: what a host's
# name in DNS or in lda.toml looks like; no "/", space or control character.
HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*")
# Postfix's transport:nexthop (transport(5)): a master.cf service name, a
# colon, then a next hop of printable ASCII without spaces (Postfix would
# split a table value at one).  lmtp:inet:host:24, lmtp:unix:/path,
# smtp:[10.0.0.2]:25.
TRANSPORT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*:[!-~]+")


def validate_host_name(name):
    """name as given, or UsageError (64) for one that is no host name."""
    if (not isinstance(name, str) or len(name) > MAX_HOST_NAME
            or not HOST_NAME.fullmatch(name)):
        raise UsageError(f"invalid host name {name[:80]!r}: letters, digits, - and _ "
                         f"in dot-separated labels, at most {MAX_HOST_NAME} characters")
    return name


def validate_transport(transport):
    """transport as given, or UsageError (64) for one Postfix would not read
    as transport:nexthop."""
    if (not isinstance(transport, str) or len(transport) > MAX_TRANSPORT
            or not TRANSPORT.fullmatch(transport)):
        raise UsageError(f"invalid transport {transport[:80]!r}: a Postfix transport:nexthop "
                         f"such as lmtp:inet:10.0.0.2:24, printable, no spaces, at most "
                         f"{MAX_TRANSPORT} characters")
    return transport


def host_row(db, name):
    """The row of host name; UnknownName (67) if there is none."""
    validate_host_name(name)
    rows = list(db["hosts"].rows_where("name = ?", [name]))
    if not rows:
        raise UnknownName(f"no host named {name!r} (see 'lda host list')")
    return rows[0]


def describe(db, row):
    """What `lda host list` prints about one host."""
    held = [r["name"] for r in db["databases"].rows_where("host = ?", [row["name"]],
                                                          order_by="name")]
    return {"name": row["name"], "transport": row["transport"], "databases": held,
            "created": iso_utc(row["created"])}


def list_hosts(db):
    return [describe(db, row) for row in db["hosts"].rows_where(order_by="name")]


def add_host(db, name, transport, clock=time.time):
    """Register a host and the transport that reaches it; everything is
    checked before anything is written."""
    validate_host_name(name)
    validate_transport(transport)
    if db["hosts"].count_where("name = ?", [name]):
        raise AlreadyExists(f"host {name!r} exists already")
    db["hosts"].insert({"name": name, "transport": transport, "created": clock()})
    return describe(db, db["hosts"].get(name))


def remove_host(db, name):
    """Forget a host; refused (64) while a database names it, since its
    mailboxes would then have no route and no host to deliver them."""
    row = host_row(db, name)
    held = describe(db, row)["databases"]
    if held:
        raise UsageError(f"host {name!r} still holds mailbox database(s) "
                         f"{', '.join(held)}; nothing removed")
    db["hosts"].delete(name)
    return describe(db, row)


def create_database_on(db, config, name, path=None, host=None):
    """`lda db create`: a mailbox database, held by host when given (a
    host `lda host add` registered, checked before anything is made)."""
    if host is not None:
        host_row(db, host)
    row = create_database(db, config, name, path, host)
    return {**row, "host": host}
