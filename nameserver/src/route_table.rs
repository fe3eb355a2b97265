//! The route table: what live broker registrations say about Raft groups, their leaders and
//! topics, and the routes computed from it. Pure: time is passed in.
//!
//! Every broker node reports, about once a second, each group it hosts: its role and term, the
//! leader it knows, the members' client addresses, and the topics and consumer groups in its
//! replica's state. A registration not renewed within the TTL is dropped. A group's leader is the
//! node reporting itself leader with the highest term; failing that, the leader most
//! recent-term reports point at. Routes list a group's members with the leader first: clients
//! that pick the first address talk to the leader, and any member forwards, so a stale route
//! costs one hop, never an error.

use std::collections::BTreeMap;

/// A topic as a group reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    /// Name.
    pub name: String,
    /// Queues in this group.
    pub queues: u32,
    /// normal, fifo, delay, transaction or mixed.
    pub kind: String,
}

/// A consumer group's policy as a group reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupReport {
    /// Name.
    pub name: String,
    /// Deliveries before dead-lettering.
    pub max_delivery_attempts: u32,
    /// Ordered consumption.
    pub fifo: bool,
    /// Retry backoff, milliseconds per attempt.
    pub retry_backoff_ms: Vec<u64>,
}

/// A node's role in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// Leads.
    Leader,
    /// Follows.
    Follower,
    /// Anything else (candidate, learner, stopped).
    Other,
}

/// One hosted group, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Raft group id.
    pub group: u64,
    /// The broker name routes give the group.
    pub name: String,
    /// This node's role.
    pub role: GroupRole,
    /// This node's current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Every member: (node id, client address).
    pub members: Vec<(u64, String)>,
    /// Topics in this node's replica.
    pub topics: Vec<TopicReport>,
    /// Consumer groups in this node's replica.
    pub consumer_groups: Vec<ConsumerGroupReport>,
}

/// One node's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Node id.
    pub node: u64,
    /// The node's client (v2) address.
    pub client_addr: String,
    /// The groups it hosts.
    pub groups: Vec<GroupReport>,
    /// Queues per group of a topic the node creates on first use (0: it does not).
    pub auto_create_queues: u32,
}

/// The current view of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Raft group id.
    pub group: u64,
    /// Broker name.
    pub name: String,
    /// The leader, if one is known.
    pub leader: Option<u64>,
    /// The highest term reported.
    pub term: u64,
    /// Members' client addresses, the leader's first.
    pub endpoints: Vec<String>,
    /// Topics (from the leader's report when there is one).
    pub topics: Vec<TopicReport>,
    /// Consumer groups (likewise).
    pub consumer_groups: Vec<ConsumerGroupReport>,
}

/// One queue of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueue {
    /// Group (broker) name.
    pub broker: String,
    /// Queue id within the group.
    pub queue: u32,
    /// Where to send: the group's members, leader first.
    pub endpoints: Vec<String>,
    /// Topic kind.
    pub kind: String,
}

/// Live registrations.
#[derive(Debug, Clone)]
pub struct RouteTable {
    ttl_ms: u64,
    regs: BTreeMap<u64, (u64, Registration)>,
}

impl RouteTable {
    /// A table that forgets a node `ttl_ms` after its last registration.
    pub fn new(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            regs: BTreeMap::new(),
        }
    }

    /// Records a registration received at `now_ms`.
    pub fn register(&mut self, now_ms: u64, reg: Registration) {
        self.regs.insert(reg.node, (now_ms, reg));
    }

    /// Drops registrations older than the TTL.
    pub fn expire(&mut self, now_ms: u64) {
        let ttl = self.ttl_ms;
        self.regs
            .retain(|_, (at, _)| now_ms.saturating_sub(*at) <= ttl);
    }

    fn live(&self, now_ms: u64) -> impl Iterator<Item = &Registration> {
        self.regs
            .values()
            .filter(move |(at, _)| now_ms.saturating_sub(*at) <= self.ttl_ms)
            .map(|(_, r)| r)
    }

    /// Live nodes: (node id, client address).
    pub fn nodes(&self, now_ms: u64) -> Vec<(u64, String)> {
        self.live(now_ms)
            .map(|r| (r.node, r.client_addr.clone()))
            .collect()
    }

    /// Every group some live node reports.
    pub fn groups(&self, now_ms: u64) -> Vec<GroupView> {
        let mut by_group: BTreeMap<u64, Vec<(u64, &GroupReport)>> = BTreeMap::new();
        let mut addrs: BTreeMap<u64, &str> = BTreeMap::new();
        for r in self.live(now_ms) {
            addrs.insert(r.node, &r.client_addr);
            for g in &r.groups {
                by_group.entry(g.group).or_default().push((r.node, g));
            }
        }
        by_group
            .into_iter()
            .map(|(group, reports)| {
                let term = reports.iter().map(|(_, g)| g.term).max().unwrap_or(0);
                let self_leader = reports
                    .iter()
                    .filter(|(_, g)| g.role == GroupRole::Leader)
                    .max_by_key(|(_, g)| g.term)
                    .map(|(n, _)| *n);
                let hinted = reports
                    .iter()
                    .filter(|(_, g)| g.term == term)
                    .filter_map(|(_, g)| g.leader)
                    .max();
                let leader = self_leader.or(hinted);
                // Topics and groups from the leader's replica, else the most current one.
                let source = reports
                    .iter()
                    .find(|(n, _)| Some(*n) == leader)
                    .or_else(|| reports.iter().max_by_key(|(_, g)| g.term))
                    .map(|(_, g)| *g)
                    .expect("at least one report");
                // Only members that are alive themselves: a dead node in a route costs clients
                // a failed attempt.
                let live: Vec<u64> = reports.iter().map(|(n, _)| *n).collect();
                // The leader's member list, else the most current one that knows any (a
                // replica still probing its peers knows none). Failing all, the nodes that
                // report the group: a route without endpoints fails every send of a client
                // that caches it (tests/cluster.rs, CI of stop 24).
                let listed = reports
                    .iter()
                    .filter(|(_, g)| !g.members.is_empty())
                    .max_by_key(|(n, g)| (Some(*n) == leader, g.term))
                    .map(|(_, g)| g.members.clone())
                    .unwrap_or_default();
                let mut members: Vec<(u64, String)> = listed
                    .into_iter()
                    .filter(|(n, a)| live.contains(n) && !a.is_empty())
                    .collect();
                if members.is_empty() {
                    members = live
                        .iter()
                        .filter_map(|n| addrs.get(n).map(|a| (*n, a.to_string())))
                        .filter(|(_, a)| !a.is_empty())
                        .collect();
                }
                members.sort_by_key(|(n, _)| (Some(*n) != leader, *n));
                GroupView {
                    group,
                    name: source.name.clone(),
                    leader,
                    term,
                    endpoints: members.into_iter().map(|(_, a)| a).collect(),
                    topics: source.topics.clone(),
                    consumer_groups: source.consumer_groups.clone(),
                }
            })
            .collect()
    }

    /// The route of `topic`: every queue of every group hosting it. A topic no group has yet
    /// gets a provisional route over the groups of nodes that create topics on first use (the
    /// broker creates it when the client sends or receives), as RocketMQ's auto-creation does.
    pub fn route(&self, now_ms: u64, topic: &str) -> Vec<RouteQueue> {
        let mut groups = self.groups(now_ms);
        groups.retain(|g| !g.endpoints.is_empty());
        let mut out = Vec::new();
        for g in &groups {
            if let Some(t) = g.topics.iter().find(|t| t.name == topic) {
                for q in 0..t.queues {
                    out.push(RouteQueue {
                        broker: g.name.clone(),
                        queue: q,
                        endpoints: g.endpoints.clone(),
                        kind: t.kind.clone(),
                    });
                }
            }
        }
        if out.is_empty() {
            let auto: Vec<(u64, u32)> = self
                .live(now_ms)
                .filter(|r| r.auto_create_queues > 0)
                .flat_map(|r| {
                    r.groups
                        .iter()
                        .map(move |g| (g.group, r.auto_create_queues))
                })
                .collect();
            for g in &groups {
                if let Some((_, queues)) = auto.iter().find(|(id, _)| *id == g.group) {
                    for q in 0..*queues {
                        out.push(RouteQueue {
                            broker: g.name.clone(),
                            queue: q,
                            endpoints: g.endpoints.clone(),
                            kind: "mixed".into(),
                        });
                    }
                }
            }
        }
        out
    }

    /// A consumer group's policy, from any group that knows it.
    pub fn consumer_group(&self, now_ms: u64, name: &str) -> Option<ConsumerGroupReport> {
        self.groups(now_ms)
            .into_iter()
            .find_map(|g| g.consumer_groups.into_iter().find(|c| c.name == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        node: u64,
        role: GroupRole,
        term: u64,
        leader: Option<u64>,
        queues: u32,
    ) -> Registration {
        Registration {
            node,
            client_addr: format!("10.0.0.{node}:8081"),
            groups: vec![GroupReport {
                group: 1,
                name: "g1".into(),
                role,
                term,
                leader,
                members: (1..=3).map(|n| (n, format!("10.0.0.{n}:8081"))).collect(),
                topics: vec![TopicReport {
                    name: "T".into(),
                    queues,
                    kind: "normal".into(),
                }],
                consumer_groups: vec![],
            }],
            auto_create_queues: 0,
        }
    }

    #[test]
    fn routes_point_at_the_leader_first_and_expire() {
        let mut t = RouteTable::new(3_000);
        t.register(0, report(1, GroupRole::Follower, 2, Some(2), 4));
        t.register(0, report(2, GroupRole::Leader, 2, Some(2), 4));
        t.register(0, report(3, GroupRole::Follower, 2, Some(2), 4));
        let r = t.route(1_000, "T");
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].endpoints[0], "10.0.0.2:8081");
        assert_eq!(r[0].endpoints.len(), 3);
        assert!(t.route(1_000, "Unknown").is_empty());

        // The leader dies: its registration expires; a new leader reports a higher term.
        t.register(3_500, report(1, GroupRole::Leader, 3, Some(1), 4));
        t.register(3_500, report(3, GroupRole::Follower, 3, Some(1), 4));
        t.expire(4_000);
        let g = t.groups(4_000);
        assert_eq!(g[0].leader, Some(1));
        assert_eq!(g[0].endpoints[0], "10.0.0.1:8081");
        assert_eq!(t.nodes(4_000).len(), 2);
    }

    #[test]
    fn a_route_never_has_an_empty_endpoint_list() {
        let mut t = RouteTable::new(3_000);
        // Every replica still probes its peers: none knows the membership yet.
        for n in 1..=3 {
            let mut r = report(n, GroupRole::Other, 0, None, 4);
            r.groups[0].members.clear();
            t.register(0, r);
        }
        let r = t.route(0, "T");
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|q| q.endpoints.len() == 3), "{r:?}");
        // One replica has joined and knows the members; the others still probe.
        t.register(10, report(2, GroupRole::Follower, 1, None, 4));
        let g = t.groups(10);
        assert_eq!(g[0].endpoints.len(), 3);
        // A node's address unknown: it is left out rather than routed to as "".
        let mut r = report(1, GroupRole::Leader, 2, Some(1), 4);
        r.groups[0].members[2].1.clear();
        t.register(20, r);
        assert_eq!(
            t.groups(20)[0].endpoints,
            ["10.0.0.1:8081", "10.0.0.2:8081"]
        );
    }

    #[test]
    fn a_stale_self_proclaimed_leader_loses_to_a_higher_term() {
        let mut t = RouteTable::new(3_000);
        // Node 2 was cut off and still believes it leads term 2; nodes 1 and 3 elected 1 in term 3.
        t.register(0, report(2, GroupRole::Leader, 2, Some(2), 4));
        t.register(0, report(1, GroupRole::Leader, 3, Some(1), 4));
        t.register(0, report(3, GroupRole::Follower, 3, Some(1), 4));
        assert_eq!(t.groups(0)[0].leader, Some(1));
    }
}
