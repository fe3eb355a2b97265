"""The jepsen suite's workload on the official Apache RocketMQ Python client (5.1.2).

Run by `jepsen` inside the clients' network namespace, one process per role; each writes the
operations it performed as JSON lines in the shape of `checker::messages::Op` (times in µs
since the run's start, given as --t0, ns since the epoch), which the runner merges into the
run's history so the same checkers judge them.

  producer: sends `py<k>-<n>` bodies one at a time until --seconds have passed;
  consumer: receives and acks (skipping ~15% of acks while the chaos lasts) until --stop
            exists and every send the producers acknowledged (their files) has arrived, or
            --drain seconds after --stop.
"""
import argparse
import glob
import json
import os
import random
import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer, SimpleConsumer

INVISIBLE_S = 5


def now_us(t0):
    return max(0, (time.time_ns() - t0) // 1000)


def config(endpoint):
    return ClientConfiguration(endpoint, Credentials(), namespace="", request_timeout=3)


def log_error(e):
    print(f"send failed: {e!r}"[:300], flush=True)


def producer(a, out):
    p = Producer(config(a.endpoint), (a.topic,))
    p.startup()
    n = 0
    start = time.time()
    try:
        while time.time() - start < a.seconds:
            name = f"py{a.index}-{n}"
            n += 1
            body = (name + ":" + "x" * random.randrange(48)).encode()
            m = Message()
            m.topic = a.topic
            m.body = body
            m.keys = name
            invoked = now_us(a.t0)
            try:
                r = p.send(m)
                result, mid = "ok", r.message_id
            except Exception as e:  # noqa: BLE001 - every failure is recorded, none is fatal
                # Never "fail": the SDK resends after errors, and an earlier attempt may have
                # stored the message even when the last one was refused.
                result = "info"
                log_error(e)
                mid = getattr(m, "message_id", None) or name
            op = {"f": "send", "id": mid, "body": list(body), "group": None, "invoked": invoked,
                  "completed": now_us(a.t0), "result": result, "pos": None,
                  # The SDK resends after timeouts with the same id: copies are allowed.
                  "may_repeat": True,
                  # Not the run's plain topic: the filtered group there is owed none of these.
                  "topic": a.topic}
            out.write(json.dumps(op) + "\n")
            out.flush()
            time.sleep(random.uniform(0.005, 0.04))
    finally:
        p.shutdown()


def acked_sends(pattern):
    ids = set()
    for path in glob.glob(pattern):
        with open(path) as f:
            for line in f:
                try:
                    op = json.loads(line)
                except ValueError:
                    continue
                if op.get("result") == "ok":
                    ids.add(op["id"])
    return ids


def consumer(a, out):
    c = SimpleConsumer(config(a.endpoint), a.group, {a.topic: FilterExpression("*")}, await_duration=1)
    c.startup()
    got = set()
    stop_seen = None
    quiet_since = time.time()
    started = time.time()
    try:
        # Bounded even if the runner never says stop (it died).
        while time.time() - started < a.seconds + a.drain + 120:
            if stop_seen is None and os.path.exists(a.stop):
                stop_seen = time.time()
            if stop_seen is not None:
                done = acked_sends(a.sends) <= got and time.time() - quiet_since > 3
                if done or time.time() - stop_seen > a.drain:
                    break
            invoked = now_us(a.t0)
            try:
                msgs = c.receive(32, INVISIBLE_S)
            except Exception:  # noqa: BLE001 - a failed receive changes nothing
                time.sleep(0.05)
                continue
            completed = now_us(a.t0)
            if msgs:
                quiet_since = time.time()
            out.write(json.dumps({
                "f": "receive", "consumer": 1000 + a.index, "fifo": False, "invoked": invoked,
                "completed": completed, "invisible_us": INVISIBLE_S * 1_000_000,
                "msgs": [{"id": m.message_id, "body": list(m.body), "attempt": m.delivery_attempt,
                          "pos": None} for m in msgs]}) + "\n")
            for m in msgs:
                got.add(m.message_id)
                if stop_seen is None and random.random() < 0.15:
                    continue
                invoked = now_us(a.t0)
                try:
                    c.ack(m)
                    result = "ok"
                except Exception:  # noqa: BLE001
                    result = "info"
                out.write(json.dumps({"f": "ack", "consumer": 1000 + a.index, "id": m.message_id,
                                      "invoked": invoked, "completed": now_us(a.t0),
                                      "result": result}) + "\n")
            out.flush()
    finally:
        c.shutdown()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["producer", "consumer"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--t0", type=int, required=True)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--out", required=True)
    p.add_argument("--stop", default="")
    p.add_argument("--sends", default="")
    p.add_argument("--drain", type=float, default=60)
    a = p.parse_args()
    with open(a.out, "w") as out:
        (producer if a.role == "producer" else consumer)(a, out)
    os._exit(0)


if __name__ == "__main__":
    main()
