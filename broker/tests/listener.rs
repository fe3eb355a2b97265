//! Connection and client bounds (issue 10: a node had no cap on connections, and its map of
//! clients grew with every id it ever saw).
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::time::Duration;

use broker::core::BrokerCore;
use broker::core::BrokerSettings;
use broker::limits::ClientLimits;
use broker::listener::real::Limited;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept_until_one_closes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Limited::new(listener, 2);
    let _c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let a = incoming.next().await.unwrap().unwrap();
    let _b = incoming.next().await.unwrap().unwrap();
    // The third is accepted and closed at once: its peer reads end-of-stream.
    let mut c3 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let next = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
    assert!(
        next.is_err(),
        "a third connection must not be handed to the server"
    );
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), c3.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Once one closes, a new connection is admitted.
    drop(a);
    let _c4 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
    assert!(matches!(got, Ok(Some(Ok(_)))));
}

#[tokio::test]
async fn the_client_map_never_grows_past_its_cap() {
    let settings = BrokerSettings {
        limits: ClientLimits {
            max_clients: 3,
            ..ClientLimits::default()
        },
        ..BrokerSettings::default()
    };
    let core = BrokerCore::new(
        settings,
        1,
        BTreeMap::new(),
        Vec::new(),
        raftmq_proto::auth::ClusterKey::insecure_for_tests(),
    );
    for i in 0..100 {
        core.clients().touch(&format!("client-{i}"));
        assert!(core.clients().len() <= 3);
    }
    assert_eq!(core.clients().len(), 3);
}
