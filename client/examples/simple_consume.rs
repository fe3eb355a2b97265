//! Receives and acknowledges messages until none arrives for one long poll.
//!
//! `cargo run -p raftmq-client --example simple_consume -- [endpoint] [topic] [group]`
//! (defaults: 127.0.0.1:8081, `example-topic`, `example-group`).

use std::time::Duration;

use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::SimpleConsumer;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let topic = args.next().unwrap_or_else(|| "example-topic".into());
    let group = args.next().unwrap_or_else(|| "example-group".into());

    let mut config = ClientConfig::new(endpoint);
    config.long_polling_timeout = Duration::from_secs(2);
    let consumer = SimpleConsumer::builder(config, group)
        .subscribe(topic, Filter::All)
        .start()
        .await?;
    let mut total = 0;
    let mut empty = 0;
    // Each receive asks one broker; a few empty answers in a row mean the topic is drained.
    while empty < 3 {
        let batch = consumer.receive(16, Duration::from_secs(30)).await?;
        if batch.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in batch {
            println!(
                "{} attempt {} group {:?}: {}",
                m.message_id,
                m.delivery_attempt,
                m.message_group,
                String::from_utf8_lossy(&m.body)
            );
            consumer.ack(&m).await?;
            total += 1;
        }
    }
    consumer.shutdown().await;
    println!("simple_consume example done: {total} messages");
    Ok(())
}
