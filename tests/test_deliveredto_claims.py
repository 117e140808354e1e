"""DeliveredTo.forget_named: a delivery that failed after letting its
mailbox lock go (lda.deliver.delivery._record_synced) or did not use its
early claim forgets its pending row only while the row still names its
file: another delivery may have claimed the key since."""

from lda.store.deliveredto import DeliveredTo

KEY = ("a@example.org", "<m@example.org>", "2026-11-24T10:00:00Z")


def test_a_row_is_forgotten_only_while_it_names_the_file(tmp_path):
    db = DeliveredTo(str(tmp_path))
    try:
        with db.transaction():
            db.mark_pending([(KEY, "mine")])
        with db.transaction():
            db.mark_pending([(KEY, "theirs")])  # claimed anew by another delivery
            db.forget_named([(KEY, "mine")])
        assert db.lookup([KEY]) == {KEY: ("pending", "theirs", None)}
        with db.transaction():
            db.forget_named([(KEY, "theirs")])
        assert db.lookup([KEY]) == {}
    finally:
        db.close()


def test_a_delivered_row_is_never_forgotten(tmp_path):
    db = DeliveredTo(str(tmp_path))
    try:
        with db.transaction():
            db.mark_pending([(KEY, "mine")])
            db.mark_delivered([KEY])
            db.forget_named([(KEY, "mine")])
        assert db.lookup([KEY]) == {KEY: ("delivered", "mine", None)}
    finally:
        db.close()
