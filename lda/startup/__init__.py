"""Stand-ins for standard modules that `lda deliver` would otherwise import.

Every module here is named after the standard module it replaces and does
the part of it lda uses.  The budget: a delivery imports nothing it does not
use, and none of the modules listed in NOT_ON_THE_DELIVERY_PATH in
tests/test_deliver.py; the figures are in bench/profiles/.

Imported by every `lda deliver`: this file stays empty.
"""
