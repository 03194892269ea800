"""The notification data model (sql/006_notifications.sql) and the school CRM example's rules."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from ripple.local.postgres import apply_file, retry_contended
from ripple.local.stack import ROOT

MIGRATION = ROOT / "sql" / "006_notifications.sql"
EXAMPLE = ROOT / "sql" / "examples" / "school_crm.sql"
# The delivery wake-ups this transaction wrote. Checked before commit: once committed, a
# delivery consumer may drain them at any moment.
WAKE = ("select payload from realtime.outbox where kind = 'notification' "
        "and xid = pg_current_xact_id() order by id")
ALL_METHODS = ["in_app", "email", "sms"]


def apply(conn: psycopg.Connection, path) -> None:
    """As the migrator does: the whole file in one transaction, re-run if a running drain's
    locks made it a deadlock victim."""
    apply_file(conn, path)


def one(db, query: str, *params):
    return db.execute(query, params).fetchone()


def rows(db, query: str, *params) -> list[tuple]:
    return db.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def school(stack):
    with psycopg.connect(stack.db_url, autocommit=True) as conn:
        apply(conn, EXAMPLE)


@contextmanager
def as_user(db: psycopg.Connection, user_id: uuid.UUID):
    """A transaction as an app user runs it through PostgREST: role authenticated, JWT claims."""
    with db.transaction():
        db.execute("set local role authenticated")
        db.execute("select set_config('request.jwt.claims', %s, true)",
                   (json.dumps({"sub": str(user_id), "role": "authenticated"}),))
        yield db


def profile(db, org, role, *, deleted=False, phone=None) -> uuid.UUID:
    user = uuid.uuid4()
    db.execute("insert into profiles (id, organization_id, role, full_name, email, phone, "
               "deleted_at) values (%s, %s, %s, %s, %s, %s, case when %s then now() end)",
               (user, org, role, f"{role} {user.hex[:6]}", f"{user.hex[:8]}@example.com", phone,
                deleted))
    return user


def notify(db, *, user=None, org=None, roles=None, **columns) -> uuid.UUID:
    row = {"organization_id": org, "user_id": user, "role_target": roles, "type": "test",
           "title": "Hello", "message": "World", **columns}
    names = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    return one(db, f"insert into notifications ({names}) values ({marks}) returning id",
               *row.values())[0]


def recipients(db, notification_id) -> dict[uuid.UUID, dict]:
    cur = db.cursor(row_factory=dict_row)
    found = cur.execute("select * from notification_recipients_for(%s)", (notification_id,))
    return {r["user_id"]: r for r in found}


# Constraints


def test_a_notification_targets_a_user_or_roles_never_both_nor_neither(db):
    org = uuid.uuid4()
    with pytest.raises(errors.CheckViolation, match="notifications_target_check"):
        notify(db, org=org)
    with pytest.raises(errors.CheckViolation, match="notifications_target_check"):
        notify(db, org=org, user=uuid.uuid4(), roles=["admin"])
    with pytest.raises(errors.CheckViolation, match="notifications_role_target_check"):
        notify(db, roles=["admin"])
    with pytest.raises(errors.CheckViolation, match="notifications_role_target_check"):
        notify(db, org=org, roles=[])
    defaults = one(db, "select priority, delivery_method, data, read_at from notifications "
                       "where id = %s", notify(db, user=uuid.uuid4()))
    assert defaults == ("normal", ["in_app"], {}, None)


def test_priority_and_delivery_method_are_checked(db):
    with pytest.raises(errors.CheckViolation, match="notifications_priority_check"):
        notify(db, user=uuid.uuid4(), priority="critical")
    for methods in (["in_app", "pigeon"], [], ["email", None]):
        with pytest.raises(errors.CheckViolation, match="notifications_delivery_method_check"):
            notify(db, user=uuid.uuid4(), delivery_method=methods)
    notify(db, user=uuid.uuid4(), priority="urgent", delivery_method=ALL_METHODS)


def test_a_type_is_one_to_200_bytes(db):
    for bad in ("", "x" * 201, "é" * 101):  # é is two bytes: 202
        with pytest.raises(errors.CheckViolation, match="notifications_type_check"):
            notify(db, user=uuid.uuid4(), type=bad)
    for good in ("x", "x" * 200, "é" * 100):
        notify(db, user=uuid.uuid4(), type=good)


def test_quiet_hours_need_a_real_time_zone(db):
    user = uuid.uuid4()
    with pytest.raises(errors.CheckViolation, match="notification_settings_timezone_check"):
        db.execute("insert into notification_settings (user_id, timezone) "
                   "values (%s, 'Mars/Olympus')", (user,))
    with pytest.raises(errors.CheckViolation, match="notification_settings_quiet_hours_check"):
        db.execute("insert into notification_settings (user_id, quiet_hours_start) "
                   "values (%s, '22:00')", (user,))
    db.execute("insert into notification_settings values (%s, '22:00', '07:00', 'Europe/Berlin')",
               (user,))
    assert one(db, "select timezone from notification_settings where user_id = %s",
               user) == ("Europe/Berlin",)


def test_one_delivery_per_notification_recipient_and_channel(db):
    user = uuid.uuid4()
    insert = ("insert into notification_deliveries (notification_id, user_id, channel) "
              "values (%s, %s, %s)")
    # In the notification's own transaction: the delivery function, woken at commit, finds
    # these rows claimed (it would record the unknown user's email failed otherwise).
    with db.transaction():
        notification = notify(db, user=user, delivery_method=["in_app", "email"])
        db.execute(insert, (notification, user, "email"))
        db.execute(insert, (notification, user, "in_app"))
    with pytest.raises(errors.UniqueViolation):
        db.execute(insert, (notification, user, "email"))
    with pytest.raises(errors.CheckViolation):
        db.execute("update notification_deliveries set status = 'lost' "
                   "where notification_id = %s", (notification,))
    [before] = one(db, "select updated_at from notification_deliveries "
                       "where notification_id = %s and channel = 'email'", notification)
    updated = one(db, "update notification_deliveries set status = 'sent', attempts = attempts + 1 "
                      "where notification_id = %s and channel = 'email' "
                      "returning status, attempts, updated_at > %s", notification, before)
    assert updated == ("sent", 1, True)


def test_suppressed_addresses_are_normalised(db):
    insert = "insert into notification_suppressions values (%s, %s, %s)"
    for address, channel, reason in [("Someone@Example.com", "email", "bounce"),
                                     ("0044 20 7946", "sms", "opt_out"),
                                     ("+447700900123", "sms", "spam")]:
        with pytest.raises(errors.CheckViolation):
            db.execute(insert, (address, channel, reason))


# Recipients


def test_recipients_are_the_user_or_the_roles_within_the_organization(db):
    org, other_org = uuid.uuid4(), uuid.uuid4()
    admin = profile(db, org, "admin")
    manager = profile(db, org, "manager")
    profile(db, org, "teacher")
    profile(db, org, "admin", deleted=True)
    profile(db, other_org, "admin")

    to_roles = notify(db, org=org, roles=["admin", "manager"])
    assert set(recipients(db, to_roles)) == {admin, manager}

    to_user = notify(db, org=org, user=manager)
    found = recipients(db, to_user)
    assert list(found) == [manager]
    assert found[manager]["organization_id"] == org
    assert found[manager]["role"] == "manager"
    assert found[manager]["email"] == f"{manager.hex[:8]}@example.com"
    assert (found[manager]["locale"], found[manager]["timezone"]) == ("en", "UTC")
    assert found[manager]["inbox_id"] == to_user

    gone = profile(db, org, "admin", deleted=True)
    assert recipients(db, notify(db, org=org, user=gone)) == {}


def test_recipients_carry_their_preferences_suppressions_and_quiet_hours(db):
    org = uuid.uuid4()
    quiet = profile(db, org, "admin", phone="+447700900001")
    muted = profile(db, org, "admin", phone="+447700900002")
    db.execute("insert into notification_settings values (%s, '22:00', '07:00', 'Asia/Tokyo')",
               (quiet,))
    db.execute("insert into notification_suppressions values (%s, 'email', 'bounce'), "
               "('+447700900001', 'sms', 'opt_out')", (f"{quiet.hex[:8]}@example.com",))
    # '*' turns a channel off for every type; the exact type wins over '*'.
    db.execute("insert into notification_preferences values (%s, '*', 'email', false), "
               "(%s, '*', 'sms', false), (%s, 'test', 'sms', true), (%s, 'test', 'in_app', false)",
               (muted,) * 4)

    found = recipients(db, notify(db, org=org, roles=["admin"], delivery_method=ALL_METHODS))
    assert found[quiet]["channels"] == ALL_METHODS
    assert found[quiet]["suppressed"] == ["email", "sms"]
    assert (str(found[quiet]["quiet_hours_start"]), str(found[quiet]["quiet_hours_end"]),
            found[quiet]["quiet_hours_timezone"]) == ("22:00:00", "07:00:00", "Asia/Tokyo")
    assert found[muted]["channels"] == ["sms"]
    assert found[muted]["suppressed"] == []
    assert found[muted]["quiet_hours_start"] is None
    assert found[muted]["quiet_hours_timezone"] == "UTC"
    # No in-app preference, no inbox copy.
    assert found[muted]["inbox_id"] is None
    assert found[quiet]["inbox_id"] is not None


def test_a_role_targeted_notification_reaches_each_inbox_and_wakes_delivery_once(db):
    org = uuid.uuid4()
    admins = {profile(db, org, "admin"), profile(db, org, "admin")}
    profile(db, org, "teacher")
    with db.transaction():
        original = notify(db, org=org, roles=["admin"], delivery_method=["in_app", "email"],
                          data=json.dumps({"k": 1}))
        copies = rows(db, "select id, user_id, role_target, type, data from notifications "
                          "where parent_id = %s", original)
        wake = rows(db, WAKE)
        # Each copy is captured as its recipient's own postgres_changes INSERT.
        captured = rows(db, "select record ->> 'user_id' from realtime.outbox "
                            "where xid = pg_current_xact_id() and kind = 'change' "
                            "and table_name = 'notifications' and op = 'INSERT' "
                            "and record ->> 'parent_id' = %s", str(original))
    assert {c[1] for c in copies} == admins
    assert all(c[2] is None and c[3] == "test" and c[4] == {"k": 1} for c in copies)
    assert wake == [({"notification_id": str(original)},)]
    assert {uuid.UUID(c[0]) for c in captured} == admins
    assert {r["inbox_id"] for r in recipients(db, original).values()} == {c[0] for c in copies}

    # The realtime authorization lets a copy reach its recipient and no one else.
    copy_id, recipient = copies[0][:2]
    [image] = one(db, "select to_jsonb(n) from notifications n where id = %s", copy_id)
    request = {"principals": [{"role": "authenticated",
                               "claims": {"sub": str(u), "role": "authenticated"}}
                              for u in (recipient, *(admins - {recipient}))],
               "images": [{"schema": "public", "table": "notifications", "row": image}],
               "checks": [[0, 0], [1, 0]]}
    assert rows(db, "select principal, allowed from realtime.authorize(%s) order by principal",
                json.dumps(request)) == [(0, True), (1, False)]

    email_only = notify(db, org=org, roles=["admin"], delivery_method=["email"])
    assert one(db, "select count(*) from notifications where parent_id = %s", email_only) == (0,)


# Row-level security


def test_users_read_mark_read_and_delete_only_their_own_inbox(db):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    mine = notify(db, user=alice)
    theirs = notify(db, user=bob)
    email_only = notify(db, user=alice, delivery_method=["email"])
    mark_read = "update notifications set read_at = now() where id = %s"

    with as_user(db, alice):
        assert rows(db, "select id from notifications where id in (%s, %s, %s)",
                    mine, theirs, email_only) == [(mine,)]
        assert db.execute(mark_read, (theirs,)).rowcount == 0
        assert db.execute("delete from notifications where id = %s", (theirs,)).rowcount == 0
        assert db.execute(mark_read, (mine,)).rowcount == 1
    assert one(db, "select read_at is not null from notifications where id = %s", mine) == (True,)
    assert one(db, "select read_at from notifications where id = %s", theirs) == (None,)

    with pytest.raises(errors.InsufficientPrivilege), as_user(db, alice):
        db.execute("update notifications set title = 'pwned' where id = %s", (mine,))
    with pytest.raises(errors.InsufficientPrivilege), as_user(db, alice):
        db.execute("update notifications set user_id = %s where id = %s", (bob, mine))
    with pytest.raises(errors.InsufficientPrivilege), as_user(db, alice):
        db.execute("insert into notifications (user_id, type, title, message) "
                   "values (%s, 't', 't', 't')", (alice,))

    with as_user(db, alice):
        assert db.execute("delete from notifications where id = %s", (mine,)).rowcount == 1
    assert rows(db, "select id from notifications where id in (%s, %s)",
                mine, theirs) == [(theirs,)]


def test_unread_counts_are_each_users_own(db):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):
        notify(db, user=alice)
    notify(db, user=alice, delivery_method=["sms"])
    notify(db, user=alice, read_at=datetime.now(UTC))
    notify(db, user=bob)
    counts = "select user_id, unread from notification_unread_counts"

    with as_user(db, alice):
        assert rows(db, counts) == [(alice, 3)]
    with as_user(db, bob):
        assert rows(db, counts) == [(bob, 1)]


def test_preferences_settings_and_deliveries_are_private(db):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    db.execute("insert into notification_preferences (user_id, type, channel) "
               "values (%s, '*', 'sms')", (bob,))
    db.execute("insert into notification_settings (user_id) values (%s)", (bob,))
    with db.transaction():  # claimed before the delivery function, woken at commit, sees it
        notification = notify(db, user=bob, delivery_method=["email"])
        db.execute("insert into notification_deliveries (notification_id, user_id, channel) "
                   "values (%s, %s, 'email')", (notification, bob))

    with as_user(db, alice):
        db.execute("insert into notification_preferences (user_id, type, channel, enabled) "
                   "values (%s, 'payment.overdue', 'sms', false)", (alice,))
        db.execute("insert into notification_settings "
                   "values (%s, '21:00', '08:00', 'America/New_York')", (alice,))
        for table in ("notification_preferences", "notification_settings"):
            assert rows(db, f"select user_id from {table} where user_id in (%s, %s)",
                        alice, bob) == [(alice,)]
        assert one(db, "select count(*) from notification_deliveries where user_id = %s",
                   bob) == (0,)
        assert db.execute("update notification_settings set timezone = 'UTC' "
                          "where user_id = %s", (bob,)).rowcount == 0
    with pytest.raises(errors.InsufficientPrivilege), as_user(db, alice):
        db.execute("insert into notification_preferences (user_id, type, channel) "
                   "values (%s, '*', 'email')", (bob,))

    # What the delivery function does, as service_role (BYPASSRLS).
    with db.transaction():
        db.execute("set local role service_role")
        assert recipients(db, notification) == {}  # bob has no profile: no address to use
        db.execute("update notification_deliveries set status = 'sent', "
                   "provider_message_id = 'm-1' where notification_id = %s", (notification,))
        db.execute("insert into notification_suppressions values (%s, 'email', 'unsubscribe')",
                   (f"{bob.hex}@example.com",))

    with as_user(db, bob):
        assert rows(db, "select channel, status from notification_deliveries "
                        "where notification_id = %s", notification) == [("email", "sent")]
        with pytest.raises(errors.InsufficientPrivilege):
            db.execute("update notification_deliveries set status = 'delivered'")


def test_anon_gets_nothing(db):
    tables = ["notifications", "notification_preferences", "notification_settings",
              "notification_deliveries", "notification_suppressions",
              "notification_unread_counts", "notification_recipients_v", "profiles"]
    assert rows(db, "select t from unnest(%s::text[]) t where has_table_privilege('anon', "
                    "'public.' || t, 'select, insert, update, delete')", tables) == []
    assert one(db, "select has_table_privilege('authenticated', "
                   "'public.notification_recipients_v', 'select'), "
                   "has_function_privilege('authenticated', "
                   "'public.notification_recipients_for(uuid)', 'execute')") == (False, False)


# Cleanup


def test_cleanup_deletes_read_notifications_older_than_the_cutoff(db):
    org = uuid.uuid4()
    profile(db, org, "admin")
    user = uuid.uuid4()
    long_ago = "2000-01-01"
    old_read = notify(db, user=user, created_at=long_ago, read_at="2000-01-02")
    old_unread = notify(db, user=user, created_at=long_ago)
    recent_read = notify(db, user=user, read_at=datetime.now(UTC))
    old_email_only = notify(db, user=user, created_at=long_ago, delivery_method=["email"])
    old_to_admins = notify(db, org=org, roles=["admin"], created_at=long_ago)
    [copy] = one(db, "select id from notifications where parent_id = %s", old_to_admins)
    ids = [old_read, old_unread, recent_read, old_email_only, old_to_admins, copy]

    def left():
        return {r[0] for r in rows(db, "select id from notifications where id = any(%s)", ids)}

    [deleted] = one(db, "select notifications_cleanup('3650 days')")
    assert left() == {old_unread, recent_read, old_to_admins, copy}
    assert deleted >= 2  # old_read, old_email_only, and any other test's rows that old

    # Once the last copy is read and gone, the role-targeted original goes too.
    db.execute("update notifications set read_at = '2000-01-03' where id = %s", (copy,))
    db.execute("select notifications_cleanup('3650 days')")
    assert left() == {old_unread, recent_read}


# The school CRM example


def school_org(db) -> tuple[uuid.UUID, set[uuid.UUID]]:
    org = uuid.uuid4()
    admins = {profile(db, org, "admin"), profile(db, org, "admin")}
    profile(db, uuid.uuid4(), "admin")  # another school's admin
    return org, admins


def add_student(db, org, name, user=None) -> uuid.UUID:
    return one(db, "insert into students (organization_id, user_id, full_name) "
                   "values (%s, %s, %s) returning id", org, user, name)[0]


def add_group(db, org, name, capacity) -> uuid.UUID:
    return one(db, "insert into groups (organization_id, name, capacity) "
                   "values (%s, %s, %s) returning id", org, name, capacity)[0]


def inbox_owners(db, original) -> set[uuid.UUID]:
    return {r[0] for r in rows(db, "select user_id from notifications where parent_id = %s",
                               original)}


def test_an_enrollment_notifies_the_admins_and_wakes_delivery(db, school):
    org, admins = school_org(db)
    student = add_student(db, org, "Ada")
    group = add_group(db, org, "Algebra", 10)
    with db.transaction():
        db.execute("insert into student_group_enrollments (student_id, group_id) "
                   "values (%s, %s)", (student, group))
        made = rows(db, "select id, role_target, type, priority, delivery_method, data "
                        "from notifications where organization_id = %s and parent_id is null", org)
        wake = rows(db, WAKE)
    [(notification, roles, kind, priority, methods, data)] = made
    assert (roles, kind, priority) == (["admin"], "enrollment.created", "normal")
    assert methods == ["in_app", "email"]
    assert data == {"student_id": str(student), "group_id": str(group),
                    "student_name": "Ada", "group_name": "Algebra"}
    assert wake == [({"notification_id": str(notification)},)]
    assert inbox_owners(db, notification) == admins


def test_a_group_reaching_capacity_notifies_the_admins_once(db, school):
    org, admins = school_org(db)
    group = add_group(db, org, "Choir", 3)
    students = [add_student(db, org, f"s{i}") for i in range(4)]
    enroll = "insert into student_group_enrollments (student_id, group_id) values (%s, %s)"
    db.execute(enroll, (students[0], group))

    def full():
        return rows(db, "select id, role_target, priority, delivery_method, data ->> 'group_id' "
                        "from notifications where organization_id = %s and type = 'group.full' "
                        "and parent_id is null", org)

    assert full() == []
    with db.transaction():
        # Two rows in one statement take the group to capacity: one notification.
        db.execute(enroll.replace("(%s, %s)", "(%s, %s), (%s, %s)"),
                   (students[1], group, students[2], group))
        [(notification, *rest)] = full()
        assert rest == [["admin"], "normal", ["in_app"], str(group)]
        # One wake-up per notification: two 'enrollment.created' and the 'group.full'.
        assert len(rows(db, WAKE)) == 3
    db.execute(enroll, (students[3], group))
    assert len(full()) == 1
    assert inbox_owners(db, notification) == admins


def test_a_payment_turning_overdue_notifies_the_student_or_else_the_admins(db, school):
    org, admins = school_org(db)
    user = profile(db, org, "student", phone="+447700900100")
    linked = add_student(db, org, "Bea", user)
    unlinked = add_student(db, org, "Cy")
    set_status = "update students set payment_status = %s where id = %s"

    def overdue():
        return rows(db, "select user_id, role_target, priority, delivery_method, "
                        "data ->> 'student_id' from notifications where organization_id = %s "
                        "and type = 'payment.overdue' and parent_id is null order by created_at",
                    org)

    db.execute(set_status, ("pending", linked))
    assert overdue() == []
    with db.transaction():
        db.execute(set_status, ("overdue", linked))
        [(notification,)] = rows(db, "select id from notifications where user_id = %s", user)
        assert rows(db, WAKE) == [({"notification_id": str(notification)},)]
    # Still overdue: no second notification.
    db.execute("update students set payment_status = 'overdue', full_name = 'Bea B' "
               "where id = %s", (linked,))
    assert overdue() == [(user, None, "high", ALL_METHODS, str(linked))]
    assert list(recipients(db, notification)) == [user]

    db.execute(set_status, ("overdue", unlinked))
    to_admins = overdue()[1]
    assert to_admins == (None, ["admin"], "high", ALL_METHODS, str(unlinked))


def test_school_tables_are_realtime_and_readable_within_the_organization(db, school):
    published = {r[0] for r in rows(db, "select tablename from pg_publication_tables "
                                        "where pubname = 'supabase_realtime' "
                                        "and schemaname = 'public'")}
    assert {"students", "teachers", "groups", "student_group_enrollments",
            "teacher_group_assignments", "notifications"} <= published
    org, admins = school_org(db)
    elsewhere = uuid.uuid4()
    add_student(db, org, "Dee")
    add_student(db, elsewhere, "Eve")
    with as_user(db, next(iter(admins))):
        names = rows(db, "select full_name from students where organization_id in (%s, %s)",
                     org, elsewhere)
    assert names == [("Dee",)]


# Re-running


def test_both_files_can_be_applied_again_without_changing_anything(db, school):
    def shape():
        return one(db, """
            select (select count(*) from pg_policy),
                   (select count(*) from pg_trigger where not tgisinternal),
                   (select count(*) from pg_publication_tables where pubname = 'supabase_realtime'),
                   (select count(*) from pg_indexes where schemaname = 'public'),
                   (select count(*) from pg_proc where pronamespace = 'public'::regnamespace),
                   pg_get_viewdef('public.notification_recipients_v'),
                   (select array_agg(concat_ws(' ', grantee, privilege_type, table_name)
                                     order by grantee, privilege_type, table_name)
                    from information_schema.role_table_grants where table_schema = 'public'),
                   (select array_agg(concat_ws(' ', grantee, privilege_type, column_name)
                                     order by grantee, privilege_type, column_name)
                    from information_schema.column_privileges
                    where table_schema = 'public' and table_name = 'notifications')""")

    before = shape()
    for _ in range(2):
        apply(db, MIGRATION)
        apply(db, EXAMPLE)
    assert shape() == before


def test_an_apps_own_recipients_view_survives_the_migration(db):
    custom = ("create or replace view notification_recipients_v as "
              "select id as user_id, organization_id, role, full_name, email, phone, "
              "'fr'::text as locale, timezone from profiles where deleted_at is null")
    user = profile(db, uuid.uuid4(), "admin")

    def deploy() -> None:
        # The app's view and the migration in one transaction, retried whole: its lock on the
        # view would meet a running drain's locks again if only the migration were re-run.
        with db.transaction():
            db.execute(custom)
            apply(db, MIGRATION)
            assert recipients(db, notify(db, user=user))[user]["locale"] == "fr"
            raise psycopg.Rollback

    retry_contended(deploy)
