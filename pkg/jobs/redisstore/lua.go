package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts of RedisStore. Each runs atomically in Redis, so replicas
// applying events, cancelling and expiring the same job concurrently cannot
// break "the first final state wins". They mirror the Go reference
// (jobs.ApplyEvent, jobs.ReplayOutcome, jobs.Visible, boltstore): the
// contract suite (jobstest) runs against both stores.
//
// A job is a hash (fields below); times are Unix nanoseconds as decimal
// strings, compared exactly as strings (numgt) rather than as Lua numbers,
// which are doubles and would round them. Scores in the sorted sets are
// Unix microseconds (exact in a double).
//
// The scripts build the keys of other jobs and of idempotency keys from
// prefixes passed in ARGV, so they need a single Redis (or Sentinel), not
// Redis Cluster.

// luaPrelude holds the helpers every script shares.
const luaPrelude = `
local function tomap(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function is_final(s)
  return s == "succeeded" or s == "failed" or s == "expired" or s == "cancelled"
end
-- a > b for non-negative decimal integers without leading zeros
local function numgt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
-- visible: not final, or finished after cutoff (= now - ttl)
local function visible(m, cutoff)
  if not is_final(m.status) or not m.finished then return true end
  return numgt(m.finished, cutoff)
end
-- finalise: the bookkeeping every path to a final state shares
local function finalise(jobkey, id, m, unpub, startby, channel, idemprefix, ttlms)
  redis.call("ZREM", unpub, id)
  redis.call("ZREM", startby, id)
  redis.call("PEXPIRE", jobkey, ttlms)
  if m.idem and m.idem ~= "" then
    redis.call("PEXPIRE", idemprefix .. m.idem, ttlms)
  end
  redis.call("PUBLISH", channel, id)
end
`

// luaCreate: KEYS job, idem, unpublished, start_by.
// ARGV id, cutoff_ns, job key prefix, has_idem ("1"/"0"), created_us,
// start_by_us ("" = none), then field/value pairs of the new hash.
// Returns {0} created, {1, existing hash} the key's job, {2} id exists.
var luaCreate = redis.NewScript(luaPrelude + `
if ARGV[4] == "1" then
  local old = redis.call("GET", KEYS[2])
  if old then
    local flat = redis.call("HGETALL", ARGV[3] .. old)
    if #flat > 0 and visible(tomap(flat), ARGV[2]) then return {1, flat} end
  end
end
if redis.call("EXISTS", KEYS[1]) == 1 then return {2} end
redis.call("HSET", KEYS[1], unpack(ARGV, 7))
if ARGV[4] == "1" then redis.call("SET", KEYS[2], ARGV[1]) end
redis.call("ZADD", KEYS[3], ARGV[5], ARGV[1])
if ARGV[6] ~= "" then redis.call("ZADD", KEYS[4], ARGV[6], ARGV[1]) end
return {0}
`)

// luaMarkPublished: KEYS job, unpublished. ARGV id. Returns 0 not found, 1.
var luaMarkPublished = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
if redis.call("HGET", KEYS[1], "published") ~= "1" then
  redis.call("HSET", KEYS[1], "published", "1")
  redis.call("ZREM", KEYS[2], ARGV[1])
end
return 1
`)

// luaApply: KEYS job, unpublished, start_by, channel, dead.
// ARGV id, cutoff_ns, ttl_ms, idem key prefix, type, status, at_ns, attempt,
// worker, result ("" none), error JSON ("" none), dead letter ("1"/"0": the
// final event makes it one, jobs.IsDeadLetter), at_us, started_ns of a final
// event ("" none).
// Returns {0} not found, {1, changed (0/1), hash after}.
var luaApply = redis.NewScript(luaPrelude + `
local flat = redis.call("HGETALL", KEYS[1])
if #flat == 0 then return {0} end
local m = tomap(flat)
if not visible(m, ARGV[2]) then return {0} end
if is_final(m.status) then return {1, 0, flat} end
local attempt = tonumber(ARGV[8])
local cur = tonumber(m.attempts or "0")
local worker = ARGV[9]
local set = {}
local function put(f, v) set[#set + 1] = f; set[#set + 1] = v end
if ARGV[5] == "running" then
  if m.status ~= "running" then put("status", "running") end
  if not m.started then put("started", ARGV[7]) end
  if worker ~= "" and attempt >= cur and m.worker ~= worker then put("worker", worker) end
  if attempt > cur then put("attempts", tostring(attempt)) end
  if m.published ~= "1" then
    put("published", "1")
    redis.call("ZREM", KEYS[2], ARGV[1])
  end
  redis.call("ZREM", KEYS[3], ARGV[1])
  if #set == 0 then return {1, 0, flat} end
  redis.call("HSET", KEYS[1], unpack(set))
  return {1, 1, redis.call("HGETALL", KEYS[1])}
end
put("status", ARGV[6])
put("finished", ARGV[7])
if not m.started and ARGV[14] ~= "" then put("started", ARGV[14]) end
put("published", "1")
if attempt > cur then put("attempts", tostring(attempt)) end
if worker ~= "" then put("worker", worker) end
redis.call("HDEL", KEYS[1], "result", "error")
if ARGV[10] ~= "" then put("result", ARGV[10]) end
if ARGV[11] ~= "" then put("error", ARGV[11]) end
redis.call("HSET", KEYS[1], unpack(set))
finalise(KEYS[1], ARGV[1], m, KEYS[2], KEYS[3], KEYS[4], ARGV[4], ARGV[3])
if ARGV[12] == "1" then redis.call("ZADD", KEYS[5], ARGV[13], ARGV[1]) end
return {1, 1, redis.call("HGETALL", KEYS[1])}
`)

// luaReplay: KEYS job, unpublished, start_by, dead.
// ARGV id, expected finished_ns (the dead letter the caller read), idem key
// prefix, created_us, start_by_us ("" = none), then field/value pairs to set.
// Returns {0} not found, {1, hash after} replayed, {2, hash} changed since
// read (the caller re-reads).
var luaReplay = redis.NewScript(luaPrelude + `
local flat = redis.call("HGETALL", KEYS[1])
if #flat == 0 then return {0} end
local m = tomap(flat)
if m.status ~= "failed" or m.finished ~= ARGV[2] then return {2, flat} end
redis.call("HDEL", KEYS[1], "started", "finished", "result", "error", "worker", "start_by")
redis.call("HSET", KEYS[1], unpack(ARGV, 6))
redis.call("PERSIST", KEYS[1])
if m.idem and m.idem ~= "" and redis.call("GET", ARGV[3] .. m.idem) == ARGV[1] then
  redis.call("PERSIST", ARGV[3] .. m.idem)
end
redis.call("ZADD", KEYS[2], ARGV[4], ARGV[1])
if ARGV[5] ~= "" then redis.call("ZADD", KEYS[3], ARGV[5], ARGV[1]) end
redis.call("ZREM", KEYS[4], ARGV[1])
return {1, redis.call("HGETALL", KEYS[1])}
`)

// luaCancel: KEYS job, unpublished, start_by, channel.
// ARGV id, cutoff_ns, ttl_ms, idem key prefix, now_ns.
// Returns {0} not found, {1, hash after} cancelled, {2, hash} conflict.
var luaCancel = redis.NewScript(luaPrelude + `
local flat = redis.call("HGETALL", KEYS[1])
if #flat == 0 then return {0} end
local m = tomap(flat)
if not visible(m, ARGV[2]) then return {0} end
if m.status ~= "queued" then return {2, flat} end
redis.call("HSET", KEYS[1], "status", "cancelled", "finished", ARGV[5])
finalise(KEYS[1], ARGV[1], m, KEYS[2], KEYS[3], KEYS[4], ARGV[4], ARGV[3])
return {1, redis.call("HGETALL", KEYS[1])}
`)

// luaDelete: KEYS job, unpublished, start_by, channel, dead. ARGV id, idem key
// prefix. Returns 0 not found, 1 deleted.
var luaDelete = redis.NewScript(`
local idem = redis.call("HGET", KEYS[1], "idem")
if redis.call("DEL", KEYS[1]) == 0 then return 0 end
if idem and idem ~= "" and redis.call("GET", ARGV[2] .. idem) == ARGV[1] then
  redis.call("DEL", ARGV[2] .. idem)
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("PUBLISH", KEYS[4], ARGV[1])
return 1
`)

// luaExpireQueued: KEYS start_by, unpublished, channel.
// ARGV now_us, limit, job key prefix, idem key prefix, now_ns, ttl_ms,
// error JSON. Returns the ids it expired.
var luaExpireQueued = redis.NewScript(luaPrelude + `
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[3] .. id
  local flat = redis.call("HGETALL", k)
  local m = tomap(flat)
  if m.status ~= "queued" or not m.start_by then
    redis.call("ZREM", KEYS[1], id) -- stale entry
  elseif not numgt(m.start_by, ARGV[5]) then
    redis.call("HSET", k, "status", "expired", "finished", ARGV[5], "error", ARGV[7])
    finalise(k, id, m, KEYS[2], KEYS[1], KEYS[3], ARGV[4], ARGV[6])
    out[#out + 1] = id
  end
end
return out
`)

// allScripts are loaded into the script cache by OpenRedis.
var allScripts = []*redis.Script{luaCreate, luaMarkPublished, luaApply, luaCancel, luaDelete, luaExpireQueued, luaReplay}
