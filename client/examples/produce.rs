//! Sends a few messages of every kind the broker stores today: plain (with tag, keys and a
//! property), a batch, and FIFO messages of two message groups.
//!
//! `cargo run -p raftmq-client --example produce -- [endpoint] [topic]`
//! (defaults: 127.0.0.1:8081, `example-topic`).

use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Message;
use raftmq_client::Producer;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let topic = args.next().unwrap_or_else(|| "example-topic".into());

    let producer = Producer::builder(ClientConfig::new(endpoint))
        .topics([topic.clone()])
        .start()
        .await?;

    let r = producer
        .send(
            Message::new(topic.clone(), b"order 42 paid".to_vec())
                .with_tag("paid")
                .with_keys(["order-42"])
                .with_property("region", "eu"),
        )
        .await?;
    println!("sent {} (offset {})", r.message_id, r.offset);

    let batch = (0..3)
        .map(|i| Message::new(topic.clone(), format!("batch {i}").into_bytes()))
        .collect();
    for r in producer.send_batch(batch).await? {
        println!("batch: sent {}", r.message_id);
    }

    // Many sends in flight at once; each handle resolves to its own outcome.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            producer.send_async(Message::new(
                topic.clone(),
                format!("async {i}").into_bytes(),
            ))
        })
        .collect();
    for h in handles {
        match h.await {
            Ok(r) => println!("async: sent {}", r.message_id),
            // The one case to think about: the message may or may not be stored.
            Err(e) if !e.is_definite() => println!("async: outcome unknown: {e}"),
            Err(e) => return Err(e),
        }
    }

    // FIFO: a group's order is the order its sends complete, so send them one after another.
    for step in 0..3 {
        for group in ["account-a", "account-b"] {
            let m = Message::new(topic.clone(), format!("{group} step {step}").into_bytes())
                .with_message_group(group);
            let r = producer.send(m).await?;
            println!("fifo: sent {} ({group} step {step})", r.message_id);
        }
    }
    producer.shutdown().await;
    println!("produce example done");
    Ok(())
}
