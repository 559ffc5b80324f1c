//! The directory in Redis (or Valkey): one key per stream that has an owner, one per
//! live node, each with a lease (a TTL). Claims, refreshes and releases are Lua
//! scripts, so that two nodes racing for a name get exactly one winner and a node
//! can refresh or delete only the claim it holds (a blind refresh lets a stale owner
//! overwrite a newer one, as OvenMediaEngine's origin map once did).
//!
//! Every call has a deadline: a Redis that does not answer is the same as one that
//! is down, and the caller decides what that means (running media is never
//! touched by it).

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

/// What a stream's key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The owner node's id.
    pub node: String,
    /// The owner's base URL (where relays POST).
    pub url: String,
    /// When the claim was made, in microseconds of Redis's clock: unique per claim
    /// and increasing, so the newer owner is the one with the higher epoch. A string,
    /// since Lua's numbers would round it.
    pub epoch: String,
    /// Whether the owner's source sends now; a stream that is not live (its
    /// publisher silent or gone, in its grace period) may be claimed by another node.
    pub live: bool,
}

impl ClaimRecord {
    /// The owner's WHEP endpoint of `stream`.
    pub fn whep_url(&self, stream: &str) -> String {
        format!("{}/whep/{stream}", self.url.trim_end_matches('/'))
    }
}

/// What a node's key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// `serving`, or `draining` while it shuts down.
    pub state: String,
    /// The streams it owns.
    pub streams: Vec<String>,
    /// The streams it relays from other nodes.
    pub relays: Vec<String>,
    /// Its viewer sessions.
    pub viewers: u64,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// The name was free (or its owner dead, or not live): this node owns it now.
    Won { epoch: String },
    /// This node owned it already (a publisher reconnecting here).
    Own { epoch: String },
    /// Another live node owns it; its lease has `ttl_left` to run.
    Held { node: String, ttl_left: Duration },
}

/// The answer to a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refreshed {
    /// Still ours, extended.
    Kept,
    /// The key was gone (it expired while Redis was unreachable, or Redis lost it)
    /// and nobody else claimed it: written again with the same epoch.
    Recreated,
    /// Another node claimed it meanwhile.
    Lost { node: String },
    /// This node's own claim under another epoch: a claim whose answer never came
    /// back (it timed out while Redis was stopped, and Redis ran it when it resumed).
    /// Still this node's; extended, and its epoch is the one held from now on.
    Adopted { epoch: String },
}

/// Why the directory could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the directory (Redis) is unreachable: {0}")]
pub struct Unreachable(pub String);

const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
local last = ''
if cur then
  local c = cjson.decode(cur)
  if c.node == ARGV[1] then
    c.live = true
    c.url = ARGV[2]
    redis.call('SET', KEYS[1], cjson.encode(c), 'PX', ARGV[3])
    return {'own', c.epoch}
  end
  if c.live and redis.call('EXISTS', ARGV[4] .. c.node) == 1 then
    return {'held', c.node, tostring(redis.call('PTTL', KEYS[1]))}
  end
  last = c.epoch
end
local t = redis.call('TIME')
local epoch = t[1] .. string.format('%06d', tonumber(t[2]))
if #last > #epoch or (#last == #epoch and last >= epoch) then
  epoch = tostring(tonumber(last) + 1)
end
redis.call('SET', KEYS[1], cjson.encode({node = ARGV[1], url = ARGV[2], epoch = epoch, live = true}), 'PX', ARGV[3])
return {'won', epoch}
"#;

const REFRESH: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = cjson.decode(cur)
  if c.node ~= ARGV[1] then
    return {'lost', c.node}
  end
  if c.epoch ~= ARGV[4] then
    c.url = ARGV[2]
    c.live = (ARGV[5] == '1')
    redis.call('SET', KEYS[1], cjson.encode(c), 'PX', ARGV[3])
    return {'adopted', c.epoch}
  end
end
redis.call('SET', KEYS[1], cjson.encode({node = ARGV[1], url = ARGV[2], epoch = ARGV[4], live = (ARGV[5] == '1')}), 'PX', ARGV[3])
if cur then return {'kept'} end
return {'recreated'}
"#;

const RELEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = cjson.decode(cur)
  if c.node == ARGV[1] and c.epoch == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
"#;

/// A stream's claim, only while its owner node is alive.
const LOOKUP: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local c = cjson.decode(cur)
if redis.call('EXISTS', ARGV[1] .. c.node) == 0 then return false end
return cur
"#;

/// The directory's client.
pub(crate) struct Store {
    client: redis::Client,
    /// Made at the first call that reaches Redis, then reconnecting by itself.
    conn: Mutex<Option<ConnectionManager>>,
    /// `wishd:{cluster}:`.
    prefix: String,
    /// The deadline of each call.
    deadline: Duration,
    claim: redis::Script,
    refresh: redis::Script,
    release: redis::Script,
    lookup: redis::Script,
}

impl Store {
    /// A client of the Redis at `url`, for the cluster `name`; calls give up after
    /// `deadline`. Nothing is connected yet.
    pub(crate) fn new(url: &str, name: &str, deadline: Duration) -> Result<Store, String> {
        let client = redis::Client::open(url).map_err(|e| format!("cluster.redis: {e}"))?;
        Ok(Store {
            client,
            conn: Mutex::new(None),
            prefix: format!("wishd:{name}:"),
            deadline,
            claim: redis::Script::new(CLAIM),
            refresh: redis::Script::new(REFRESH),
            release: redis::Script::new(RELEASE),
            lookup: redis::Script::new(LOOKUP),
        })
    }

    fn stream_key(&self, stream: &str) -> String {
        format!("{}stream:{stream}", self.prefix)
    }

    fn node_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }

    async fn conn(&self) -> Result<ConnectionManager, Unreachable> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.deadline))
            .set_response_timeout(Some(self.deadline))
            .set_number_of_retries(1)
            .set_max_delay(self.deadline);
        let made = tokio::time::timeout(
            self.deadline,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| Unreachable("no answer".into()))?
        .map_err(|e| Unreachable(e.to_string()))?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(made.clone());
        Ok(made)
    }

    /// Runs `f` on a connection within the deadline. After a failure the next call
    /// starts from a new connection, rather than wait for the old one's own
    /// reconnection schedule.
    async fn call<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Result<T, Unreachable>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let failed = match tokio::time::timeout(self.deadline, f(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => Unreachable(e.to_string()),
            Err(_) => Unreachable("no answer".into()),
        };
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Err(failed)
    }

    /// Claims `stream` for `node` (reachable at `url`) with a lease of `ttl`.
    pub(crate) async fn claim(
        &self,
        stream: &str,
        node: &str,
        url: &str,
        ttl: Duration,
    ) -> Result<Claimed, Unreachable> {
        let key = self.stream_key(stream);
        let nodes = self.node_prefix();
        let reply: Vec<String> = self
            .call(|mut c| async move {
                self.claim
                    .key(key)
                    .arg(node)
                    .arg(url)
                    .arg(ttl.as_millis() as u64)
                    .arg(nodes)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [w, epoch] if w == "won" => Ok(Claimed::Won {
                epoch: epoch.clone(),
            }),
            [o, epoch] if o == "own" => Ok(Claimed::Own {
                epoch: epoch.clone(),
            }),
            [h, node, ms] if h == "held" => Ok(Claimed::Held {
                node: node.clone(),
                ttl_left: Duration::from_millis(ms.parse::<i64>().unwrap_or(0).max(0) as u64),
            }),
            other => Err(Unreachable(format!("unexpected claim reply {other:?}"))),
        }
    }

    /// Extends this node's claim of `stream` (epoch `epoch`), saying whether it is
    /// `live`.
    pub(crate) async fn refresh(
        &self,
        stream: &str,
        node: &str,
        url: &str,
        epoch: &str,
        live: bool,
        ttl: Duration,
    ) -> Result<Refreshed, Unreachable> {
        let key = self.stream_key(stream);
        let reply: Vec<String> = self
            .call(|mut c| async move {
                self.refresh
                    .key(key)
                    .arg(node)
                    .arg(url)
                    .arg(ttl.as_millis() as u64)
                    .arg(epoch)
                    .arg(if live { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [k] if k == "kept" => Ok(Refreshed::Kept),
            [r] if r == "recreated" => Ok(Refreshed::Recreated),
            [l, node] if l == "lost" => Ok(Refreshed::Lost { node: node.clone() }),
            [a, epoch] if a == "adopted" => Ok(Refreshed::Adopted {
                epoch: epoch.clone(),
            }),
            other => Err(Unreachable(format!("unexpected refresh reply {other:?}"))),
        }
    }

    /// Deletes this node's claim of `stream`, if it still holds it.
    pub(crate) async fn release(
        &self,
        stream: &str,
        node: &str,
        epoch: &str,
    ) -> Result<(), Unreachable> {
        let key = self.stream_key(stream);
        let _: i64 = self
            .call(|mut c| async move {
                self.release
                    .key(key)
                    .arg(node)
                    .arg(epoch)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Who owns `stream`, if a live node does.
    pub(crate) async fn lookup(&self, stream: &str) -> Result<Option<ClaimRecord>, Unreachable> {
        let key = self.stream_key(stream);
        let nodes = self.node_prefix();
        let reply: Option<String> = self
            .call(|mut c| async move { self.lookup.key(key).arg(nodes).invoke_async(&mut c).await })
            .await?;
        Ok(reply.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Writes this node's record with a lease of `ttl`.
    pub(crate) async fn heartbeat(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> Result<(), Unreachable> {
        let key = format!("{}{}", self.node_prefix(), node.id);
        let value = serde_json::to_string(node).unwrap_or_default();
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Deletes this node's record (it stops).
    pub(crate) async fn leave(&self, node: &str) -> Result<(), Unreachable> {
        let key = format!("{}{node}", self.node_prefix());
        self.call(|mut c| async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await })
            .await
    }

    /// Every value under `{prefix}{kind}:*`, with its key's last part.
    async fn all(&self, kind: &str) -> Result<Vec<(String, String)>, Unreachable> {
        let pattern = format!("{}{kind}:*", self.prefix);
        let strip = format!("{}{kind}:", self.prefix);
        self.call(|mut c| async move {
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(200)
                    .query_async(&mut c)
                    .await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
            Ok(keys
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k.strip_prefix(&strip)?.to_owned(), v?)))
                .collect())
        })
        .await
    }

    /// Every live node's record.
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeRecord>, Unreachable> {
        Ok(self
            .all("node")
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect())
    }

    /// Every claim, by stream name (owners alive or not: the lease says).
    pub(crate) async fn claims(&self) -> Result<Vec<(String, ClaimRecord)>, Unreachable> {
        Ok(self
            .all("stream")
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
            .collect())
    }
}
