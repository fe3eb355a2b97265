//! Hand-made history pieces for the invariants' unit tests.

use super::Delivered;
use super::Op;
use super::Result3;
use super::check;

/// A send of `id` (body = id) at `t`, stored at `pos` of queue ("b", 0) if given.
pub fn send(id: &str, group: Option<&str>, t: u64, r: Result3, pos: Option<i64>) -> Op {
    Op::Send {
        id: id.into(),
        body: id.as_bytes().to_vec(),
        group: group.map(str::to_string),
        invoked: t,
        completed: t + 1,
        result: r,
        pos: pos.map(|o| ("b".to_string(), 0, o)),
        may_repeat: false,
        topic: None,
    }
}

/// `op` (a send) marked as possibly stored more than once, if `flag`.
pub fn repeatable(mut op: Op, flag: bool) -> Op {
    if let Op::Send { may_repeat, .. } = &mut op {
        *may_repeat = flag;
    }
    op
}

/// A receive at `t` by `consumer` with a 100 µs invisible duration.
pub fn recv(consumer: u32, fifo: bool, t: u64, ids: &[(&str, i64)]) -> Op {
    Op::Receive {
        consumer,
        fifo,
        invoked: t,
        completed: t + 1,
        invisible_us: 100,
        msgs: ids
            .iter()
            .map(|(id, o)| Delivered {
                id: id.to_string(),
                body: id.as_bytes().to_vec(),
                attempt: 1,
                pos: Some(("b".to_string(), 0, *o)),
            })
            .collect(),
    }
}

/// An OK ack of `id` at `t`.
pub fn ack(id: &str, t: u64) -> Op {
    Op::Ack {
        consumer: 0,
        id: id.into(),
        invoked: t,
        completed: t + 1,
        result: Result3::Ok,
    }
}

/// A reset of the FIFO (`fifo`) or plain group invoked at `t`, completed at `t + 1`.
pub fn reset_op(fifo: bool, t: u64, result: Result3) -> Op {
    Op::Reset {
        fifo,
        invoked: t,
        completed: t + 1,
        result,
    }
}

/// A pull of queue ("b", 0) from `from`.
pub fn pull(from: i64, offs: &[(i64, &str)], next: i64) -> Op {
    Op::Pull {
        broker: "b".into(),
        queue: 0,
        from,
        invoked: 10,
        completed: 11,
        msgs: offs
            .iter()
            .map(|(o, id)| (*o, id.to_string(), id.as_bytes().to_vec()))
            .collect(),
        next,
    }
}

/// An OK commit of offset `o` of queue ("b", 0) at `t`.
pub fn commit(o: i64, t: u64) -> Op {
    Op::Commit {
        broker: "b".into(),
        queue: 0,
        offset: o,
        invoked: t,
        completed: t + 1,
        result: Result3::Ok,
    }
}

/// A read of queue ("b", 0)'s committed offset at `t`.
pub fn read(v: Option<i64>, t: u64) -> Op {
    Op::ReadCommitted {
        broker: "b".into(),
        queue: 0,
        invoked: t,
        completed: t + 1,
        value: v,
    }
}

/// The anomaly names `check` finds, in order.
pub fn kinds(h: &[Op]) -> Vec<&'static str> {
    check(h).0.into_iter().map(|a| a.kind).collect()
}
