//! One connection type for both deployments: a `ConnectionManager` to one server, or the
//! `cluster-async` client's connection to a Redis Cluster (which routes each command and script by
//! its first key's slot and follows MOVED / ASK redirections).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The cluster client for comma-separated node URLs: no internal retries (a dead master must
/// fail the call fast so the durable copy serves), the same connect and response timeouts as a
/// single server.
pub(super) fn cluster_client(urls: &str, connect: Duration, response: Duration) -> RedisResult<ClusterClient> {
    let nodes: Vec<&str> = urls.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    ClusterClient::builder(nodes).connection_timeout(connect).response_timeout(response).retries(0).build()
}
