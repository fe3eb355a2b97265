//! A push consumer: the listener is called for each message, at most four at a time, for
//! a few seconds.
//!
//! `cargo run -p raftmq-client --example push_consume -- [endpoint] [topic] [group] [secs]`
//! (defaults: 127.0.0.1:8081, `example-topic`, `example-push-group`, 5).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::ConsumeResult;
use raftmq_client::Filter;
use raftmq_client::PushConsumer;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let topic = args.next().unwrap_or_else(|| "example-topic".into());
    let group = args.next().unwrap_or_else(|| "example-push-group".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);

    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let consumer = PushConsumer::builder(ClientConfig::new(endpoint), group)
        .subscribe(topic, Filter::All)
        .max_concurrency(4)
        .start(move |m| {
            let counter = counter.clone();
            async move {
                println!("{}: {}", m.message_id, String::from_utf8_lossy(&m.body));
                counter.fetch_add(1, Ordering::Relaxed);
                ConsumeResult::Success
            }
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    consumer.shutdown().await;
    println!(
        "push_consume example done: {} messages",
        seen.load(Ordering::Relaxed)
    );
    Ok(())
}
