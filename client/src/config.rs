//! Client configuration: where the access points are, how long to wait, how hard to retry.
//! Validated once, when a producer or consumer starts.

use std::time::Duration;

use crate::error::ClientError;

/// Configuration shared by producers and consumers.
///
/// ```
/// use raftmq_client::ClientConfig;
/// let config = ClientConfig::new("127.0.0.1:8081");
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Access points, `host:port`: nameservers or broker nodes. Routes are asked of them in
    /// order until one answers.
    pub endpoints: Vec<String>,
    /// Deadline of one RPC attempt (default 3 s). A send that times out has an unknown
    /// outcome.
    pub request_timeout: Duration,
    /// Attempts for an operation whose earlier attempts certainly failed (default 3).
    pub max_attempts: u32,
    /// First pause between attempts; doubled each time (default 10 ms).
    pub backoff_initial: Duration,
    /// Longest pause between attempts (default 1 s).
    pub backoff_max: Duration,
    /// Also retry sends whose outcome is unknown, with the same message id, to the same queue
    /// (default false). A RaftMQ broker answers a resend inside its deduplication window
    /// (`[dedup]`, 10 minutes by default) with the first copy's receipt, so the message is
    /// stored once; past the window, or at a broker without one, consumers may see the same
    /// message id twice.
    pub retry_unknown: bool,
    /// How often routes are refreshed when nothing fails (default 30 s); any failure
    /// refreshes the route of the topic involved at once.
    pub route_refresh: Duration,
    /// Heartbeat period (default 10 s).
    pub heartbeat_interval: Duration,
    /// Long-polling wait of a receive with nothing to deliver (default 20 s in RocketMQ; 5 s
    /// here so shutdown and rebalancing stay responsive).
    pub long_polling_timeout: Duration,
    /// Namespace put in every resource (default empty).
    pub namespace: String,
    /// Client id sent as `x-mq-client-id`; generated when `None`.
    pub client_id: Option<String>,
}

impl ClientConfig {
    /// Defaults with one access point.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientConfig {
            endpoints: vec![endpoint.into()],
            request_timeout: Duration::from_secs(3),
            max_attempts: 3,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            retry_unknown: false,
            route_refresh: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            long_polling_timeout: Duration::from_secs(5),
            namespace: String::new(),
            client_id: None,
        }
    }

    /// Defaults with several access points, e.g. from `"a:8081,b:8081"`.
    pub fn with_endpoints(endpoints: &str) -> Self {
        let mut c = ClientConfig::new("");
        c.endpoints = endpoints
            .split([',', ';', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        c
    }

    /// Checks every field; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: String| Err(ClientError::Config(m));
        if self.endpoints.is_empty() {
            return bad("endpoints: at least one access point (host:port) is needed".into());
        }
        for e in &self.endpoints {
            let ok = e
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok || e.contains("://") {
                return bad(format!("endpoints: {e:?} is not host:port"));
            }
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if self.backoff_initial > self.backoff_max {
            return bad("backoff_initial must not exceed backoff_max".into());
        }
        if self.route_refresh.is_zero() || self.heartbeat_interval.is_zero() {
            return bad("route_refresh and heartbeat_interval must be positive".into());
        }
        if self.long_polling_timeout.is_zero() {
            return bad("long_polling_timeout must be positive".into());
        }
        Ok(())
    }

    /// The pause before attempt `attempt` (1-based; attempt 1 has none).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(16);
        (self.backoff_initial * factor).min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_named() {
        let mut c = ClientConfig::new("localhost:8081");
        assert!(c.validate().is_ok());
        c.endpoints = vec!["http://localhost:8081".into()];
        assert!(c.validate().unwrap_err().to_string().contains("endpoints"));
        c.endpoints = vec!["localhost".into()];
        assert!(c.validate().is_err());
        c = ClientConfig::with_endpoints("a:1, b:2");
        assert_eq!(c.endpoints, vec!["a:1", "b:2"]);
        c.max_attempts = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_attempts")
        );
        c = ClientConfig::with_endpoints("");
        assert!(c.validate().is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = ClientConfig::new("a:1");
        assert_eq!(c.backoff(1), Duration::ZERO);
        assert_eq!(c.backoff(2), Duration::from_millis(10));
        assert_eq!(c.backoff(3), Duration::from_millis(20));
        assert_eq!(c.backoff(40), Duration::from_secs(1));
    }
}
