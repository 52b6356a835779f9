//! Persistent state: accounts and profiles, gateways, the local dialing plan
//! and voicemail settings.
//!
//! One set of queries runs on SQLite (embedded default) and MySQL/MariaDB
//! (production, shared by several nodes) through sqlx's `Any` driver. Both
//! accept `?` placeholders; anything dialect-specific stays in the per-dialect
//! migrations under `migrations/`, which keep the same table and column names.
//!
//! `Any` only maps a few column types, which shapes the schema: every integer
//! (booleans as 0/1 included) is stored as a 64-bit integer and read as `i64`,
//! and MySQL text is VARCHAR (TEXT columns come back as bytes).

pub mod accounts;
pub mod answering;
pub mod avatars;
pub mod billing;
pub mod calls;
pub mod contact_uploads;
pub mod contacts;
pub mod dialplan;
pub mod did_pool;
pub mod error;
pub mod exchange_rates;
pub mod files;
pub mod gateways;
pub mod history;
pub mod joins;
pub mod location;
pub mod mailbox;
pub mod messages;
mod money_writer;
pub mod nodes;
mod outbox;
pub mod phone_signups;
pub mod plans;
pub mod presence;
pub mod presence_shares;
pub mod profiles_api;
pub mod push;
pub mod recordings;
pub mod sms;
pub mod username_signups;
mod validate;
pub mod voicemail;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection, Executor};

use crate::secrets::Secrets;

pub use accounts::{Account, AccountSettings, AccountTemplate, NewAccount};
pub use dialplan::DialplanEntry;
pub use error::{Result, StoreError};
pub use gateways::{Gateway, Transport};
pub use voicemail::VoicemailSettings;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
/// Longest wait for a MySQL/MariaDB connection, a new one included.
const MYSQL_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/mysql");
/// How long a node waits for another one to finish migrating.
const MIGRATE_LOCK_WAIT_SECS: i64 = 300;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, a file under the data directory.
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
}

impl Backend {
    /// The statement that begins a transaction holding the write lock from
    /// its start (`BEGIN IMMEDIATE` on SQLite; InnoDB locks rows as they are
    /// written): one that reads first on SQLite fails with SQLITE_BUSY if
    /// another connection commits meanwhile, instead of waiting.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::MySql => "BEGIN",
        }
    }

    /// The backend a connection URL selects: `sqlite:` or `mysql://` /
    /// `mariadb://`.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "mysql" | "mariadb" => Ok(Self::MySql),
            // Never echo the URL: it may carry a password.
            _ => Err(StoreError::Invalid(format!(
                "unsupported database URL scheme {scheme:?} (expected sqlite: or mysql://)"
            ))),
        }
    }
}

/// Handle to the database. Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// What the SIP path reads and writes per request (credentials, the
    /// batch writers of bindings, messages and call records). On SQLite a
    /// pool of its own with one connection: a commit through another
    /// connection empties every other connection's page cache, so with the
    /// writers and the readers on separate connections each read after a
    /// commit re-read its pages (117 % → 109 % of a core at 1,000 calls/s).
    /// On MySQL/MariaDB the same pool as `pool`.
    hot: AnyPool,
    backend: Backend,
    secrets: Arc<Secrets>,
    /// Started on first use (see [`location`]): writes concurrent
    /// registrations together.
    binding_writer: Arc<std::sync::OnceLock<location::BindingWriter>>,
    cdr_writer: Arc<std::sync::OnceLock<calls::CdrWriter>>,
    message_writer: Arc<std::sync::OnceLock<messages::MessageWriter>>,
    money_writer: Arc<std::sync::OnceLock<money_writer::MoneyWriter>>,
    /// How long the SIP path's reads and writes waited (see [`Store::sip_wait`]).
    sip_wait: Arc<crate::queue_wait::QueueWait>,
}

impl Store {
    /// Where the SIP path's database waits are recorded: credentials read
    /// for a challenge's answer, a binding written before its 200, a
    /// message stored before its 2xx or 202. The overload controller sheds
    /// new requests while even the shortest of these stays long.
    pub fn sip_wait(&self) -> Arc<crate::queue_wait::QueueWait> {
        self.sip_wait.clone()
    }

    /// One of the SIP path's database operations, its wait recorded.
    async fn sip_timed<T>(&self, op: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let done = op.await;
        self.sip_wait.observe(started.elapsed());
        done
    }

    /// Connects and brings the schema up to date.
    ///
    /// `sqlite:` URLs create the database file if it is missing (the URL may
    /// override this with its own `mode=`), turn on foreign keys and WAL.
    /// `sqlite::memory:` is accepted for experiments; it is held on a single
    /// connection because every new connection would see an empty database.
    /// `mysql://` and `mariadb://` URLs need the database to exist.
    ///
    /// `secrets` encrypts and decrypts SIP passwords; opening the same
    /// database with another key makes the stored ones unreadable.
    pub async fn open(url: &str, secrets: Arc<Secrets>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let (pool, hot) = match backend {
            Backend::Sqlite => open_sqlite(url).await?,
            Backend::MySql => {
                // Bounded waits: with the server gone, a request is refused
                // (503 + Retry-After) within seconds instead of hanging past
                // the client's transaction timeout (sqlx waits 30 s).
                let pool = AnyPoolOptions::new()
                    .acquire_timeout(MYSQL_ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let store = Self {
            pool,
            hot,
            backend,
            secrets,
            binding_writer: Arc::default(),
            sip_wait: Arc::default(),
            cdr_writer: Arc::default(),
            message_writer: Arc::default(),
            money_writer: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not yet applied; a no-op when up to date. On
    /// MySQL/MariaDB, nodes starting together take turns through a named
    /// server lock.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::MySql => self.migrate_mysql_locked().await?,
        }
        Ok(())
    }

    /// sqlx's migrator locks with `GET_LOCK(name, -1)`, which MariaDB
    /// answers with NULL at once (it has no "wait forever"), so on MariaDB
    /// concurrent migrators both apply the same version and one fails with a
    /// duplicate key or `Dirty`. Hold our own lock, with a finite wait, while
    /// the migrator runs. GET_LOCK is not replicated by Galera: there,
    /// migrate from one node before starting the others.
    async fn migrate_mysql_locked(&self) -> Result<()> {
        const LOCK_NAME: &str = "LEFT(CONCAT('softswitch_migrate.', DATABASE()), 64)";
        // Detached: the session, and with it any lock it still holds, ends
        // when this connection is dropped instead of living on in the pool.
        let mut conn = self.pool.acquire().await?.detach();
        let got: Option<i64> = sqlx::query_scalar(&format!("SELECT GET_LOCK({LOCK_NAME}, ?)"))
            .bind(MIGRATE_LOCK_WAIT_SECS)
            .fetch_one(&mut conn)
            .await?;
        if got != Some(1) {
            return Err(StoreError::Busy(format!(
                "another process held the migration lock for over {MIGRATE_LOCK_WAIT_SECS} s"
            )));
        }
        // The migrator runs on another pooled session: the lock only has to
        // be held meanwhile, and `run(&mut conn)` would make this future
        // non-Send (sqlx's "Acquire is not general enough").
        let migrated = MYSQL_MIGRATIONS.run(&self.pool).await;
        let released = sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK_NAME})"))
            .execute(&mut conn)
            .await;
        migrated?;
        released?;
        conn.close().await?;
        Ok(())
    }

    /// A transaction that must read before it writes, begun with the write
    /// lock ([`Backend::begin_write`]).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin_with(self.backend.begin_write()).await?)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for modules that keep their own tables. Queries
    /// must stay portable: `?` placeholders and `i64`/`String` columns.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The key that protects SIP passwords.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.hot.close().await;
        self.pool.close().await;
    }
}

/// The shared pool and the SIP path's one-connection pool (see
/// [`Store::hot`]); the same pool twice for an in-memory database.
async fn open_sqlite(url: &str) -> Result<(AnyPool, AnyPool)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let in_memory = base.ends_with(":memory:") || query.split('&').any(|kv| kv == "mode=memory");
    let url = if in_memory || query.split('&').any(|kv| kv.starts_with("mode=")) {
        url.to_owned()
    } else {
        create_parent_dir(base);
        let sep = if query.is_empty() { '?' } else { '&' };
        format!("{url}{sep}mode=rwc")
    };

    // No ping before each use: a SQLite connection is a file, not a socket
    // that can go stale, and the ping was a round trip to the connection's
    // worker thread on every query of the SIP path.
    let options = AnyPoolOptions::new()
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // sqlx enables foreign keys by default today; the cascades on
                // profiles and voicemail_settings depend on it, so do not rely on
                // a default.
                conn.execute("PRAGMA foreign_keys = ON").await?;
                // With WAL, NORMAL syncs at checkpoints instead of on every commit:
                // a committed transaction survives a crash of the process (what
                // "accepted means stored" asks of the embedded database), and only
                // an OS crash or power cut can lose the last commits. FULL would
                // put one fsync on every REGISTER and MESSAGE. Production runs on
                // MariaDB, whose own durability settings then apply.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                // Pages read through a shared mapping instead of a read() per page
                // miss: another connection's commit empties this one's page cache,
                // and the SIP path reads right after the writers commit.
                conn.execute("PRAGMA mmap_size = 268435456").await?;
                Ok(())
            })
        });
    let single = |options: AnyPoolOptions| {
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    };
    if in_memory {
        let pool = single(options).connect(&url).await?;
        return Ok((pool.clone(), pool));
    }
    let hot_options = single(options.clone());
    let pool = options.connect(&url).await?;
    // WAL lets readers proceed while a writer commits; it is a property of
    // the file, so setting it once per open is enough.
    pool.execute("PRAGMA journal_mode = WAL").await?;
    let hot = hot_options.connect(&url).await?;
    Ok((pool, hot))
}

/// The next batch of a writer task's queue: waits for one item, then takes
/// whatever else is already waiting, up to `max`. `None` once the queue is
/// closed. This is what makes the writers commit once per burst.
pub(crate) async fn next_batch<T>(
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    max: usize,
) -> Option<Vec<T>> {
    let mut batch = vec![queue.recv().await?];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Creates the directory that will hold the database file, so a fresh data
/// directory works on first start. Failures are left for SQLite to report
/// with the real path.
fn create_parent_dir(base: &str) {
    let path = base
        .strip_prefix("sqlite://")
        .or_else(|| base.strip_prefix("sqlite:"))
        .unwrap_or(base);
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        tracing::warn!(dir = %parent.display(), error = %e, "cannot create database directory");
    }
}

/// Unix time in seconds, the store's clock.
pub fn now_secs() -> i64 {
    now()
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Every prefix of `number` up to [`validate::PREFIX_MAX`] characters,
/// shortest first and including the empty one, padded by repeating the
/// longest to a fixed count: one SQL text for every look-up keeps the
/// prepared statement cache to a single entry.
pub(crate) fn prefixes_of(number: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(validate::PREFIX_MAX + 1);
    out.push("");
    for (i, c) in number.char_indices().take(validate::PREFIX_MAX) {
        out.push(&number[..i + c.len_utf8()]);
    }
    let last = out.last().copied().unwrap_or("");
    out.resize(validate::PREFIX_MAX + 1, last);
    out
}

/// `?, ?, …` for [`prefixes_of`].
pub(crate) fn prefix_placeholders() -> String {
    vec!["?"; validate::PREFIX_MAX + 1].join(", ")
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Test databases: a fresh SQLite file per test, or the MySQL/MariaDB
    //! database named by `SOFTSWITCH_TEST_MYSQL_URL` (shared by all tests, so
    //! they use unique names and delete what they insert).

    use std::ops::Deref;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::Store;
    use crate::secrets::Secrets;

    pub(crate) const MYSQL_URL_VAR: &str = "SOFTSWITCH_TEST_MYSQL_URL";

    pub(crate) struct TestStore {
        pub(crate) store: Store,
        // Keeps the SQLite file alive for the test's duration.
        _dir: Option<tempfile::TempDir>,
    }

    impl Deref for TestStore {
        type Target = Store;
        fn deref(&self) -> &Store {
            &self.store
        }
    }

    pub(crate) async fn test_store() -> TestStore {
        let secrets = Arc::new(Secrets::generate().unwrap());
        match std::env::var(MYSQL_URL_VAR) {
            Ok(url) if !url.is_empty() => TestStore {
                store: Store::open(&url, secrets).await.unwrap(),
                _dir: None,
            },
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestStore {
                    store: Store::open(&url, secrets).await.unwrap(),
                    _dir: Some(dir),
                }
            }
        }
    }

    /// A name no other test (or earlier run against the same MySQL database)
    /// uses: `tag` plus process id, a counter and the clock.
    pub(crate) fn unique(tag: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("{tag}{}x{n}x{nanos}", std::process::id())
    }

    /// A new account (login `tag…`) on `tariff` with `balance_micro` of
    /// `currency` (its opening `adjust` ledger row).
    pub(crate) async fn money_account(
        store: &Store,
        tag: &str,
        tariff: &str,
        currency: &str,
        balance_micro: i64,
    ) -> String {
        use super::accounts::{AccountTemplate, NewAccount};
        let login = unique(tag);
        store
            .add_account(&NewAccount {
                login: login.clone(),
                sip_password: "sip-pw".into(),
                template: AccountTemplate {
                    tariff: tariff.into(),
                    currency: currency.into(),
                    balance_micro,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        login
    }

    /// The balance of `login`, asserting that its ledger sums to it and
    /// that it is not below what calls in progress hold.
    pub(crate) async fn checked_balance(store: &Store, login: &str) -> i64 {
        let money = store.account_money(login).await.unwrap().unwrap();
        assert_eq!(
            store.ledger_total(login).await.unwrap(),
            money.balance_micro,
            "the ledger of {login} sums to its balance"
        );
        assert!(
            money.balance_micro >= money.reserved_micro.max(0),
            "{login} overspent: {money:?}"
        );
        money.balance_micro
    }

    /// A unique string of `len` digits, for phone numbers and prefixes.
    pub(crate) fn unique_digits(len: usize) -> String {
        let mut digits: String = unique("")
            .chars()
            .filter(char::is_ascii_digit)
            .rev()
            .collect();
        digits.truncate(len);
        while digits.len() < len {
            digits.push('7');
        }
        // Phones must not start with 0 in E.164; prefixes do not care.
        digits.replace_range(0..1, "9");
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::test_store;
    use super::*;

    #[tokio::test]
    async fn migrations_are_idempotent() {
        let store = test_store().await;
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_migrations() {
        // On a fresh MySQL/MariaDB database this is what several nodes do at
        // start; on an up-to-date one it must stay a quiet no-op.
        let store = test_store().await;
        let runs = (0..4).map(|_| {
            let s = store.store.clone();
            tokio::spawn(async move { s.migrate().await })
        });
        for run in runs.collect::<Vec<_>>() {
            run.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn reopen_sqlite_keeps_data_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/switch.db");
        let url = format!("sqlite:{}", path.display());
        let secrets = Arc::new(Secrets::generate().unwrap());
        let store = Store::open(&url, secrets.clone()).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        store
            .add_dialplan(&DialplanEntry {
                prefix: "48".into(),
                server: "pl.example.net".into(),
            })
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        store.close().await;

        let again = Store::open(&url, secrets).await.unwrap();
        assert_eq!(again.list_dialplan().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn in_memory_sqlite_works() {
        let secrets = Arc::new(Secrets::generate().unwrap());
        let store = Store::open("sqlite::memory:", secrets).await.unwrap();
        store
            .add_dialplan(&DialplanEntry {
                prefix: "1".into(),
                server: "us.example.net".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.list_dialplan().await.unwrap().len(), 1);
    }

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::from_url("sqlite:x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("mysql://u:p@h/db").unwrap(),
            Backend::MySql
        );
        assert_eq!(
            Backend::from_url("mariadb://u:p@h/db").unwrap(),
            Backend::MySql
        );
        let err = Backend::from_url("postgres://u:secretpw@h/db").unwrap_err();
        assert!(!err.to_string().contains("secretpw"));
    }

    #[test]
    fn prefixes() {
        let p = prefixes_of("486");
        assert_eq!(p.len(), validate::PREFIX_MAX + 1);
        assert_eq!(&p[..4], ["", "4", "48", "486"]);
        assert!(p[4..].iter().all(|s| *s == "486"));
        assert!(prefixes_of("").iter().all(|s| s.is_empty()));
        let long = "1".repeat(50);
        assert_eq!(
            prefixes_of(&long).last().unwrap().len(),
            validate::PREFIX_MAX
        );
        assert_eq!(prefixes_of("ä1")[1], "ä");
    }
}
