"""The state database's schema, as the migrations that make it: ``_MIGRATIONS[v]`` brings a
database from ``user_version`` v to v + 1."""

SCHEMA_VERSION = 3

_V1 = (
    """CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        blueprint TEXT NOT NULL,
        model TEXT NOT NULL,
        inputs TEXT NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        outputs TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE instances (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        node TEXT NOT NULL,
        state TEXT NOT NULL,
        attributes TEXT NOT NULL,
        PRIMARY KEY (deployment, id)
    ) WITHOUT ROWID""",
    # AUTOINCREMENT: an id, once handed out, never names another run, operation or event (log
    # files and followers polling by id outlive a deleted-then-recreated deployment)
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        action TEXT NOT NULL,
        workflow TEXT,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        pid INTEGER NOT NULL,
        UNIQUE (id, deployment)
    )""",
    "CREATE INDEX runs_by_deployment ON runs (deployment, status)",
    """CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        step TEXT NOT NULL,
        node TEXT NOT NULL,
        instance TEXT NOT NULL,
        interface TEXT NOT NULL,
        operation TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        rc INTEGER,
        started REAL NOT NULL,
        ended REAL,
        outputs TEXT NOT NULL,
        stdout_tail TEXT NOT NULL,
        stderr_tail TEXT NOT NULL,
        message TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        FOREIGN KEY (run_id, deployment) REFERENCES runs (id, deployment) ON DELETE CASCADE
    )""",
    "CREATE INDEX operations_by_run ON operations (run_id, deployment, status)",
    "CREATE INDEX operations_by_deployment ON operations (deployment, id)",
    """CREATE TABLE done_steps (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        plan_kind TEXT NOT NULL,
        step TEXT NOT NULL,
        time REAL NOT NULL,
        PRIMARY KEY (deployment, plan_kind, step)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        run_id INTEGER,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        node TEXT,
        instance TEXT,
        step TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_by_deployment ON events (deployment, id)",
    """CREATE TABLE blobs (
        sha TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
)
_V2 = (
    # one row per execution of a job (a workflow run twice gives two rows): the job's id is
    # written with its submit's record, so a crash right after never loses a running job
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        instance TEXT NOT NULL,
        node TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        submit_op INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL,
        submitted REAL NOT NULL,
        ended REAL
    )""",
    "CREATE INDEX jobs_by_instance ON jobs (deployment, instance, id)",
)
_V3 = (
    # who holds a deployment's lock (the lock itself is a byte of this file: see lock.py)
    """CREATE TABLE holders (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        action TEXT NOT NULL,
        since TEXT NOT NULL
    ) WITHOUT ROWID""",
    # attributes of relationship instances ('web/0->db/0:database'), as instances have theirs
    """CREATE TABLE links (
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        id TEXT NOT NULL,
        attributes TEXT NOT NULL,
        PRIMARY KEY (deployment, id)
    ) WITHOUT ROWID""",
    # where a running operation's command runs ({"pgid": ..., "token": ...}), written as soon
    # as it started, so that a run after a crash finds what survived the orch that started it
    "ALTER TABLE operations ADD COLUMN process TEXT NOT NULL DEFAULT '{}'",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
"""``_MIGRATIONS[v]`` brings a database from ``user_version`` v to v + 1."""
