//! The cluster credential on every internal RPC (Raft transport, forwarding, registration with
//! nameservers).
//!
//! Every node and nameserver of a cluster shares one secret (`cluster_secret` in the config;
//! `raftmq dev` makes a random one). A request carries the header
//! `x-raftmq-auth: v1.<sender node>.<unix ms>.<head MAC>.<body MAC>` (hex HMAC-SHA256s). The
//! head MAC covers the sender and the time and is checked by an HTTP layer ([`layer`]) before
//! the request body is even read, so a stranger cannot make a node buffer a large request; the
//! body MAC covers the RPC's method, the sender, the time and the request's bytes and is checked
//! before anything is decoded. A request without the secret, or with its body, method or
//! sender changed, is refused with `UNAUTHENTICATED`. The secret itself never crosses the wire. A captured request can be replayed
//! only within [`MAX_SKEW_MS`] (there is no nonce cache); keep the internal port on a private
//! network (docs/operations.md, "Trust model").

use hmac::Hmac;
use hmac::Mac;
use sha2::Sha256;

/// The metadata header that carries the credential.
pub const HEADER: &str = "x-raftmq-auth";
/// How far a request's time may be from the receiver's clock, either way.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// Shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No header.
    Missing,
    /// Not `v1.<u64>.<u64>.<hex>`.
    Malformed,
    /// The time is more than [`MAX_SKEW_MS`] from the receiver's.
    Stale,
    /// The MAC does not match (wrong secret, or the request was changed).
    BadMac,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "no cluster credential (x-raftmq-auth)",
            AuthError::Malformed => "malformed cluster credential",
            AuthError::Stale => "cluster credential too old or from the future (check clocks)",
            AuthError::BadMac => "cluster credential does not verify (wrong cluster_secret?)",
        })
    }
}

/// A cluster's shared secret, ready to sign and verify.
#[derive(Clone)]
pub struct ClusterKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl ClusterKey {
    /// A key from the shared secret (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the cluster secret must have at least {MIN_SECRET_BYTES} characters, has {}",
                secret.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|e| format!("unusable cluster secret: {e}"))?;
        Ok(Self { mac })
    }

    /// A fixed, publicly known key for tests and the simulator. Never for a real cluster.
    pub fn insecure_for_tests() -> Self {
        Self::new("raftmq-insecure-test-only-secret").expect("a long enough secret")
    }

    fn head_mac(&self, sender: u64, ts_ms: u64) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(b"raftmq/v1/head\n");
        m.update(&sender.to_le_bytes());
        m.update(&ts_ms.to_le_bytes());
        m
    }

    fn mac(&self, method: &str, sender: u64, ts_ms: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(b"raftmq/v1\n");
        m.update(method.as_bytes());
        m.update(b"\n");
        m.update(&sender.to_le_bytes());
        m.update(&ts_ms.to_le_bytes());
        m.update(body);
        m
    }

    /// The header value for a request of `method` from `sender` at `now_ms` with `body`.
    pub fn sign(&self, method: &str, sender: u64, now_ms: u64, body: &[u8]) -> String {
        let head = self.head_mac(sender, now_ms).finalize().into_bytes();
        let tag = self
            .mac(method, sender, now_ms, body)
            .finalize()
            .into_bytes();
        format!("v1.{sender}.{now_ms}.{}.{}", hex(&head), hex(&tag))
    }

    /// Parses and checks the parts of a header value that need no body: the sender, the time
    /// and the head MAC. `Ok((sender, time, body MAC))`.
    fn verify_parts(
        &self,
        header: Option<&str>,
        now_ms: u64,
    ) -> Result<(u64, u64, Vec<u8>), AuthError> {
        let h = header.ok_or(AuthError::Missing)?;
        let mut parts = h.split('.');
        let (Some("v1"), Some(sender), Some(ts), Some(head), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let sender: u64 = sender.parse().map_err(|_| AuthError::Malformed)?;
        let ts: u64 = ts.parse().map_err(|_| AuthError::Malformed)?;
        let head = unhex(head).ok_or(AuthError::Malformed)?;
        let tag = unhex(tag).ok_or(AuthError::Malformed)?;
        if ts.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(AuthError::Stale);
        }
        // Constant-time comparison.
        self.head_mac(sender, ts)
            .verify_slice(&head)
            .map_err(|_| AuthError::BadMac)?;
        Ok((sender, ts, tag))
    }

    /// Checks only what needs no body (the HTTP layer's check); `Ok(sender)`.
    pub fn verify_head(&self, header: Option<&str>, now_ms: u64) -> Result<u64, AuthError> {
        self.verify_parts(header, now_ms).map(|(s, _, _)| s)
    }

    /// Checks a header value; `Ok(sender)` if it verifies.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<u64, AuthError> {
        self.verify_timed(header, method, body, now_ms)
            .map(|(sender, _)| sender)
    }

    /// [`Self::verify`], also giving the credential's time: `Ok((sender, time))`.
    fn verify_timed(
        &self,
        header: Option<&str>,
        method: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(u64, u64), AuthError> {
        let (sender, ts, tag) = self.verify_parts(header, now_ms)?;
        self.mac(method, sender, ts, body)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadMac)?;
        Ok((sender, ts))
    }

    /// Checks the credential that opens a stream whose frames carry their own MACs
    /// ([`Self::frame_tag`]): `Ok((sender, time))`, the two values the frames are bound to.
    pub fn check_stream(
        &self,
        meta: &tonic::metadata::MetadataMap,
        method: &str,
        now_ms: u64,
    ) -> Result<(u64, u64), tonic::Status> {
        let h = meta.get(HEADER).and_then(|v| v.to_str().ok());
        self.verify_timed(h, method, &[], now_ms)
            .map_err(|e| tonic::Status::unauthenticated(e.to_string()))
    }

    fn frame_mac(
        &self,
        method: &str,
        sender: u64,
        ts_ms: u64,
        seq: u64,
        group: u64,
        payload: &[u8],
    ) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(b"raftmq/v1/frame\n");
        m.update(method.as_bytes());
        m.update(b"\n");
        m.update(&sender.to_le_bytes());
        m.update(&ts_ms.to_le_bytes());
        m.update(&seq.to_le_bytes());
        m.update(&group.to_le_bytes());
        m.update(payload);
        m
    }

    /// The MAC of frame `seq` (from 0) of a stream of `method` whose credential names `sender`
    /// and `ts_ms`: the frame cannot be changed, or moved to another place or stream, unnoticed.
    pub fn frame_tag(
        &self,
        method: &str,
        sender: u64,
        ts_ms: u64,
        seq: u64,
        group: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        self.frame_mac(method, sender, ts_ms, seq, group, payload)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Checks a frame's MAC ([`Self::frame_tag`]) in constant time.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_frame(
        &self,
        method: &str,
        sender: u64,
        ts_ms: u64,
        seq: u64,
        group: u64,
        payload: &[u8],
        tag: &[u8],
    ) -> Result<(), AuthError> {
        self.frame_mac(method, sender, ts_ms, seq, group, payload)
            .verify_slice(tag)
            .map_err(|_| AuthError::BadMac)
    }

    /// Signs a tonic request in place.
    pub fn attach<T>(
        &self,
        req: &mut tonic::Request<T>,
        method: &str,
        sender: u64,
        now_ms: u64,
        body: &[u8],
    ) {
        let v = self.sign(method, sender, now_ms, body);
        if let Ok(v) = v.parse() {
            req.metadata_mut().insert(HEADER, v);
        }
    }

    /// Verifies a tonic request's credential: `Ok(sender)`, or the `UNAUTHENTICATED` status
    /// to answer with.
    pub fn check(
        &self,
        meta: &tonic::metadata::MetadataMap,
        method: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<u64, tonic::Status> {
        let h = meta.get(HEADER).and_then(|v| v.to_str().ok());
        self.verify(h, method, body, now_ms)
            .map_err(|e| tonic::Status::unauthenticated(e.to_string()))
    }
}

/// The bytes a group-addressed internal request (Raft, forwarding) is signed over.
pub fn group_body(group: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.extend_from_slice(&group.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::new("0123456789abcdef-test").unwrap()
    }

    #[test]
    fn a_signed_request_verifies_and_names_its_sender() {
        let h = key().sign("/raft/Vote", 3, 1_000_000, b"body");
        assert_eq!(
            key().verify(Some(&h), "/raft/Vote", b"body", 1_000_500),
            Ok(3)
        );
    }

    #[test]
    fn anything_changed_is_refused() {
        let k = key();
        let h = k.sign("/raft/Vote", 3, 1_000_000, b"body");
        let now = 1_000_000;
        assert_eq!(
            k.verify(None, "/raft/Vote", b"body", now),
            Err(AuthError::Missing)
        );
        assert_eq!(
            k.verify(Some(&h), "/raft/Append", b"body", now),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            k.verify(Some(&h), "/raft/Vote", b"bodY", now),
            Err(AuthError::BadMac)
        );
        let other = ClusterKey::new("another secret, long enough").unwrap();
        assert_eq!(
            other.verify(Some(&h), "/raft/Vote", b"body", now),
            Err(AuthError::BadMac)
        );
        let forged = h.replacen("v1.3.", "v1.4.", 1);
        assert_eq!(k.verify_head(Some(&forged), now), Err(AuthError::BadMac));
        assert_eq!(k.verify_head(Some(&h), now), Ok(3));
        assert_eq!(other.verify_head(Some(&h), now), Err(AuthError::BadMac));
        assert_eq!(
            k.verify(Some(&forged), "/raft/Vote", b"body", now),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            k.verify(Some(&h), "/raft/Vote", b"body", now + MAX_SKEW_MS + 1),
            Err(AuthError::Stale)
        );
        for junk in [
            "",
            "v1",
            "v1.3.4",
            "v1.3.4.00",
            "v2.3.4.00.00",
            "v1.x.4.00.00",
            "v1.3.4.zz.zz",
            "v1.3.4.00.00.5",
        ] {
            assert_eq!(
                k.verify(Some(junk), "/m", b"", now),
                Err(AuthError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_stream_frame_verifies_only_in_its_own_place() {
        let k = key();
        let tag = k.frame_tag("raft.AppendStream", 2, 1_000, 5, 7, b"entries");
        let ok = |m, s, t, q, g, p: &[u8]| k.verify_frame(m, s, t, q, g, p, &tag).is_ok();
        assert!(ok("raft.AppendStream", 2, 1_000, 5, 7, b"entries"));
        // Another method, sender, stream (time), place, group or payload: refused.
        assert!(!ok("raft.Other", 2, 1_000, 5, 7, b"entries"));
        assert!(!ok("raft.AppendStream", 3, 1_000, 5, 7, b"entries"));
        assert!(!ok("raft.AppendStream", 2, 1_001, 5, 7, b"entries"));
        assert!(!ok("raft.AppendStream", 2, 1_000, 6, 7, b"entries"));
        assert!(!ok("raft.AppendStream", 2, 1_000, 5, 8, b"entries"));
        assert!(!ok("raft.AppendStream", 2, 1_000, 5, 7, b"entrieS"));
        // A stream's credential is signed over an empty body and checked as such.
        let mut req = tonic::Request::new(());
        k.attach(&mut req, "raft.AppendStream", 2, 1_000, &[]);
        assert_eq!(
            k.check_stream(req.metadata(), "raft.AppendStream", 1_100)
                .unwrap(),
            (2, 1_000)
        );
        assert!(k.check_stream(req.metadata(), "raft.Vote", 1_100).is_err());
        let other = ClusterKey::new("another-secret-of-16+").unwrap();
        assert!(
            other
                .check_stream(req.metadata(), "raft.AppendStream", 1_100)
                .is_err()
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ClusterKey::new("short").is_err());
        assert!(ClusterKey::new("   padded-short   ").is_err());
    }
}

/// The HTTP layer that refuses, before the body is read, every request under an internal path
/// prefix whose credential's head does not verify. (The simulator's tonic has no HTTP layer;
/// there the handlers' full check stands alone.)
#[cfg(not(madsim))]
pub mod layer {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;
    use std::task::Poll;

    use super::ClusterKey;
    use super::HEADER;

    /// Wraps a service; see the module docs.
    #[derive(Clone)]
    pub struct AuthLayer {
        key: ClusterKey,
        prefix: &'static str,
        now_ms: fn() -> u64,
    }

    impl AuthLayer {
        /// Checks requests whose path starts with `prefix` (e.g. `/raftmq.`), reading the time
        /// from `now_ms`.
        pub fn new(key: ClusterKey, prefix: &'static str, now_ms: fn() -> u64) -> Self {
            Self {
                key,
                prefix,
                now_ms,
            }
        }
    }

    impl<S> tower_layer::Layer<S> for AuthLayer {
        type Service = Auth<S>;

        fn layer(&self, inner: S) -> Auth<S> {
            Auth {
                inner,
                layer: self.clone(),
            }
        }
    }

    /// The wrapped service.
    #[derive(Clone)]
    pub struct Auth<S> {
        inner: S,
        layer: AuthLayer,
    }

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

    impl<S, B, R> tower_service::Service<http::Request<B>> for Auth<S>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
        S::Future: Send + 'static,
        R: Default + Send + 'static,
    {
        type Response = http::Response<R>;
        type Error = S::Error;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            if req.uri().path().starts_with(self.layer.prefix) {
                let h = req.headers().get(HEADER).and_then(|v| v.to_str().ok());
                if let Err(e) = self.layer.key.verify_head(h, (self.layer.now_ms)()) {
                    let resp = tonic::Status::unauthenticated(e.to_string()).into_http::<R>();
                    return Box::pin(async move { Ok(resp) });
                }
            }
            Box::pin(self.inner.call(req))
        }
    }
}
