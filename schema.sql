-- The idns database: the one definition of its tables. src/store/database.ts applies this file to a new
-- database and records the version below in PRAGMA user_version; a later version adds a migration there.
-- schema-version: 6
--
-- Private keys never live here: they sit in the key directory beside the database (files mode 0600).

-- Every zone this server holds, as primary or secondary.
CREATE TABLE zones (
  name         TEXT PRIMARY KEY,            -- '.' for the root, else the normalised domain name
  role         TEXT NOT NULL CHECK (role IN ('primary', 'secondary')),
  version      INTEGER NOT NULL,            -- change counter, never wraps; serial = version mod 2^32
  policy       TEXT NOT NULL CHECK (policy IN ('open', 'invite', 'closed')),
  settings     TEXT NOT NULL,               -- JSON: servers, timers, TTLs, signing windows (src/authority/settings.ts)
  salt         TEXT NOT NULL,               -- denial hash salt
  digest_state BLOB NOT NULL,               -- LtHash state of every record below (src/records/digest.ts)
  record       TEXT NOT NULL,               -- the signed zone record (compact JWS) at this version
  record_exp   INTEGER NOT NULL,            -- its signature expiry, seconds
  content      TEXT NOT NULL,               -- id of the zone's records in `records` (see below)
  journal_floor INTEGER NOT NULL DEFAULT 0, -- the journal holds every change after this version
  refreshed_at INTEGER,                     -- secondary: last successful check against a primary, ms
  created_at   INTEGER NOT NULL,
  checkpoint   TEXT NOT NULL DEFAULT '',    -- the signed checkpoint of the zone's log at this version (C2SP signed note, src/transparency/zone-log.ts); '' before the log exists
  history_pending INTEGER NOT NULL DEFAULT 0 -- an upgrade the primary has still to sign: 1 after schema 3 (add the history to the digest, then 2's work), 2 after schema 4 (re-sign handle records to name genesis and seq)
) STRICT;

-- The zone's content: every signed record except the zone record, exactly as served and transferred.
-- Rows belong to a content id rather than a zone name: a primary's content id is its zone name; a
-- secondary loads a full transfer under a new id and switches zones.content to it in one short
-- transaction, so a transfer of any size is applied atomically and the old copy is dropped afterwards.
CREATE TABLE records (
  content TEXT NOT NULL,
  type    TEXT NOT NULL CHECK (type IN ('handle', 'delegation', 'denial', 'op')),
  key     TEXT NOT NULL,                    -- handle | child zone name | gap start hash ('' = start of the space) | handle '#' seq (op)
  version INTEGER NOT NULL,                 -- zone version at which this record was written
  exp     INTEGER NOT NULL,                 -- signature expiry, seconds (drives re-signing); HISTORY_EXP for op entries, which are never re-signed
  jws     TEXT NOT NULL,
  endpoint TEXT,                            -- handle records: the record's `endpoint` (WebFinger by actor URL); else NULL
  leaf    INTEGER,                          -- history entries: the index of their leaf in the zone's log (log_nodes); else NULL
  PRIMARY KEY (content, type, key)
) STRICT, WITHOUT ROWID;
-- Signatures by expiry (re-signing, counts); history entries never expire and stay out of it.
CREATE INDEX records_by_exp ON records (content, exp) WHERE type != 'op';
CREATE INDEX records_by_endpoint ON records (endpoint) WHERE endpoint IS NOT NULL;

-- The compact form of each long history (one an answer does not carry whole, docs/protocol.md §6.5) and
-- the evidence answers carry made of it, kept up to date by the transaction that adds entries
-- (src/store/compact-histories.ts), so an answer reads one row instead of compacting the history.
CREATE TABLE compact_histories (
  content  TEXT NOT NULL,
  handle   TEXT NOT NULL,
  kept     TEXT NOT NULL,                   -- the numbers of the entries the compact form keeps, space-separated
  last     INTEGER NOT NULL,                -- the newest entry's number, with which the evidence ends
  evidence TEXT NOT NULL,                   -- JSON [[seq, jws], …]: the compact form's last entries within the evidence bounds
  PRIMARY KEY (content, handle)
) STRICT;

-- The zone's log (docs/protocol.md §13): an append-only Merkle tree (RFC 9162) over its changes, per content
-- id like the records. Only complete subtrees are kept, and of them only levels 0, 4, 8, …: a level in
-- between is recomputed from at most 8 nodes of the kept level below (src/store/log-nodes.ts), so a tree of
-- n leaves takes about 1.07 n rows.
CREATE TABLE log_nodes (
  content TEXT NOT NULL,
  level   INTEGER NOT NULL,                 -- height of the subtree: 0 for a leaf's hash
  idx     INTEGER NOT NULL,                 -- the subtree covers leaves idx·2^level … (idx + 1)·2^level − 1
  hash    BLOB NOT NULL,                    -- its Merkle tree hash, 32 bytes
  PRIMARY KEY (content, level, idx)
) STRICT, WITHOUT ROWID;

-- The zone's map (docs/protocol.md §13.6): a Merkle prefix tree over the records the zone holds now, whose
-- root each checkpoint states, stored as tiles: a row holds the nodes of the 5 levels below a node whose
-- depth is a multiple of 5 (src/store/map-nodes.ts: the tile's key, and the encoding of its nodes, each a
-- hash and, for a leaf, its key; src/transparency/zone-map.ts).
CREATE TABLE map_tiles (
  content  TEXT NOT NULL,
  tile     BLOB NOT NULL,                   -- its level (a byte), then the bits of its root's path
  nodes    BLOB NOT NULL,                   -- its nodes (map-nodes.ts encodeTile)
  PRIMARY KEY (content, tile)
) STRICT, WITHOUT ROWID;

-- This server as a witness of zones' logs (docs/protocol.md §14): per log (its checkpoints' origin), the
-- latest checkpoint it cosigned; and the evidence of each fork it met (two checkpoints no consistency
-- proof joins), after which it cosigns nothing more of that log.
CREATE TABLE witnessed (
  origin TEXT PRIMARY KEY,
  size   INTEGER NOT NULL,
  root   BLOB NOT NULL,
  note   TEXT NOT NULL                      -- the checkpoint as the log signed it
) STRICT;
-- The public keys of witnesses whose cosignatures this server serves with checkpoints, by the name they
-- cosign under (`idns-witness/<thumbprint>`): a resolver given the thumbprint checks the key against it.
CREATE TABLE witness_keys (
  name       TEXT PRIMARY KEY,
  public_key TEXT NOT NULL                  -- JSON: the public JWK
) STRICT;

-- Zones this server witnesses without copying them (`idns witness follow`): where to read the zone record,
-- and the keys of the newest one it verified (the zone's checkpoints must be signed by one of them).
CREATE TABLE witness_follows (
  zone    TEXT PRIMARY KEY,
  servers TEXT NOT NULL,                    -- JSON: server URLs of the zone
  keys    TEXT NOT NULL,                    -- JSON: the public JWKs the newest verified zone record lists
  serial  INTEGER NOT NULL,                 -- that zone record's serial
  ttl     INTEGER NOT NULL,                 -- and its ttl: it is read again once that long has passed
  checked_at INTEGER NOT NULL               -- ms: when the zone record was last read
) STRICT;
CREATE TABLE witness_forks (
  origin  TEXT NOT NULL,
  held    TEXT NOT NULL,                    -- the checkpoint cosigned before
  offered TEXT NOT NULL,                    -- the one that does not extend it
  proof   TEXT NOT NULL,                    -- JSON: the consistency proof offered with it (base64 hashes)
  why     TEXT NOT NULL,
  at      INTEGER NOT NULL                  -- ms
) STRICT;

-- Content ids no zone uses any more (replaced copies, interrupted transfers), deleted in small batches.
CREATE TABLE retired_content (
  content    TEXT PRIMARY KEY,
  retired_at INTEGER NOT NULL
) STRICT;

-- The change journal (like IXFR's): for each version, the records it put or deleted, in order.
CREATE TABLE journal (
  zone       TEXT NOT NULL REFERENCES zones (name) ON DELETE CASCADE,
  version    INTEGER NOT NULL,
  idx        INTEGER NOT NULL,
  action     TEXT NOT NULL CHECK (action IN ('put', 'del')),
  type       TEXT NOT NULL,
  key        TEXT NOT NULL,
  jws        TEXT,                          -- the new record for 'put', NULL for 'del'
  created_at INTEGER NOT NULL,
  PRIMARY KEY (zone, version, idx)
) STRICT, WITHOUT ROWID;

-- Single-use invite codes; only their hashes are kept, so a database copy reveals no usable code.
CREATE TABLE invites (
  code_hash  TEXT PRIMARY KEY,
  zone       TEXT NOT NULL REFERENCES zones (name) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  used_at    INTEGER,
  used_by    TEXT
) STRICT;
