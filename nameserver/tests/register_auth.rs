//! Registrations are authenticated (issue 10): before, anyone reaching the port could register
//! a fake node (with term u64::MAX it took over every route) or claim u32::MAX queues (4e9
//! route entries built under the table lock).

use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use nameserver::service::NameServer;
use raftmq_proto::auth::ClusterKey;
use raftmq_proto::nameserver as nspb;
use raftmq_proto::nameserver::registry_server::Registry;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn registration(node: u64, queues: u32, term: u64) -> nspb::RegisterRequest {
    nspb::RegisterRequest {
        node,
        client_addr: format!("127.0.0.{node}:8081"),
        groups: vec![nspb::GroupReport {
            group: 1,
            name: "raftmq-g1".into(),
            role: "leader".into(),
            term,
            leader: node,
            members: vec![nspb::Member {
                node,
                client_addr: format!("127.0.0.{node}:8081"),
            }],
            topics: vec![nspb::TopicInfo {
                name: "t".into(),
                queues,
                kind: "mixed".into(),
            }],
            consumer_groups: vec![],
        }],
        auto_create: false,
        default_queues: 4,
    }
}

fn signed(
    key: &ClusterKey,
    signer: u64,
    r: nspb::RegisterRequest,
) -> tonic::Request<nspb::RegisterRequest> {
    let body = prost::Message::encode_to_vec(&r);
    let mut req = tonic::Request::new(r);
    key.attach(&mut req, nspb::REGISTER_METHOD, signer, now_ms(), &body);
    req
}

#[tokio::test]
async fn only_signed_registrations_for_the_signer_count() {
    let key = ClusterKey::new("nameserver-test-secret-0123").unwrap();
    let ns = NameServer::new(Duration::from_secs(3), key.clone());

    // Unsigned, and signed with another cluster's secret: UNAUTHENTICATED, nothing stored.
    let e = ns
        .register(tonic::Request::new(registration(9, 4, u64::MAX)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let other = ClusterKey::new("some-other-cluster-secret").unwrap();
    let e = ns
        .register(signed(&other, 9, registration(9, 4, u64::MAX)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A changed body no longer verifies.
    let mut req = signed(&key, 9, registration(9, 4, 1));
    req.get_mut().groups[0].term = u64::MAX;
    assert_eq!(
        ns.register(req).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // A member of the cluster may not speak for another node.
    let e = ns
        .register(signed(&key, 2, registration(9, 4, u64::MAX)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(ns.table().nodes(now_ms()).is_empty());

    // Absurd queue counts are refused with a reason.
    let r = ns
        .register(signed(&key, 1, registration(1, u32::MAX, 3)))
        .await
        .unwrap();
    assert!(
        r.get_ref().error.contains("4294967295 queues"),
        "{:?}",
        r.get_ref()
    );
    assert!(ns.table().nodes(now_ms()).is_empty());

    // The real thing is taken.
    let r = ns
        .register(signed(&key, 1, registration(1, 4, 3)))
        .await
        .unwrap();
    assert!(r.get_ref().error.is_empty());
    assert_eq!(ns.table().nodes(now_ms()).len(), 1);
    assert_eq!(ns.table().route(now_ms(), "t").len(), 4);
}
