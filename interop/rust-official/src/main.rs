//! Interop scenarios through the official Rust client; exit 0 on success.
//!
//! - `send-receive <endpoint> <topic> <group> <count>`: sends `count` messages with a tag,
//!   keys, properties and a checkable body, receives them with its SimpleConsumer, checks every
//!   field and acks. The official 5.0.0 client never refreshes routes and never retries, so
//!   this also shows the broker answering everything it needs on the first try.
//! - `transactions <endpoint> <topic> <group>`: its transaction producer (issue 15) commits one
//!   transaction and rolls one back by hand, and leaves two to the broker's check-back, which
//!   its `TransactionChecker` answers from the body (commit one, roll back the other): exactly
//!   the two committed messages are received, once each, and the checker is asked only about
//!   the two it was left.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::exit;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::model::transaction::{Transaction, TransactionResolution};
use rocketmq::{Producer, SimpleConsumer};

fn option(endpoint: &str) -> ClientOption {
    let mut o = ClientOption::default();
    o.set_access_url(endpoint);
    o.set_enable_tls(false);
    o.set_timeout(Duration::from_secs(5));
    o.set_long_polling_timeout(Duration::from_secs(10));
    o
}

fn body(run: &str, i: usize) -> Vec<u8> {
    let mut b = format!("rust-{run}-{i}-").into_bytes();
    b.extend((0..=255u8).cycle().take(300));
    b
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.len(), args.get(1).map(String::as_str)) {
        (6, Some("send-receive")) => send_receive(&args).await,
        (5, Some("transactions")) => transactions(&args[2], &args[3], &args[4]).await,
        _ => {
            eprintln!(
                "usage: {0} send-receive <endpoint> <topic> <group> <count>\n       {0} transactions <endpoint> <topic> <group>",
                args[0]
            );
            exit(2);
        }
    }
}

async fn send_receive(args: &[String]) {
    let (endpoint, topic, group) = (&args[2], &args[3], &args[4]);
    let count: usize = args[5].parse().expect("count");
    let run = format!("{}", std::process::id());

    let mut po = ProducerOption::default();
    po.set_topics(vec![topic.clone()]);
    let mut producer = Producer::new(po, option(endpoint)).expect("producer");
    producer.start().await.expect("producer start");
    let mut expected: HashMap<String, usize> = HashMap::new();
    for i in 0..count {
        let mut props = HashMap::new();
        props.insert("index".to_string(), i.to_string());
        let m = MessageBuilder::builder()
            .set_topic(topic.as_str())
            .set_tag(if i % 2 == 0 { "TagA" } else { "TagB" })
            .set_keys(vec![format!("key-{i}")])
            .set_properties(props)
            .set_body(body(&run, i))
            .build()
            .expect("message");
        let r = producer
            .send(m)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e:?}"));
        expected.insert(r.message_id().to_string(), i);
    }
    producer.shutdown().await.expect("producer shutdown");
    println!("sent {count}");

    let mut co = SimpleConsumerOption::default();
    co.set_consumer_group(group.as_str());
    co.set_topics(vec![topic.clone()]);
    let mut consumer = SimpleConsumer::new(co, option(endpoint)).expect("consumer");
    consumer.start().await.expect("consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let mut got: BTreeMap<String, i32> = BTreeMap::new();
    let mut problems = Vec::new();
    let start = Instant::now();
    while got.len() < count && start.elapsed() < Duration::from_secs(90) {
        let msgs = match consumer
            .receive_with(topic.as_str(), &filter, 32, Duration::from_secs(30))
            .await
        {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("receive failed: {e:?}"));
                break;
            }
        };
        for m in &msgs {
            let Some(&i) = expected.get(m.message_id()) else {
                problems.push(format!("unexpected message {}", m.message_id()));
                continue;
            };
            if m.body() != body(&run, i).as_slice() {
                problems.push(format!("{}: body differs", m.message_id()));
            }
            if m.tag() != Some(if i % 2 == 0 { "TagA" } else { "TagB" }) {
                problems.push(format!("{}: tag {:?}", m.message_id(), m.tag()));
            }
            if !m.keys().contains(&format!("key-{i}")) {
                problems.push(format!("{}: keys {:?}", m.message_id(), m.keys()));
            }
            if m.properties().get("index") != Some(&i.to_string()) {
                problems.push(format!(
                    "{}: properties {:?}",
                    m.message_id(),
                    m.properties()
                ));
            }
            *got.entry(m.message_id().to_string()).or_default() += 1;
            if let Err(e) = consumer.ack(m).await {
                problems.push(format!("ack {}: {e:?}", m.message_id()));
            }
        }
    }
    consumer.shutdown().await.expect("consumer shutdown");
    let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
    if missing > 0 {
        problems.push(format!("{missing} of {count} never received"));
    }
    let dups = got.values().filter(|n| **n > 1).count();
    if dups > 0 {
        problems.push(format!("{dups} delivered more than once"));
    }
    println!(
        "received {} distinct in {:.1}s",
        got.len(),
        start.elapsed().as_secs_f64()
    );
    for p in problems.iter().take(20) {
        println!("PROBLEM: {p}");
    }
    println!("{}", if problems.is_empty() { "PASS" } else { "FAIL" });
    exit(if problems.is_empty() { 0 } else { 1 });
}

async fn transactions(endpoint: &str, topic: &str, group: &str) {
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let mut po = ProducerOption::default();
    po.set_topics(vec![topic.to_string()]);
    let mut producer = Producer::new_transaction_producer(
        po,
        option(endpoint),
        Box::new(move |_transaction_id, message| {
            seen.lock().unwrap().push(message.message_id().to_string());
            if message.body().ends_with(b"-c") {
                TransactionResolution::COMMIT
            } else {
                TransactionResolution::ROLLBACK
            }
        }),
    )
    .expect("transaction producer");
    producer.start().await.expect("producer start");
    let mut ids = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, by_hand) in [
        ("a-c", Some(true)),
        ("b-r", Some(false)),
        ("c-c", None),
        ("d-r", None),
    ] {
        let m = MessageBuilder::transaction_message_builder(topic, name.as_bytes().to_vec())
            .build()
            .expect("message");
        let tx = producer
            .send_transaction_message(m)
            .await
            .unwrap_or_else(|e| panic!("send {name}: {e:?}"));
        if tx.transaction_id().is_empty() {
            problems.push(format!("{name}: no transaction id"));
        }
        ids.insert(tx.message_id().to_string(), name);
        let ended = match by_hand {
            Some(true) => tx.commit().await,
            Some(false) => tx.rollback().await,
            None => Ok(()),
        };
        if let Err(e) = ended {
            problems.push(format!("{name}: ending it failed: {e:?}"));
        }
    }
    println!("sent 4 half messages");

    let mut co = SimpleConsumerOption::default();
    co.set_consumer_group(group);
    co.set_topics(vec![topic.to_string()]);
    let mut consumer = SimpleConsumer::new(co, option(endpoint)).expect("consumer");
    consumer.start().await.expect("consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    // The broker's first check-back comes 6 s after the send (`raftmq dev`'s default); then
    // a few seconds more to see that nothing else comes.
    while start.elapsed() < Duration::from_secs(30)
        && !(got.len() >= 2 && start.elapsed() > Duration::from_secs(10))
    {
        let msgs = match consumer
            .receive_with(topic, &filter, 8, Duration::from_secs(30))
            .await
        {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("receive failed: {e:?}"));
                break;
            }
        };
        for m in &msgs {
            let name = String::from_utf8_lossy(m.body()).to_string();
            if ids.get(m.message_id()).map(|n| n.to_string()) != Some(name.clone()) {
                problems.push(format!("unexpected message {} ({name})", m.message_id()));
            }
            *got.entry(name).or_default() += 1;
            if let Err(e) = consumer.ack(m).await {
                problems.push(format!("ack {}: {e:?}", m.message_id()));
            }
        }
    }
    consumer.shutdown().await.expect("consumer shutdown");
    producer.shutdown().await.expect("producer shutdown");
    let want: BTreeMap<String, usize> = [("a-c".to_string(), 1), ("c-c".to_string(), 1)].into();
    if got != want {
        problems.push(format!("received {got:?}, expected {want:?}"));
    }
    let asked: BTreeSet<&str> = asked
        .lock()
        .unwrap()
        .iter()
        .filter_map(|id| ids.get(id).copied())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let want_asked: BTreeSet<&str> = ["c-c", "d-r"].into();
    if asked != want_asked {
        problems.push(format!(
            "the checker was asked about {asked:?}, expected {want_asked:?}"
        ));
    }
    println!(
        "received {got:?}; checked {asked:?} in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    for p in &problems {
        println!("PROBLEM: {p}");
    }
    println!("{}", if problems.is_empty() { "PASS" } else { "FAIL" });
    exit(if problems.is_empty() { 0 } else { 1 });
}
