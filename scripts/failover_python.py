#!/usr/bin/env python3
"""The official Python producer (rocketmq-python-client 5.1.2, default configuration) under a
failover, for scripts/failover-bench.sh with CLIENT=python.

THREADS threads send 1 KiB messages through ENDPOINT (the nameserver) for SECONDS; every send
is synchronous, as in the SDK's examples. A SimpleConsumer group is registered before the first
send, so afterwards it can read back everything from the start: each acknowledged message must
arrive (none lost), and the ones that arrive more than once are counted (duplicates, which
at-least-once delivery allows after a retried send).

Writes, into OUT (a directory):
  gaps.txt     "from to" (ms since epoch): every gap of more than 20 ms between two successful
               sends, of any thread (the format of `raftmq bench --gaps`)
  result.json  sent, failed (with the errors), lost, duplicates, the longest send
Usage: failover_python.py ENDPOINT TOPIC SECONDS THREADS OUT
"""
import json
import sys
import threading
import time
from collections import Counter

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer)


def now_ms():
    return int(time.time() * 1000)


def main():
    endpoint, topic, seconds, threads, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(
        sys.argv[4]), sys.argv[5]
    # The defaults a user gets: only the endpoint and credentials are given.
    config = ClientConfiguration(endpoint, Credentials())
    group = f"failover-check-{now_ms()}"
    consumer = SimpleConsumer(config, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    producer = Producer(config, (topic,))
    producer.startup()

    lock = threading.Lock()
    state = {"last_ok": now_ms(), "gaps": [], "acked": [], "failed": Counter(), "longest": 0}
    stop_at = time.time() + seconds
    body = b"x" * 1024

    def sender(t):
        n = 0
        while time.time() < stop_at:
            key = f"k-{t}-{n}"
            n += 1
            m = Message()
            m.topic = topic
            m.body = body
            m.keys = key
            start = now_ms()
            try:
                producer.send(m)
                ok = True
            except Exception as e:  # noqa: BLE001 - every failure is counted, by its type
                ok = False
                err = f"{type(e).__name__}: {str(e)[:120]}"
            done = now_ms()
            with lock:
                state["longest"] = max(state["longest"], done - start)
                if ok:
                    prev = state["last_ok"]
                    if done > prev + 20:
                        state["gaps"].append((prev, done))
                    state["last_ok"] = max(prev, done)
                    state["acked"].append(key)
                    if len(state["acked"]) == 1:
                        open(f"{out}/ready", "w").close()
                else:
                    state["failed"][err] += 1

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    producer.shutdown()

    # Read everything back, until nothing has come for longer than a receive's invisibility
    # (a message handed out to a receive that then failed here comes back after it), and
    # drain to the end so second copies are counted too. A redelivery (delivery attempt > 1)
    # is not a duplicate send; ack and receive failures are reported apart.
    acked = set(state["acked"])
    seen = Counter()
    redelivered = receive_errors = ack_errors = 0
    idle_since = time.time()
    while time.time() - idle_since < 25:
        try:
            msgs = consumer.receive(32, 10)
        except Exception:  # noqa: BLE001 - counted; the messages come back after 10 s
            receive_errors += 1
            msgs = []
        if msgs:
            idle_since = time.time()
        for m in msgs:
            if (m.delivery_attempt or 1) > 1:
                redelivered += 1
            else:
                for k in m.keys:
                    seen[k] += 1
            try:
                consumer.ack(m)
            except Exception:  # noqa: BLE001 - counted; the message comes again
                ack_errors += 1
    consumer.shutdown()
    lost = sorted(acked - set(seen))
    result = {
        "sent": len(state["acked"]),
        "failed": sum(state["failed"].values()),
        "errors": dict(state["failed"]),
        "lost": len(lost),
        "lost_keys": lost[:20],
        "duplicates": sum(c - 1 for c in seen.values() if c > 1),
        "redelivered": redelivered,
        "receive_errors": receive_errors,
        "ack_errors": ack_errors,
        "longest_send_ms": state["longest"],
    }
    with open(f"{out}/gaps.txt", "w") as f:
        for a, b in state["gaps"]:
            f.write(f"{a} {b}\n")
    with open(f"{out}/result.json", "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
