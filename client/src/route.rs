//! Topic routes: which queues a topic has, in which broker (Raft group), at which addresses.
//! Cached per topic, refreshed on a timer and at once after a failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use raftmq_proto::v2 as pb;
use tokio::time::Instant;

use crate::error::ClientError;
use crate::error::Failure;
use crate::rpc::Rpc;
use crate::rpc::check;

/// One queue of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The topic.
    pub topic: String,
    /// The broker (Raft group) holding the queue.
    pub broker: String,
    /// Queue id within the broker.
    pub id: i32,
    /// Addresses that serve the queue, the group's leader first when the broker knows it.
    pub addrs: Vec<String>,
    /// Message types the queue accepts (`apache.rocketmq.v2.MessageType` values).
    pub accepts: Vec<i32>,
}

impl Queue {
    pub(crate) fn from_pb(q: &pb::MessageQueue) -> Option<Queue> {
        let b = q.broker.as_ref()?;
        let addrs: Vec<String> = b
            .endpoints
            .as_ref()?
            .addresses
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port))
            .collect();
        if addrs.is_empty() {
            return None;
        }
        Some(Queue {
            topic: q.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            broker: b.name.clone(),
            id: q.id,
            addrs,
            accepts: q.accept_message_types.clone(),
        })
    }

    pub(crate) fn to_pb(&self, rpc: &Rpc) -> pb::MessageQueue {
        pb::MessageQueue {
            topic: rpc.resource(&self.topic),
            id: self.id,
            permission: pb::Permission::ReadWrite as i32,
            broker: Some(pb::Broker {
                name: self.broker.clone(),
                id: 0,
                endpoints: Some(endpoints(&self.addrs)),
            }),
            accept_message_types: self.accepts.clone(),
        }
    }
}

/// A v2 `Endpoints` for `host:port` strings.
pub(crate) fn endpoints(addrs: &[String]) -> pb::Endpoints {
    pb::Endpoints {
        scheme: pb::AddressScheme::IPv4 as i32,
        addresses: addrs
            .iter()
            .filter_map(|a| {
                let (h, p) = a.rsplit_once(':')?;
                Some(pb::Address {
                    host: h.to_string(),
                    port: p.parse().ok()?,
                })
            })
            .collect(),
    }
}

struct Cached {
    queues: Arc<Vec<Queue>>,
    fetched: Instant,
}

/// The route cache.
pub(crate) struct Routes {
    rpc: Arc<Rpc>,
    cache: Mutex<BTreeMap<String, Cached>>,
}

impl Routes {
    pub(crate) fn new(rpc: Arc<Rpc>) -> Routes {
        Routes {
            rpc,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The topic's queues, fetched when missing or older than the refresh period.
    pub(crate) async fn get(&self, topic: &str) -> Result<Arc<Vec<Queue>>, ClientError> {
        let fresh = {
            let cache = self.cache.lock().unwrap();
            cache.get(topic).and_then(|c| {
                (c.fetched.elapsed() < self.rpc.config.route_refresh).then(|| c.queues.clone())
            })
        };
        match fresh {
            Some(q) => Ok(q),
            None => self.refresh(topic).await,
        }
    }

    /// Asks the access points for the topic's route; keeps the old route if none answers.
    #[tracing::instrument(level = "debug", skip(self))]
    pub(crate) async fn refresh(&self, topic: &str) -> Result<Arc<Vec<Queue>>, ClientError> {
        let mut last = Failure::Retryable("no access point".into());
        let cfg = &self.rpc.config;
        for attempt in 1..=cfg.max_attempts {
            tokio::time::sleep(cfg.backoff(attempt)).await;
            for ap in &cfg.endpoints {
                match self.query(ap, topic).await {
                    Ok(queues) => {
                        let queues = Arc::new(queues);
                        self.cache.lock().unwrap().insert(
                            topic.to_string(),
                            Cached {
                                queues: queues.clone(),
                                fetched: Instant::now(),
                            },
                        );
                        return Ok(queues);
                    }
                    Err(f @ Failure::Refused { .. }) => return Err(f.into_error(attempt)),
                    Err(f) => last = f,
                }
            }
        }
        if let Some(c) = self.cache.lock().unwrap().get(topic) {
            tracing::warn!(topic, ?last, "route refresh failed; keeping the old route");
            return Ok(c.queues.clone());
        }
        Err(last.into_error(cfg.max_attempts))
    }

    async fn query(&self, ap: &str, topic: &str) -> Result<Vec<Queue>, Failure> {
        let rpc = &self.rpc;
        let t = rpc.config.request_timeout;
        let req = rpc.request(
            pb::QueryRouteRequest {
                topic: rpc.resource(topic),
                endpoints: Some(endpoints(std::slice::from_ref(&ap.to_string()))),
            },
            Some(t),
        );
        let resp = rpc
            .unary(ap, t, |mut s| async move { s.query_route(req).await })
            .await?;
        check(&resp.status)?;
        let queues: Vec<Queue> = resp
            .message_queues
            .iter()
            .filter_map(Queue::from_pb)
            .collect();
        if queues.is_empty() {
            return Err(Failure::Retryable(format!("empty route for {topic}")));
        }
        Ok(queues)
    }

    /// Every address in any cached route.
    pub(crate) fn addresses(&self) -> Vec<String> {
        let cache = self.cache.lock().unwrap();
        let mut all: Vec<String> = cache
            .values()
            .flat_map(|c| c.queues.iter().flat_map(|q| q.addrs.iter().cloned()))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
