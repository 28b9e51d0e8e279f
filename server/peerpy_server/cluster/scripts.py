"""The cluster's Redis layout: one key builder (:class:`Keys`) and the Lua scripts.

Every key and channel lives under ``redis_prefix`` (``p`` below):

=====================  ====================================================
``p id:<id>``          ``"<instance> <token>"``, time to live ``alive_timeout``
``p ids``              sorted set: registered ids, scored by their expiry (ms)
``p q:<id>``           list: frames queued for an offline id
``p qs:<id>``          set: the senders of those frames (one EXPIRE each)
``p qb:<id>``          the bytes queued for that id
``p expiry``           sorted set: queued ids, scored by their queue's creation
``p epoch``            a random value set by the first instance after Redis starts
``p settling``         present while instances claim their ids again (Redis lost them)
``p inst:<instance>``  the channel of one instance (relayed batches)
``p room:<name>``      hash: member id -> ``"<instance> <metadata JSON>"``
``p rooms``            set: the names of rooms with a member (``max_rooms``)
``p rm:<instance>``    set: room and id joined by a newline, the members that instance holds
``p rinst``            sorted set: instances with room members, scored by
                       their expiry (ms), refreshed like the ids
=====================  ====================================================

:class:`Keys` is the only place the Python side builds them; :data:`ROUTE`
and :data:`SWEEP` build the per-id queue keys in Lua from the same prefix and
names.  Each script is atomic; their results are documented above each.
:class:`Lua` names them for the typed operations (:mod:`.ops`).  Pure: no I/O.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Final

import attrs

__all__ = [
    "CLAIM",
    "EPOCH",
    "PEERS",
    "REFRESH",
    "RELEASE",
    "ROOM_ALIVE",
    "ROOM_JOIN",
    "ROOM_LEAVE",
    "ROOM_LIST",
    "ROOM_SWEEP",
    "ROUTE",
    "SWEEP",
    "Keys",
    "Lua",
]


@attrs.frozen
class Keys:
    """The Redis keys and channels of one cluster (see the module docstring)."""

    prefix: str

    @property
    def ids(self) -> str:
        """The sorted set of registered ids."""
        return self.prefix + "ids"

    @property
    def expiry(self) -> str:
        """The sorted set of queued ids by queue creation time."""
        return self.prefix + "expiry"

    @property
    def channels(self) -> str:
        """What every instance's channel name starts with."""
        return self.prefix + "inst:"

    def channel(self, instance: str) -> str:
        """The channel ``instance`` subscribes to."""
        return self.prefix + "inst:" + instance

    def id(self, peer_id: str) -> str:
        """The registry entry of ``peer_id``."""
        return self.prefix + "id:" + peer_id

    def claim(self, peer_id: str) -> list[str]:
        """KEYS of :data:`CLAIM` for ``peer_id``."""
        p = self.prefix
        return [p + "id:" + peer_id, p + "q:" + peer_id, p + "qs:" + peer_id,
                p + "qb:" + peer_id, self.expiry, self.ids, *self.epoch()]  # fmt: skip

    def epoch(self) -> list[str]:
        """KEYS of :data:`EPOCH` (the epoch, the settling marker)."""
        return [self.prefix + "epoch", self.prefix + "settling"]

    def release(self, peer_id: str) -> list[str]:
        """KEYS of :data:`RELEASE` for ``peer_id``."""
        return [self.id(peer_id), self.ids]

    def refresh(self, peer_ids: list[str]) -> list[str]:
        """KEYS of :data:`REFRESH` for ``peer_ids``."""
        return [self.ids, *(self.id(peer_id) for peer_id in peer_ids)]

    def room(self, name: str) -> str:
        """The members of room ``name``."""
        return self.prefix + "room:" + name

    def room_join(self, name: str, instance: str) -> list[str]:
        """KEYS of :data:`ROOM_JOIN` (and :data:`ROOM_LEAVE`, which ignores the last)."""
        p = self.prefix
        return [p + "room:" + name, p + "rooms", p + "rm:" + instance, p + "rinst"]

    @property
    def room_sweep(self) -> list[str]:
        """KEYS of :data:`ROOM_SWEEP` (:data:`ROOM_ALIVE` uses the first)."""
        return [self.prefix + "rinst", self.prefix + "rooms"]


#: KEYS: id, q, qs, qb, expiry, ids, epoch, settling; ARGV: instance, token,
#: ttl ms, id, limit.  Returns {"taken"}, {"full"}, {"settling"} (a free id
#: while the instances claim their ids again after Redis lost them, see
#: :data:`EPOCH`) or {"ok", previous instance or "", queued frames}.
CLAIM: Final = """
local cur = redis.call('GET', KEYS[1])
local prev = ''
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if cur then
  local sp = string.find(cur, ' ', 1, true)
  if string.sub(cur, sp + 1) ~= ARGV[2] then return {'taken'} end
  prev = string.sub(cur, 1, sp - 1)
else
  if redis.call('EXISTS', KEYS[7]) == 0 or redis.call('EXISTS', KEYS[8]) == 1 then
    return {'settling'}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  if redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[5]) then return {'full'} end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[3]), ARGV[4])
local frames = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[4])
return {'ok', prev, frames}
"""

#: KEYS: id, ids; ARGV: instance, token, id.  Deletes the id if it is still ours.
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS: ids.  The registered ids (entries past their time to live dropped).
PEERS: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

#: KEYS: the ids set, then id keys; ARGV: instance, ttl ms, then one token
#: per id, then the ids.  Extends our ids, claims again those that vanished
#: (Redis restart); returns the indexes (1-based) of ids held by someone else.
REFRESH: Final = """
local lost = {}
local mine = ARGV[1] .. ' '
local n = #KEYS - 1
local t = redis.call('TIME')
local until_ = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
for i = 1, n do
  local key = KEYS[i + 1]
  local value = mine .. ARGV[i + 2]
  local cur = redis.call('GET', key)
  if cur == value or not cur then
    redis.call('SET', key, value, 'PX', ARGV[2])
    redis.call('ZADD', KEYS[1], until_, ARGV[i + 2 + n])
  else
    table.insert(lost, i)
  end
end
return lost
"""

#: KEYS: expiry; ARGV: key prefix, channel prefix, max messages, max bytes,
#: count, then dst, frame, src, mode for each message.  mode "r": relay,
#: queue if offline; "n": relay, drop if offline (LEAVE, EXPIRE); "q": queue
#: only.  The messages for one instance go out as one PUBLISH of entries
#: ``<mode><len>:<dst><len>:<frame>`` (lengths in bytes); those for a dead
#: instance (no subscriber) are queued.  Returns one result per message: the
#: owner instance (published to it), 2 queued, 3 queue full (sender
#: recorded), 0 dropped.
ROUTE: Final = """
local p, chan = ARGV[1], ARGV[2]
local maxm, maxb = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local results, groups, order = {}, {}, {}
local now = nil
local function enqueue(i, dst, frame, src)
  local q, qs, qb = p .. 'q:' .. dst, p .. 'qs:' .. dst, p .. 'qb:' .. dst
  if redis.call('EXISTS', qs) == 0 then
    if not now then
      local t = redis.call('TIME')
      now = t[1] * 1000 + math.floor(t[2] / 1000)
    end
    redis.call('ZADD', KEYS[1], 'NX', now, dst)
  end
  redis.call('SADD', qs, src)
  local size = tonumber(redis.call('GET', qb) or '0')
  if redis.call('LLEN', q) < maxm and size + #frame <= maxb then
    redis.call('RPUSH', q, frame)
    redis.call('INCRBY', qb, #frame)
    results[i] = 2
  else
    results[i] = 3
  end
end
for i = 1, n do
  local b = 5 + (i - 1) * 4
  local dst, frame, src, mode = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  results[i] = 0
  local owner = nil
  if mode ~= 'q' then
    local cur = redis.call('GET', p .. 'id:' .. dst)
    if cur then owner = string.sub(cur, 1, string.find(cur, ' ', 1, true) - 1) end
  end
  if owner then
    local g = groups[owner]
    if not g then
      g = {entries = {}, idx = {}}
      groups[owner] = g
      table.insert(order, owner)
    end
    table.insert(g.entries, mode .. #dst .. ':' .. dst .. #frame .. ':' .. frame)
    table.insert(g.idx, i)
    results[i] = owner
  elseif mode ~= 'n' then
    enqueue(i, dst, frame, src)
  end
end
for _, owner in ipairs(order) do
  local g = groups[owner]
  if redis.call('PUBLISH', chan .. owner, table.concat(g.entries)) == 0 then
    for _, i in ipairs(g.idx) do
      local b = 5 + (i - 1) * 4
      if ARGV[b + 4] == 'r' then
        enqueue(i, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
      else
        results[i] = 0
      end
    end
  end
end
return results
"""

#: KEYS: epoch, settling; ARGV: a new epoch, the epoch this instance saw last
#: ("" if none), settling ms.  The first instance after Redis started sets
#: the epoch; an instance that had seen another one knows Redis lost its data
#: and starts the settling window (new ids refused while every instance claims
#: its own again).  Returns the epoch.
EPOCH: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local cur = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' and cur ~= ARGV[2] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX')
end
return cur
"""

#: KEYS: expiry; ARGV: expire ms, limit, key prefix.  Pops the queues older
#: than expire ms (Redis' clock); returns {dst, {senders}, dst, {senders}, ...}.
SWEEP: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, dst in ipairs(due) do
  local p = ARGV[3]
  table.insert(out, dst)
  table.insert(out, redis.call('SMEMBERS', p .. 'qs:' .. dst))
  redis.call('DEL', p .. 'q:' .. dst, p .. 'qs:' .. dst, p .. 'qb:' .. dst)
  redis.call('ZREM', KEYS[1], dst)
end
return out
"""

#: KEYS: room, rooms, rm:<instance>, rinst; ARGV: instance, id, metadata JSON,
#: max members, max rooms (0: no bound), room name, ttl ms.  Adds the member
#: (or updates its metadata) unless the room is full or a new room would pass
#: max rooms; marks the instance alive.  Returns {"room-full"},
#: {"room-limit"} or {"ok", {id, "<instance> <metadata>", ...}} (every member).
ROOM_JOIN: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  local n = redis.call('HLEN', KEYS[1])
  if n == 0 then
    local most = tonumber(ARGV[5])
    if most > 0 and redis.call('SCARD', KEYS[2]) >= most then return {'room-limit'} end
  elseif tonumber(ARGV[4]) > 0 and n >= tonumber(ARGV[4]) then
    return {'room-full'}
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1] .. ' ' .. ARGV[3])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('SADD', KEYS[3], ARGV[6] .. '\\n' .. ARGV[2])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[4], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[7]), ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

#: KEYS: room, rooms, rm:<instance>; ARGV: instance, id, room name.  Removes
#: the member if this instance holds it; returns the remaining ids, or nil if
#: it was not a member here (e.g. it joined again through another instance).
ROOM_LEAVE: Final = """
redis.call('SREM', KEYS[3], ARGV[3] .. '\\n' .. ARGV[2])
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then return false end
redis.call('HDEL', KEYS[1], ARGV[2])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
  return {}
end
return redis.call('HKEYS', KEYS[1])
"""

#: KEYS: room.  The member ids.
ROOM_LIST: Final = """
return redis.call('HKEYS', KEYS[1])
"""

#: KEYS: rinst; ARGV: instance, ttl ms.  This instance is alive for ttl more.
ROOM_ALIVE: Final = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), ARGV[1])
"""

#: KEYS: rinst, rooms; ARGV: key prefix, most instances.  Removes the members
#: held by instances past their expiry (killed brokers); returns
#: {room, id, {remaining ids}, ...} for the notices.
ROOM_SWEEP: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, inst in ipairs(dead) do
  local set = ARGV[1] .. 'rm:' .. inst
  for _, e in ipairs(redis.call('SMEMBERS', set)) do
    local nl = string.find(e, '\\n', 1, true)
    local room, id = string.sub(e, 1, nl - 1), string.sub(e, nl + 1)
    local key = ARGV[1] .. 'room:' .. room
    local cur = redis.call('HGET', key, id)
    if cur and string.sub(cur, 1, #inst + 1) == inst .. ' ' then
      redis.call('HDEL', key, id)
      if redis.call('HLEN', key) == 0 then redis.call('SREM', KEYS[2], room) end
      table.insert(out, room)
      table.insert(out, id)
      table.insert(out, redis.call('HKEYS', key))
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], inst)
end
return out
"""


class Lua(enum.Enum):
    """The scripts, as named by the operations (:class:`.ops.Eval`)."""

    CLAIM = CLAIM
    RELEASE = RELEASE
    PEERS = PEERS
    REFRESH = REFRESH
    ROUTE = ROUTE
    SWEEP = SWEEP
    EPOCH = EPOCH
    ROOM_JOIN = ROOM_JOIN
    ROOM_LEAVE = ROOM_LEAVE
    ROOM_LIST = ROOM_LIST
    ROOM_ALIVE = ROOM_ALIVE
    ROOM_SWEEP = ROOM_SWEEP

    @property
    def sha(self) -> str:
        """The SHA1 Redis knows the script by (``EVALSHA``)."""
        return _SHAS[self]


_SHAS: Final = {script: hashlib.sha1(script.value.encode()).hexdigest() for script in Lua}
