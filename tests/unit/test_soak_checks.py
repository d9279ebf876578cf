"""The soak's checks (bench/soak.py) on made-up observations: they pass on a consistent run, and each one fails
when its input is corrupted. The soak itself (`make soak`) is not part of `make test`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bench import soak
from bench.soak import Delivery, Observations, Record, Write
from contract.avro import AvroSchemas

SCHEMAS = AvroSchemas()
ROOM_1, ROOM_2, SEEDED = (str(uuid.uuid4()) for _ in range(3))


def body(event_id: str, position: int, event_type: str, key: str) -> bytes:
    return SCHEMAS.encode_single_object("roomservice.Event", {
        "event_id": event_id, "type": event_type, "subject": "roomservice.Room", "key": key,
        "occurred_at": datetime.now(UTC), "position": position, "entity": None, "entity_fingerprint": None,
    })


def consistent() -> Observations:
    """A run in which nothing went wrong: six writes, their six events, delivered in order with a resent tail."""
    writes = [Write("room.created", ROOM_1, 1.0), Write("room.created", ROOM_2, 1.1), Write("room.updated", ROOM_1, 1.2),
              Write("room.deleted", ROOM_2, 1.3), Write("item.created", "1", 1.4), Write("question.created", "5", 1.5)]
    events = [(str(uuid.uuid4()), position, w.event_type, w.key) for position, w in enumerate(writes, start=1)]
    deliveries = [Delivery(e, p, t, False, body(e, p, t, k), 0.5 + p) for e, p, t, k in events[:4]]
    # The broker restarted: positions 3 and 4 come again (duplicates), then the rest, after it was ready.
    deliveries += [Delivery(e, p, t, p == 3, body(e, p, t, k), 5.0 + p) for e, p, t, k in events[2:]]
    return Observations(
        records=[Record("get_room", "GET", f"/v1/rooms/{ROOM_1}", 200, 1.0, 1.0, None),
                 Record("get_room", "GET", f"/v1/rooms/{ROOM_2}", 404, 1.0, 1.6, None),
                 Record("patch_room_stale", "PATCH", f"/v1/rooms/{ROOM_1}", 412, 1.0, 1.7, None)],
        writes=writes, stale_attempts=1, deliveries=deliveries, events=events, unpublished=0,
        present={"room": {ROOM_1, SEEDED}, "item": {"1"}, "question": {"5"}},
        broker_restart={"at": 4.0, "seconds": 3.0, "ready_at": 7.0}, load_seconds=10.0, drain_seconds=0.5,
    )


def failing(observations: Observations) -> list[str]:
    return [check.name for check in soak.run_checks(observations) if not check.passed]


def test_a_consistent_run_passes_every_check():
    checks = soak.run_checks(consistent())
    assert [c.name for c in checks if not c.passed] == []
    order = next(c for c in checks if c.name == "first deliveries in position order")
    assert "6 first deliveries" in order.detail and "2 duplicates" in order.detail


def corrupted(change) -> list[str]:
    observations = consistent()
    change(observations)
    return failing(observations)


def test_a_lost_create_fails():
    assert corrupted(lambda o: o.present["room"].discard(ROOM_1)) == ["every acknowledged create is stored"]


def test_a_delete_that_did_not_happen_fails():
    assert corrupted(lambda o: o.present["room"].add(ROOM_2)) == ["every acknowledged delete is gone"]


def test_an_acknowledged_write_without_its_event_fails():
    assert corrupted(lambda o: o.writes.append(Write("item.updated", "1", 2.0))) == [
        "the outbox has one event per acknowledged write"]


def test_an_event_without_an_acknowledged_write_fails_unless_an_answer_was_lost():
    assert corrupted(lambda o: o.writes.pop(4)) == ["the outbox has one event per acknowledged write"]

    def lost_answer(o: Observations) -> None:
        o.writes.pop(4)
        o.unanswered_writes.append(Record("create_item", "POST", "/v1/items", 0, 30000.0, 1.4, b"TimeoutError"))
        o.records.append(o.unanswered_writes[-1])

    assert corrupted(lost_answer) == ["zero failed connections"]  # the outbox check allows it; the lost answer fails


def test_unpublished_events_fail():
    assert corrupted(lambda o: setattr(o, "unpublished", 2)) == ["the relay published every event"]


def test_an_undelivered_event_fails():
    def drop(o: Observations) -> None:
        o.deliveries = [d for d in o.deliveries if d.position != 2]

    assert corrupted(drop) == ["the broker delivered every committed event"]


def test_a_message_that_is_no_committed_event_fails():
    def phantom(o: Observations) -> None:
        e = str(uuid.uuid4())
        o.deliveries.append(Delivery(e, 7, "room.created", False, body(e, 7, "room.created", ROOM_1), 12.0))

    assert corrupted(phantom) == ["the broker delivered every committed event"]


def test_first_deliveries_out_of_order_fail():
    def swap(o: Observations) -> None:
        o.deliveries[0], o.deliveries[1] = o.deliveries[1], o.deliveries[0]

    assert corrupted(swap) == ["first deliveries in position order"]


@pytest.mark.parametrize("field, value", [("position", 9), ("routing_key", "room.deleted"),
                                           ("body", b"\xc3\x01garbage")])
def test_a_message_that_differs_from_its_row_fails(field, value):
    def damage(o: Observations) -> None:
        o.deliveries[-1] = o.deliveries[-1]._replace(**{field: value})

    assert "every message matches its outbox row" in corrupted(damage)


def test_a_5xx_fails_and_a_503_is_allowed_only_during_the_database_outage():
    answer = Record("create_room", "POST", "/v1/rooms", 503, 2.0, 5.0, b'{"status": 503}')
    assert corrupted(lambda o: o.records.append(answer._replace(status=500))) == ["zero 5xx answers"]
    assert corrupted(lambda o: o.records.append(answer)) == ["zero 5xx answers"]

    def during_outage(o: Observations) -> None:
        o.records.append(answer)
        o.db_outage = {"at": 4.5, "until": 6.0}

    assert corrupted(during_outage) == []
    assert corrupted(lambda o: (during_outage(o), o.records.append(answer._replace(status=500)))) == ["zero 5xx answers"]


def test_a_stale_if_match_accepted_fails_and_so_does_never_trying_one():
    assert corrupted(lambda o: o.stale_accepted.append("PATCH ... 200")) == ["a stale If-Match is refused"]
    assert corrupted(lambda o: setattr(o, "stale_attempts", 0)) == ["a stale If-Match is refused"]


def test_a_room_on_two_pages_fails():
    assert corrupted(lambda o: o.page_violations.append("x")) == ["paged searches see each room once"]


def test_no_broker_restart_or_no_delivery_after_it_fails():
    name = "the broker restarted mid-load and delivery resumed"
    assert corrupted(lambda o: setattr(o, "broker_restart", {})) == [name]
    assert corrupted(lambda o: o.broker_restart.update(ready_at=20.0)) == [name]


def test_a_process_that_exited_fails():
    assert corrupted(lambda o: o.process_exits.append("relay exited with 1")) == ["every process and thread ran to the end"]


@pytest.mark.parametrize("name, check", [
    ("forget-write", "the outbox has one event per acknowledged write"),
    ("drop-delivery", "the broker delivered every committed event"),
    ("reorder", "first deliveries in position order"),
    ("bad-header", "every message matches its outbox row"),
    ("fake-5xx", "zero 5xx answers"),
    ("fake-stale", "a stale If-Match is refused"),
])
def test_each_corruption_of_the_live_run_fails_its_check(name, check, capsys):
    observations = consistent()
    soak.corrupt(observations, [name], url="unused")  # these corruptions touch the observations only
    assert check in failing(observations)


def test_the_run_history_keeps_earlier_lines():
    first = soak.with_history("# Soak test\n", "", "| 2026-01-01 00:00 UTC | `a` | 1 |")
    second = soak.with_history("# Soak test\n", first, "| 2026-01-02 00:00 UTC | `b` | 2 |")
    assert second.count("| 2026-01-01") == 1 and second.index("| 2026-01-01") < second.index("| 2026-01-02")


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert soak.percentile(values, 0.5) == 50.0 and soak.percentile(values, 0.99) == 99.0
    assert soak.percentile([3.0], 0.99) == 3.0


# --------------------------------------------------------------------------- --replicas: nginx, the kills

A, B = "127.0.0.1:7001", "127.0.0.1:7002"  # service-a (killed at 2.0 s, ready again at 4.0 s) and service-b


def proxied(record: Record, request_id: str, addresses: str, statuses: str, connects: str) -> tuple[Record, dict]:
    """A request and the line nginx logged for it (each attempt's instance, status and connect time)."""
    record = record._replace(request_id=request_id)
    return record, {"request_id": request_id, "method": record.method, "uri": record.path, "status": record.status,
                    "at": record.at, "upstream_addr": addresses, "upstream_status": statuses,
                    "upstream_connect_time": connects}


def with_proxy(o: Observations, record: Record, addresses: str, statuses: str, connects: str) -> None:
    record, entry = proxied(record, f"r{len(o.records)}", addresses, statuses, connects)
    o.records.append(record)
    o.proxy_log.append(entry)


def consistent_replicas() -> Observations:
    """The consistent run behind nginx: service-a killed and back, one read passed on, the publishing relay killed."""
    o = consistent()
    o.replicas = 2
    o.expect_broker_restart = False
    o.broker_restart = {}
    o.instances = {A: "service-a", B: "service-b"}
    o.instance_kills = [{"at": 2.0, "name": "service-a", "upstream": A, "back_at": 4.0}]
    o.relay_kills = [{"at": 6.0, "name": "relay-1", "held_turn": True, "mid_batch": True, "back_at": 8.0}]
    records, o.records = o.records, []
    for record, address in zip(records, (A, B, A), strict=True):  # at 1.0, 1.6 and 1.7 s: before the kill
        with_proxy(o, record, address, str(record.status), "0.000")
    # refused by the dead instance, so never received: passed on
    with_proxy(o, Record("get_room", "GET", f"/v1/rooms/{ROOM_1}", 200, 3.0, 2.5, None), f"{A}, {B}", "502, 200", "-, 0.000")
    # back in rotation after its restart
    with_proxy(o, Record("get_room", "GET", f"/v1/rooms/{ROOM_1}", 200, 2.0, 5.0, None), A, "200", "0.001")
    return o


REPLICA_CHECK_NAMES = ["nginx sent a request to a second instance only when safe",
                       "the killed instance served again after its restart",
                       "the relay holding the turn was killed and publishing went on"]


def test_a_consistent_run_behind_nginx_passes_every_check_including_the_replicas_ones():
    checks = soak.run_checks(consistent_replicas())
    assert [c.name for c in checks if not c.passed] == []
    assert [c.name for c in checks][-3:] == REPLICA_CHECK_NAMES
    assert "the broker restarted mid-load and delivery resumed" not in [c.name for c in checks]  # none planned


def replicas_corrupted(change) -> list[str]:
    observations = consistent_replicas()
    change(observations)
    return failing(observations)


def test_a_read_in_flight_on_the_killed_instance_may_be_sent_again_to_the_other():
    in_flight = Record("get_room", "GET", f"/v1/rooms/{ROOM_1}", 200, 60.0, 1.98, None)
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight, f"{A}, {B}", "502, 200", "0.000, 0.000")) == []


@pytest.mark.parametrize("method, kind", [("POST", "create_room"), ("PATCH", "patch_room")])
def test_a_post_or_patch_sent_again_after_an_instance_received_it_fails(method, kind):
    write = Record(kind, method, "/v1/rooms", 201, 60.0, 1.98, None)
    assert replicas_corrupted(lambda o: with_proxy(o, write, f"{A}, {B}", "502, 201", "0.000, 0.000")) == [
        "nginx sent a request to a second instance only when safe"]
    # Refused by the first (connect time "-"), it never reached it: moving on is safe.
    assert replicas_corrupted(lambda o: with_proxy(o, write, f"{A}, {B}", "502, 201", "-, 0.000")) == []


def test_a_post_in_two_instances_access_logs_fails():
    def twice(o: Observations) -> None:
        with_proxy(o, Record("create_room", "POST", "/v1/rooms", 201, 5.0, 3.0, None), B, "201", "0.000")
        o.served_by = {o.records[-1].request_id: ["service-a", "service-b"]}

    assert replicas_corrupted(twice) == ["nginx sent a request to a second instance only when safe"]


def test_no_request_passed_on_after_a_kill_fails():
    def none_passed_on(o: Observations) -> None:
        del o.records[3], o.proxy_log[3]

    assert replicas_corrupted(none_passed_on) == ["nginx sent a request to a second instance only when safe"]


def test_a_502_is_allowed_only_to_a_post_or_patch_in_flight_on_the_killed_instance():
    name = "zero 5xx answers outside the failure window"
    in_flight = Record("create_room", "POST", "/v1/rooms", 502, 40.0, 1.99, b"{}")  # 1.99 s to 2.03 s
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight, A, "502", "0.000")) == []
    # sent down a connection of the killed instance just after the kill, before nginx saw it close
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight._replace(at=2.5), A, "502", "0.000")) == []
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight._replace(method="GET", kind="get_room"), A, "502",
                                                   "0.000")) == [name]
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight, B, "502", "0.000")) == [name]  # the other instance
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight._replace(at=3.5), A, "502", "0.000")) == [name]
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight._replace(at=1.0, latency_ms=5.0), A, "502",
                                                   "0.000")) == [name]  # over before the kill
    assert replicas_corrupted(lambda o: with_proxy(o, in_flight._replace(status=500), A, "500", "0.000")) == [name]


def test_a_killed_instance_that_never_serves_again_fails():
    assert replicas_corrupted(lambda o: o.proxy_log[-1].update(upstream_addr=B)) == [
        "the killed instance served again after its restart"]


def test_a_relay_kill_that_missed_the_turn_or_stopped_publishing_fails():
    name = "the relay holding the turn was killed and publishing went on"
    assert replicas_corrupted(lambda o: o.relay_kills[0].update(held_turn=False)) == [name]
    assert replicas_corrupted(lambda o: o.relay_kills[0].update(at=20.0)) == [name]  # no new event after it


def test_a_delete_whose_answer_never_came_may_have_removed_its_room_and_left_its_event():
    def unknown_delete(o: Observations, *, client_knows_it_was_unanswered: bool = True) -> None:
        # A create acknowledged, then a delete of it answered 502 by nginx: the delete was applied.
        room = str(uuid.uuid4())
        o.writes.append(Write("room.created", room, 1.8))
        position = len(o.events) + 1
        for event_type in ("room.created", "room.deleted"):
            event_id = str(uuid.uuid4())
            o.events.append((event_id, position, event_type, room))
            o.deliveries.append(Delivery(event_id, position, event_type, False, body(event_id, position, event_type, room),
                                         12.0 + position))
            position += 1
        delete = Record("delete_room", "DELETE", f"/v1/rooms/{room}", 502, 30.0, 1.99, b"{}")
        with_proxy(o, delete, A, "502", "0.000")
        if client_knows_it_was_unanswered:
            o.unanswered_writes.append(o.records[-1])

    # Only the 502 itself is out of bounds: a DELETE is no POST or PATCH, so nginx should have sent it on.
    assert replicas_corrupted(unknown_delete) == ["zero 5xx answers outside the failure window"]
    assert replicas_corrupted(lambda o: unknown_delete(o, client_knows_it_was_unanswered=False)) == [
        "every acknowledged create is stored", "the outbox has one event per acknowledged write",
        "zero 5xx answers outside the failure window"]


def test_a_put_nginx_sent_again_after_an_instance_received_it_counts_as_a_write_of_unknown_outcome():
    def resent_put(o: Observations) -> None:
        # The first attempt was applied before the instance died; the second met the new ETag: 412.
        put = Record("put_item", "PUT", "/v1/items/1", 412, 60.0, 1.98, None)
        with_proxy(o, put, f"{A}, {B}", "502, 412", "0.000, 0.000")
        event_id, position = str(uuid.uuid4()), len(o.events) + 1
        o.events.append((event_id, position, "item.updated", "1"))
        o.deliveries.append(Delivery(event_id, position, "item.updated", False,
                                     body(event_id, position, "item.updated", "1"), 12.0 + position))

    assert replicas_corrupted(resent_put) == ["the outbox has one event per acknowledged write"]
    assert replicas_corrupted(lambda o: (resent_put(o), o.unanswered_writes.extend(soak.resent_writes(o)))) == []
