#!/usr/bin/env python3
"""RaftMQ interop scenarios driven through the official Python SDK (rocketmq-python-client 5.1.2).

Each subcommand is one scenario; exit status 0 means it passed. The Rust test
`tests/interop.rs` starts `raftmq dev` and runs these.

  send-receive  N messages with keys, tag and properties; a SimpleConsumer gets every one intact
  push          N messages; a PushConsumer gets every one
  redelivery    an unacked message comes back with delivery attempt 2, a stale receipt is refused,
                and after the group's max attempts (set to 2 beforehand) it is in %DLQ%<group>
  produce       send N messages and write their ids to a file
  consume       receive and ack exactly the ids in a file (nothing missing, nothing unknown)
  expect-empty  a receive finds nothing (acked messages do not come back)
  produce-for   send one at a time for --seconds, recording acked and attempted ids
  consume-at-least  every acked id arrives at least once; duplicates are counted
  backoff       a PushConsumer fails each message twice: it comes back after the group's
                customized backoff (set to 2 s, 4 s beforehand), announced in Settings
  transaction   N transactional messages: a quarter committed and a quarter rolled back by the
                producer, the rest left undecided for the broker's check-back, whose checker
                commits or rolls back; committed ones arrive exactly once, rolled-back ones never,
                a repeated commit is accepted and a contrary decision refused
  sql           SQL92 subscriptions: exactly the matching messages; a malformed expression refused
  priority      a backlog of priorities is received highest first (the topic is made beforehand)
  namespace     the same names in two namespaces and none are apart; push in a namespace too
  delay         N scheduled messages (delivery time in seconds, and in ms as the SDK documents
                it); every tenth recalled: none arrives early, each with its delivery time,
                recalled ones never, and a delivered one cannot be recalled
"""
import argparse
import os
import random
import sys
import threading
import time
import uuid

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression,
                      Message, MessageListener, Producer, PushConsumer, SimpleConsumer)
from rocketmq.v5.producer.producer import TransactionChecker
from rocketmq.grpc_protocol import Code, FilterType, TransactionResolution


def log(*a):
    print(*a, flush=True)


def config(endpoint, namespace=""):
    return ClientConfiguration(endpoint, Credentials(), namespace=namespace, request_timeout=5)


def make_message(topic, run, i):
    m = Message()
    m.topic = topic
    m.body = f"body-{run}-{i}-".encode() + bytes(range(256)) * 2
    m.tag = "TagA" if i % 2 == 0 else "TagB"
    m.keys = f"key-{run}-{i}"
    m.add_property("index", str(i))
    m.add_property("run", run)
    return m


def produce(endpoint, topic, count, run, namespace=""):
    p = Producer(config(endpoint, namespace), (topic,))
    p.startup()
    ids = {}
    try:
        futures = [(i, p.send_async(make_message(topic, run, i))) for i in range(count)]
        for i, f in futures:
            r = f.result(timeout=30)
            ids[r.message_id] = i
    finally:
        p.shutdown()
    log(f"sent {len(ids)} messages")
    return ids


def check_message(m, run, i):
    problems = []
    expected = f"body-{run}-{i}-".encode() + bytes(range(256)) * 2
    if m.body != expected:
        problems.append("body")
    if m.tag != ("TagA" if i % 2 == 0 else "TagB"):
        problems.append(f"tag {m.tag}")
    if f"key-{run}-{i}" not in m.keys:
        problems.append(f"keys {m.keys}")
    if m.properties.get("index") != str(i) or m.properties.get("run") != run:
        problems.append(f"properties {m.properties}")
    if m.corrupted:
        problems.append("body digest mismatch")
    return problems


def receive_all(endpoint, topic, group, expected, run, ack=True, deadline_s=90, filter=None,
                namespace=""):
    """Receives until every id in `expected` (id -> index) arrived; returns (received, problems)."""
    c = SimpleConsumer(config(endpoint, namespace), group, {topic: filter or FilterExpression("*")},
                       await_duration=5)
    c.startup()
    got = {}
    problems = []
    start = time.time()
    try:
        while len(got) < len(expected) and time.time() - start < deadline_s:
            for m in c.receive(32, 30):
                if m.message_id not in expected:
                    problems.append(f"unexpected message {m.message_id}")
                    continue
                if m.message_id in got:
                    problems.append(f"duplicate delivery of {m.message_id}")
                i = expected[m.message_id]
                if run is not None:
                    problems += [f"{m.message_id}: {p}" for p in check_message(m, run, i)]
                if m.namespace != namespace or m.topic != topic:
                    problems.append(f"{m.message_id}: from {m.namespace!r}/{m.topic}")
                if m.delivery_attempt != 1:
                    problems.append(f"{m.message_id}: delivery attempt {m.delivery_attempt}")
                got[m.message_id] = m
                if ack:
                    c.ack(m)
    finally:
        c.shutdown()
    missing = set(expected) - set(got)
    if missing:
        problems.append(f"{len(missing)} messages never received, e.g. {sorted(missing)[:3]}")
    log(f"received {len(got)} of {len(expected)} in {time.time() - start:.1f}s")
    return got, problems


def finish(problems):
    for p in problems[:20]:
        log("PROBLEM:", p)
    log("PASS" if not problems else f"FAIL ({len(problems)} problems)")
    os._exit(0 if not problems else 1)


def cmd_send_receive(a):
    run = uuid.uuid4().hex[:8]
    ids = produce(a.endpoint, a.topic, a.count, run)
    _, problems = receive_all(a.endpoint, a.topic, a.group, ids, run)
    finish(problems)


class Collector(MessageListener):
    def __init__(self):
        self.ids = {}
        self.lock = threading.Lock()

    def consume(self, message):
        with self.lock:
            self.ids[message.message_id] = self.ids.get(message.message_id, 0) + 1
        return ConsumeResult.SUCCESS


def cmd_push(a):
    run = uuid.uuid4().hex[:8]
    collector = Collector()
    consumer = PushConsumer(config(a.endpoint), a.group, collector, {a.topic: FilterExpression("*")})
    consumer.startup()
    try:
        ids = produce(a.endpoint, a.topic, a.count, run)
        start = time.time()
        while time.time() - start < 90:
            with collector.lock:
                if set(ids) <= set(collector.ids):
                    break
            time.sleep(0.2)
        time.sleep(1)
    finally:
        consumer.shutdown()
    problems = []
    missing = set(ids) - set(collector.ids)
    if missing:
        problems.append(f"{len(missing)} of {len(ids)} never consumed")
    unknown = set(collector.ids) - set(ids)
    if unknown:
        problems.append(f"{len(unknown)} unknown messages consumed")
    dups = sum(1 for n in collector.ids.values() if n > 1)
    log(f"push consumer got {len(collector.ids)} distinct messages, {dups} delivered more than once")
    finish(problems)


class Failing(MessageListener):
    """Fails the first two deliveries of each message; records when each attempt arrived."""

    def __init__(self):
        self.seen = {}  # message id -> {attempt: time}
        self.lock = threading.Lock()

    def consume(self, message):
        with self.lock:
            self.seen.setdefault(message.message_id, {})[message.delivery_attempt] = time.time()
        return ConsumeResult.SUCCESS if message.delivery_attempt >= 3 else ConsumeResult.FAILURE


def cmd_backoff(a):
    run = uuid.uuid4().hex[:8]
    listener = Failing()
    consumer = PushConsumer(config(a.endpoint), a.group, listener, {a.topic: FilterExpression("*")})
    consumer.startup()
    problems = []
    try:
        ids = produce(a.endpoint, a.topic, a.count, run)
        start = time.time()
        while time.time() - start < 60:
            with listener.lock:
                if all(3 in listener.seen.get(i, {}) for i in ids):
                    break
            time.sleep(0.2)
        time.sleep(1)
    finally:
        consumer.shutdown()
    # The group's policy: 2 s after the first failure, 4 s after the second (a little early
    # for the client's and the broker's clocks; at most 3 s late on this loaded machine).
    for i in ids:
        t = listener.seen.get(i, {})
        if not all(n in t for n in (1, 2, 3)):
            problems.append(f"{i}: attempts seen {sorted(t)}")
            continue
        for n, want in ((2, 2.0), (3, 4.0)):
            gap = t[n] - t[n - 1]
            if not want - 0.3 <= gap <= want + 3.0:
                problems.append(f"{i}: attempt {n} came {gap:.2f} s after attempt {n - 1}, want {want} s")
    log(f"backoff: {len(ids)} messages each failed twice and redelivered after the group's backoff")
    finish(problems)


def cmd_redelivery(a):
    run = uuid.uuid4().hex[:8]
    ids = produce(a.endpoint, a.topic, 1, run)
    (mid,) = ids
    problems = []
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=5)
    c.startup()
    try:
        first = [m for m in c.receive(16, 2) if m.message_id == mid]
        if len(first) != 1 or first[0].delivery_attempt != 1:
            problems.append(f"first receive: {[(m.message_id, m.delivery_attempt) for m in first]}")
        time.sleep(2.5)  # invisible duration passes without an ack
        second = [m for m in c.receive(16, 2) if m.message_id == mid]
        if len(second) != 1 or second[0].delivery_attempt != 2:
            problems.append(f"redelivery: {[(m.message_id, m.delivery_attempt) for m in second]}")
        elif first and second[0].body != first[0].body:
            problems.append("redelivered body differs")
        if first:
            try:
                c.ack(first[0])
                problems.append("ack with the stale first receipt was accepted")
            except Exception as e:  # INVALID_RECEIPT_HANDLE
                log(f"stale receipt refused as expected: {e}")
        time.sleep(2.5)
        third = [m for m in c.receive(16, 2) if m.message_id == mid]
        if third:
            problems.append(f"delivered again after max attempts: attempt {third[0].delivery_attempt}")
    finally:
        c.shutdown()
    dlq = f"%DLQ%{a.group}"
    got, p = receive_all(a.endpoint, dlq, a.group + "-dlq-reader", ids, None)
    problems += [f"dead-letter topic: {x}" for x in p]
    if mid in got and got[mid].body != f"body-{run}-0-".encode() + bytes(range(256)) * 2:
        problems.append("dead letter body differs")
    finish(problems)


def cmd_produce(a):
    ids = produce(a.endpoint, a.topic, a.count, a.run)
    with open(a.ids, "w") as f:
        for mid, i in ids.items():
            f.write(f"{mid} {i}\n")
    finish([])


def cmd_consume(a):
    expected = {}
    with open(a.ids) as f:
        for line in f:
            mid, i = line.split()
            expected[mid] = int(i)
    _, problems = receive_all(a.endpoint, a.topic, a.group, expected, a.run)
    finish(problems)


def cmd_produce_for(a):
    """Sends one message at a time for --seconds; writes acked ids to --ids and every attempted
    id to --ids + '.attempted'; prints how many sends failed after the SDK's own retries."""
    p = Producer(config(a.endpoint), (a.topic,))
    p.startup()
    acked, attempted, failed = [], [], 0
    start = time.time()
    i = 0
    try:
        while time.time() - start < a.seconds:
            m = make_message(a.topic, a.run, i)
            try:
                r = p.send(m)
                acked.append((r.message_id, i))
            except Exception as e:
                failed += 1
                log(f"send {i} failed after retries: {e!r}"[:300])
            attempted.append((m.message_id, i))
            i += 1
    finally:
        p.shutdown()
    with open(a.ids, "w") as f:
        f.writelines(f"{mid} {i}\n" for mid, i in acked)
    with open(a.ids + ".attempted", "w") as f:
        f.writelines(f"{mid} {i}\n" for mid, i in attempted)
    log(f"produced for {a.seconds}s: {len(acked)} acked, {failed} failed")
    finish([f"{failed} sends failed"] if failed and a.no_failures else [])


def cmd_consume_at_least(a):
    """Every acked id (--ids) must be received at least once; ids outside the attempted set are
    unexpected; duplicates and recovered (failed but stored) sends are counted, not errors."""
    def load(path):
        d = {}
        with open(path) as f:
            for line in f:
                mid, i = line.split()
                d[mid] = int(i)
        return d

    acked = load(a.ids)
    attempted = load(a.ids + ".attempted")
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=3)
    c.startup()
    counts = {}
    problems = []
    start = time.time()
    quiet_since = time.time()
    last_report = time.time()
    try:
        while time.time() - start < 180:
            t0 = time.time()
            try:
                got = c.receive(32, 60)
            except Exception as e:
                log(f"receive failed after {time.time() - t0:.1f}s: {e!r}"[:300])
                got = []
            if time.time() - last_report > 10:
                missing = len(set(acked) - set(counts))
                log(f"t={time.time() - start:.0f}s: {len(counts)} distinct received, {missing} acked still missing")
                last_report = time.time()
            if got:
                quiet_since = time.time()
            for m in got:
                counts[m.message_id] = counts.get(m.message_id, 0) + 1
                if m.message_id not in attempted:
                    problems.append(f"unexpected message {m.message_id}")
                elif m.body != f"body-{a.run}-{attempted[m.message_id]}-".encode() + bytes(range(256)) * 2:
                    problems.append(f"{m.message_id}: body differs")
                c.ack(m)
            if set(acked) <= set(counts) and time.time() - quiet_since > 5:
                break
    finally:
        c.shutdown()
    lost = set(acked) - set(counts)
    if lost:
        problems.append(f"{len(lost)} acknowledged messages never received, e.g. {sorted(lost)[:3]}")
    dups = sum(n - 1 for n in counts.values())
    recovered = len(set(counts) - set(acked))
    log(f"consumed {len(counts)} distinct ({len(acked)} acked sends): {dups} duplicate deliveries, "
        f"{recovered} failed-but-stored sends")
    finish(problems)


def cmd_expect_empty(a):
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=3)
    c.startup()
    problems = []
    try:
        for _ in range(2):
            for m in c.receive(32, 30):
                problems.append(f"received {m.message_id} (attempt {m.delivery_attempt}) after it was acked")
    finally:
        c.shutdown()
    finish(problems)


def cmd_delay(a):
    delay_s = a.delay_seconds
    p = Producer(config(a.endpoint), (a.topic,))
    p.startup()
    due = {}          # message id -> due time (ms)
    recalled = set()
    unsure = set()    # recalls whose outcome is unknown (a fault): may or may not arrive
    problems = []
    last_handle = None
    try:
        for i in range(a.count):
            m = make_message(a.topic, "delay", i)
            due_s = int(time.time()) + delay_s
            # The SDK puts the value in Timestamp.seconds as given; its docs call it ms.
            m.delivery_timestamp = due_s * 1000 if i % 2 else due_s
            try:
                r = p.send(m)
            except Exception as e:
                log(f"send {i} failed: {e!r}"[:200])
                continue
            due[r.message_id] = due_s * 1000
            if not r.recall_handle:
                problems.append(f"{r.message_id}: no recall handle")
            elif i % 10 == 0:
                try:
                    mid = p.recall_message(a.topic, r.recall_handle)
                except Exception as e:
                    log(f"recall of {r.message_id} failed: {e!r}"[:200])
                    unsure.add(r.message_id)
                    continue
                if mid != r.message_id:
                    problems.append(f"recall answered {mid} for {r.message_id}")
                recalled.add(r.message_id)
                last_handle = r.recall_handle
        # A second recall of the same message is refused.
        if last_handle:
            try:
                p.recall_message(a.topic, last_handle)
                problems.append("a second recall succeeded")
            except Exception as e:
                log(f"second recall refused: {e!r}"[:200])
        log(f"scheduled {len(due)} messages {delay_s}s ahead, recalled {len(recalled)}")

        c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=2)
        c.startup()
        got = {}
        lateness = []
        start = time.time()
        delivered_handle = None
        try:
            want = set(due) - recalled - unsure
            while time.time() - start < 60 + delay_s:
                if set(got) >= want and time.time() - max(due.values()) / 1000 > 3:
                    break
                try:
                    batch = c.receive(32, 30)
                except Exception as e:
                    log(f"receive failed: {e!r}"[:200])
                    time.sleep(0.2)
                    continue
                for m in batch:
                    now_ms = time.time() * 1000
                    mid = m.message_id
                    if mid in recalled:
                        problems.append(f"recalled message {mid} was delivered")
                    if mid not in due:
                        problems.append(f"unexpected message {mid}")
                        continue
                    if now_ms < due[mid]:
                        problems.append(f"{mid} delivered {due[mid] - now_ms:.0f} ms early")
                    if m.delivery_timestamp != due[mid]:
                        problems.append(f"{mid}: delivery timestamp {m.delivery_timestamp}, sent {due[mid]}")
                    if mid in got:
                        problems.append(f"duplicate delivery of {mid}")
                    got[mid] = now_ms
                    lateness.append(now_ms - due[mid])
                    try:
                        c.ack(m)
                    except Exception as e:
                        log(f"ack failed: {e!r}"[:200])
        finally:
            c.shutdown()
        missing = want - set(got)
        if missing:
            problems.append(f"{len(missing)} scheduled messages never delivered, e.g. {sorted(missing)[:3]}")
        if lateness:
            lateness.sort()
            log(f"delivered {len(got)}: lateness p50 {lateness[len(lateness) // 2]:.0f} ms, "
                f"p99 {lateness[len(lateness) * 99 // 100]:.0f} ms, "
                f"max {lateness[-1]:.0f} ms (against second-granular due times)")
        # A delivered message cannot be recalled any more. Wait for its delivery rather than
        # for its time: a timer fires moments after its time, later on a loaded machine or
        # while a leader is elected (a fixed 2.5 s wait failed a CI run with a killed node).
        m = make_message(a.topic, "delay", a.count)
        m.delivery_timestamp = int(time.time()) + 1
        r = p.send(m)
        c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=5)
        c.startup()
        seen = False
        try:
            start = time.time()
            while not seen and time.time() - start < 60:
                for x in c.receive(16, 30):
                    seen = seen or x.message_id == r.message_id
                    try:
                        c.ack(x)
                    except Exception as e:
                        log(f"ack failed: {e!r}"[:200])
        finally:
            c.shutdown()
        if not seen:
            problems.append("the last scheduled message never came")
        try:
            p.recall_message(a.topic, r.recall_handle)
            problems.append("recalling a delivered message succeeded")
        except Exception as e:
            log(f"late recall refused: {e!r}"[:200])
    finally:
        p.shutdown()
    finish(problems)


class DecidingChecker(TransactionChecker):
    """Answers a check-back from the message's `decide` property, and records each check."""

    def __init__(self):
        self.checked = {}
        self.lock = threading.Lock()

    def check(self, message):
        with self.lock:
            self.checked[message.message_id] = self.checked.get(message.message_id, 0) + 1
        if message.properties.get("decide") == "commit":
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def cmd_transaction(a):
    checker = DecidingChecker()
    p = Producer(config(a.endpoint), (a.topic,), checker)
    p.startup()
    # i % 4: 0 the producer commits, 1 it rolls back, 2 and 3 it leaves to the check-back,
    # whose checker commits 2 and rolls back 3.
    fate = {}
    problems = []
    try:
        for i in range(a.count):
            m = make_message(a.topic, "tx", i)
            m.add_property("decide", "commit" if i % 4 in (0, 2) else "rollback")
            tx = p.begin_transaction()
            r = p.send(m, tx)
            if not r.transaction_id:
                problems.append(f"{r.message_id}: no transaction id")
            fate[r.message_id] = (i, i % 4 in (0, 2))
            if i % 4 == 0:
                tx.commit()
                if i == 0:
                    # A repeat of the same decision is accepted; a contrary one is refused.
                    tx.commit()
                    try:
                        tx.rollback()
                        problems.append("a rollback after a commit succeeded")
                    except Exception as e:
                        log(f"rollback after commit refused: {e!r}"[:200])
            elif i % 4 == 1:
                tx.rollback()
        log(f"sent {len(fate)} half messages")
        committed = {mid: i for mid, (i, c) in fate.items() if c}
        c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=2)
        c.startup()
        got = set()
        start = time.time()
        try:
            # Undecided ones wait for their first check-back (6 s by default), then a few
            # seconds more to see that no rolled-back one arrives.
            while time.time() - start < 60:
                if got >= set(committed) and time.time() - start > 10:
                    break
                for m in c.receive(32, 30):
                    mid = m.message_id
                    if mid not in fate:
                        problems.append(f"unexpected message {mid}")
                        continue
                    i, commit = fate[mid]
                    if not commit:
                        problems.append(f"rolled-back message {mid} (#{i}) was delivered")
                    if mid in got:
                        problems.append(f"duplicate delivery of {mid}")
                    problems += [f"{mid}: {q}" for q in check_message(m, "tx", i)]
                    got.add(mid)
                    c.ack(m)
        finally:
            c.shutdown()
        missing = set(committed) - got
        if missing:
            problems.append(f"{len(missing)} committed messages never delivered, e.g. {sorted(missing)[:3]}")
        undecided = {mid for mid, (i, _) in fate.items() if i % 4 in (2, 3)}
        unchecked = undecided - set(checker.checked)
        if unchecked:
            problems.append(f"{len(unchecked)} undecided transactions were never checked back")
        decided_checked = set(checker.checked) - undecided
        if decided_checked:
            problems.append(f"{len(decided_checked)} transactions decided by the producer were checked back")
        log(f"delivered {len(got)} of {len(committed)} committed; "
            f"{len(checker.checked)} check-backs answered in {time.time() - start:.1f}s")
    finally:
        p.shutdown()
    finish(problems)


def cmd_sql(a):
    """SQL92 subscriptions (issue 16): a consumer gets exactly the messages its expression
    matches (user properties compared as numbers, TAGS, KEYS), nothing more after them; a
    malformed expression is refused with ILLEGAL_FILTER_EXPRESSION."""
    run = uuid.uuid4().hex[:8]
    ids = produce(a.endpoint, a.topic, a.count, run)
    half = a.count // 2
    expr = f"run = '{run}' AND ((index >= {half} AND TAGS = 'TagA') OR KEYS = 'key-{run}-1')"
    expected = {mid: i for mid, i in ids.items() if (i >= half and i % 2 == 0) or i == 1}
    sql = FilterExpression(expr, FilterType.SQL)
    _, problems = receive_all(a.endpoint, a.topic, a.group, expected, run, filter=sql)
    # Nothing else comes: the rest does not match.
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: sql}, await_duration=3)
    c.startup()
    try:
        for _ in range(2):
            for m in c.receive(32, 30):
                problems.append(f"{m.message_id} (index {ids.get(m.message_id)}) does not match")
                c.ack(m)
    finally:
        c.shutdown()
    # A malformed expression.
    bad = SimpleConsumer(config(a.endpoint), a.group + "Bad",
                         {a.topic: FilterExpression("index > AND", FilterType.SQL)}, await_duration=3)
    bad.startup()
    try:
        bad.receive(1, 30)
        problems.append("a malformed SQL92 expression was accepted")
    except Exception as e:
        code = getattr(e, "code", None)
        log(f"malformed expression refused: {e}")
        if code != Code.ILLEGAL_FILTER_EXPRESSION:
            problems.append(f"a malformed expression gave {code!r}: {e}")
    finally:
        bad.shutdown()
    finish(problems)


def cmd_namespace(a):
    """Namespaces (issue 16): the same topic and group names in namespaces A, B and none are
    three topics and three groups. Each consumer gets exactly its namespace's messages (any
    other is "unexpected"), named with its namespace and topic; a push consumer in A too; an
    illegal namespace is refused."""
    run = uuid.uuid4().hex[:8]
    spaces = ["nsA", "nsB", ""]
    sent = {ns: produce(a.endpoint, a.topic, a.count, run, namespace=ns) for ns in spaces}
    problems = []
    for ns in spaces:
        _, p = receive_all(a.endpoint, a.topic, a.group, sent[ns], run, namespace=ns)
        problems += [f"namespace {ns!r}: {x}" for x in p]
        # Nothing more: every other namespace's messages stay out.
        c = SimpleConsumer(config(a.endpoint, ns), a.group, {a.topic: FilterExpression("*")},
                           await_duration=2)
        c.startup()
        try:
            for m in c.receive(32, 30):
                problems.append(f"namespace {ns!r} got {m.message_id} from {m.namespace!r}")
        finally:
            c.shutdown()
    # A push consumer (QueryAssignment, Settings) in namespace A, a new group: A's messages.
    collector = Collector()
    push = PushConsumer(config(a.endpoint, "nsA"), a.group + "Push", collector,
                        {a.topic: FilterExpression("*")})
    push.startup()
    try:
        start = time.time()
        while time.time() - start < 60:
            with collector.lock:
                if set(sent["nsA"]) <= set(collector.ids):
                    break
            time.sleep(0.2)
        time.sleep(1)
    finally:
        push.shutdown()
    if set(collector.ids) != set(sent["nsA"]):
        problems.append(f"push consumer in nsA got {len(collector.ids)} messages, "
                        f"{len(set(collector.ids) & set(sent['nsA']))} of nsA's {len(sent['nsA'])}")
    try:
        produce(a.endpoint, a.topic, 1, run, namespace="bad%ns")
        problems.append("a send in namespace 'bad%ns' was accepted")
    except Exception as e:
        log(f"illegal namespace refused: {e}")
    finish(problems)


def cmd_priority(a):
    """Priority messages (issue 16): a backlog of priorities 0-9 (and plain messages, which
    rank as 0) on a priority topic (created beforehand, 10 queues) is received highest
    priority first, each message with the priority it was sent with; a priority message to a
    topic without priorities is refused."""
    rng = random.Random(16)
    prios = [None if i % 10 == 5 else rng.randrange(10) for i in range(a.count)]
    p = Producer(config(a.endpoint), (a.topic,))
    p.startup()
    sent = {}
    try:
        for i, pr in enumerate(prios):
            m = Message()
            m.topic = a.topic
            m.body = f"priority-{i}".encode()
            if pr is not None:
                m.priority = pr
            sent[p.send(m).message_id] = pr
    finally:
        p.shutdown()
    problems = []
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=5)
    c.startup()
    order = []
    try:
        start = time.time()
        while len(order) < len(sent) and time.time() - start < 60:
            for m in c.receive(4, 30):
                if m.message_id not in sent:
                    problems.append(f"unexpected message {m.message_id}")
                    continue
                want = sent[m.message_id]
                if want is not None and m.priority != want:
                    problems.append(f"{m.message_id}: priority {m.priority}, sent {want}")
                order.append(want or 0)
                c.ack(m)
    finally:
        c.shutdown()
    if len(order) != len(sent):
        problems.append(f"received {len(order)} of {len(sent)}")
    if order != sorted(order, reverse=True):
        problems.append(f"not highest priority first: {order}")
    log(f"received {len(order)} by priority: {order[:12]}...{order[-12:]}")
    # A topic without priorities refuses them.
    plain = Producer(config(a.endpoint), (a.topic + "Plain",))
    plain.startup()
    try:
        m = Message()
        m.topic = a.topic + "Plain"
        m.body = b"x"
        m.priority = 3
        plain.send(m)
        problems.append("a priority message to a mixed topic was accepted")
    except Exception as e:
        log(f"priority message to a plain topic refused: {e}")
    finally:
        plain.shutdown()
    finish(problems)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["send-receive", "push", "redelivery", "produce", "consume", "expect-empty",
                                        "produce-for", "consume-at-least", "delay", "backoff",
                                        "transaction", "sql", "namespace", "priority"])
    p.add_argument("--endpoint", default="127.0.0.1:8081")
    p.add_argument("--topic", default="InteropTopic")
    p.add_argument("--group", default="InteropGroup")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--ids", default="ids.txt")
    p.add_argument("--run", default="restart")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--no-failures", action="store_true", help="produce-for: fail if any send failed")
    p.add_argument("--delay-seconds", type=int, default=4, help="delay: how far ahead messages are due")
    a = p.parse_args()
    {"send-receive": cmd_send_receive, "push": cmd_push, "redelivery": cmd_redelivery,
     "produce": cmd_produce, "consume": cmd_consume, "expect-empty": cmd_expect_empty,
     "produce-for": cmd_produce_for, "consume-at-least": cmd_consume_at_least,
     "delay": cmd_delay, "backoff": cmd_backoff,
     "transaction": cmd_transaction, "sql": cmd_sql,
     "namespace": cmd_namespace, "priority": cmd_priority}[a.scenario](a)


if __name__ == "__main__":
    main()
