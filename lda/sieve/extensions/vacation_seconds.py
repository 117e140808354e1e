"""The :seconds tag of vacation (RFC 6131): the reply period in seconds.

Only the compile side lives here; lda/sieve/vacation.py reads
node.get("seconds") and holds the period's limits (MIN_PERIOD, as
Pigeonhole's sieve_vacation_min_period, is one day: a shorter :seconds
is raised to it).  "vacation-seconds" implies "vacation" (RFC 6131
section 2), so requiring it alone allows the vacation command.
"""

from ..spec import NUMBER, tag

CAPABILITIES = ("vacation-seconds",)
IMPLIES = {"vacation-seconds": ("vacation",)}
COMMANDS = {}
TESTS = {}
TAGS = {"vacation": {":seconds": tag("seconds", kind=NUMBER, extension="vacation-seconds")}}
