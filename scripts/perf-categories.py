#!/usr/bin/env python3
"""Groups a `perf report --no-children --sort dso,sym --stdio -g none` listing into the
components of RaftMQ's data path (issue 13, item 1) and prints a markdown table of the share of
sampled server CPU each takes. The first matching rule wins; rules look at the symbol (and the
DSO for the kernel)."""

import re
import sys

# (component, regex over "dso symbol"), most specific first.
RULES = [
    ("kernel: disk (write, fdatasync, ext4/jbd2, block)",
     r"(\[kernel|\[k\]).*(ext4|jbd2|blk_|bio_|fsync|fdatasync|filemap|pagecache|iomap|__x64_sys_pwrite|vfs_write|generic_perform_write|copy_page_from_iter|nvme|virtblk|xfs)"),
    ("kernel: network (TCP over loopback, sockets)",
     r"(\[kernel|\[k\]).*(tcp_|ip_|__sys_sendmsg|__sys_recvmsg|sock_|skb|net_rx|loopback|__dev_queue|netif_|inet_|sendmsg|recvmsg|__napi|process_backlog)"),
    ("kernel: futex, scheduling, wake-ups, epoll",
     r"(\[kernel|\[k\]).*(futex|schedule|__switch_to|finish_task_switch|try_to_wake_up|enqueue_|dequeue_|pick_next|ep_|epoll|__wake_up|update_curr|select_task|psi_|hrtimer|do_nanosleep|cpuidle|idle|_raw_spin_unlock_irq)"),
    ("kernel: copies to and from user memory", r"(\[kernel|\[k\]).*(_copy_to_iter|_copy_from_iter|copy_user|__get_user|__put_user|__check_object_size)"),
    ("kernel: other (syscall entry, memory, timers)", r"(\[kernel|\[k\])"),
    ("HTTP/2 and gRPC (h2, hyper, tonic, tower)", r"\b(h2|hyper|hyper_util|tonic|tower|http|http_body)::"),
    ("protobuf (prost)", r"\bprost::|raftmq_proto::v2::|Message>::(encode|decode|merge)|encoded_len"),
    ("bincode (commands, entries, RPCs)", r"\bbincode::"),
    ("CRC32C (log frames)", r"crc32c"),
    ("HMAC-SHA256 (cluster RPC authentication)", r"\b(sha2|hmac|digest)::|sha256"),
    ("MD5 (body digests for the v2 protocol)", r"\bmd5|md_5|Md5"),
    ("memcpy, memmove, memset, memcmp", r"__mem(cpy|move|set|cmp)|memcpy|memmove|memset|memcmp"),
    ("allocator (malloc/free)", r"malloc|_int_free|cfree|__libc_free|realloc|calloc|alloc::alloc|__rdl_|_int_realloc|tcache|arena|unlink_chunk|__rust_alloc|__rust_dealloc|__rust_realloc|__rust_no_alloc"),
    ("buffers (bytes, slab, indexmap)", r"\bbytes::|\bslab::|\bindexmap::"),
    ("clock reads", r"clock_gettime|read_tsc|ktime_get|Instant::now"),
    ("tokio runtime (scheduler, timers, channels, sync, codecs)", r"\btokio::|\btokio_util::|\bmio::|parking_lot|futures_util::|futures_channel::|futures_core::|tokio_stream::|std::sync::|crossbeam|PollFn"),
    ("openraft (replication, commit, apply driving)", r"\bopenraft::"),
    ("raft-store (log, segments, flusher, network)", r"\braft_store::"),
    ("broker: state machine apply (state::, app::)", r"\bbroker::(state|app)::"),
    ("broker: batcher, core, forwarding", r"\bbroker::(batcher|core|forward|replica|command|limits)"),
    ("broker: v2 service (validate, convert, send, receive)", r"\bbroker::service::|\bbroker::receipt"),
    ("broker: other", r"\bbroker::"),
    ("tracing", r"\btracing"),
    ("libc/ld other", r"libc\.so|ld-linux"),
]


def main(path):
    rows = {}
    total = 0.0
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+(.*)$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        key = f"{dso} {sym}"
        comp = "other (raftmq binary, unclassified)"
        for name, rx in RULES:
            if re.search(rx, key):
                comp = name
                break
        rows[comp] = rows.get(comp, 0.0) + pct
        total += pct
    print("| component | share of sampled server CPU |")
    print("|---|---|")
    for comp, pct in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"| {comp} | {pct:.1f}% |")
    print(f"| (total) | {total:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1])
