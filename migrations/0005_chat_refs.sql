-- What a chat adapter owns for an object, so it can be edited again after a
-- restart: an approval's card, an environment's status thread.
CREATE TABLE chat_refs (
    kind     TEXT NOT NULL,      -- 'approval_card', 'env_thread'
    key      INTEGER NOT NULL,   -- the approval's or environment's id
    platform TEXT NOT NULL,
    value    TEXT NOT NULL,      -- JSON: a MessageRef, or a thread's id
    PRIMARY KEY (kind, key, platform)
);
