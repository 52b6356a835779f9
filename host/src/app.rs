//! Start-up shared by every subcommand, the tests and the benchmarks: the
//! configuration, the data directory, the database and the plugin runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::billing::Billing;
use crate::config::Config;
use crate::directory::{Directory, StoreDirectory};
use crate::metrics::Metrics;
use crate::plugins::{GuestRegistry, Plugins, PluginsOptions};
use crate::secrets::Secrets;
use crate::sip::registrar::Registrar;
use crate::store::Store;

/// An opened switch: configuration, data directory and database.
pub struct App {
    pub config: Config,
    pub data_dir: PathBuf,
    pub store: Store,
    pub metrics: Metrics,
    /// Made on first use: one per process (see [`App::billing`]).
    billing: std::sync::OnceLock<Arc<Billing>>,
}

impl App {
    /// Reads the configuration, creates the data directory and opens (and
    /// migrates) the database.
    pub async fn open(config_path: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<App> {
        let config = Config::load(config_path)?;
        let data_dir = config.data_dir(data_dir);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let secrets = Secrets::load_or_create(&data_dir.join("secret.key"))
            .with_context(|| format!("secret key in {}", data_dir.display()))?;
        let url = config.database_url(&data_dir);
        let store = Store::open(&url, Arc::new(secrets))
            .await
            .with_context(|| format!("cannot open database {}", redact_url(&url)))?;
        Ok(App {
            config,
            data_dir,
            store,
            metrics: Metrics::new(),
            billing: std::sync::OnceLock::new(),
        })
    }

    /// The billing service (tariffs in memory, charging, vouchers), the
    /// same instance for the call path and the APIs. Its refresh task is
    /// started by whoever runs the switch ([`Billing::spawn_refresh`]).
    pub fn billing(&self) -> Arc<Billing> {
        self.billing
            .get_or_init(|| Billing::new(self.store.clone(), self.config.billing.clone()))
            .clone()
    }

    /// The plugin engine with the configured limits.
    pub fn plugins(&self) -> anyhow::Result<Plugins> {
        Ok(Plugins::new(
            PluginsOptions::from_config(&self.config, &self.data_dir),
            self.metrics.clone(),
        )?)
    }

    /// Loads every configured guest, answering directory look-ups from the
    /// database and, when the switch runs, registrations from its registrar.
    pub async fn guests(&self, registrar: Option<Arc<Registrar>>) -> anyhow::Result<GuestRegistry> {
        let directory: Arc<dyn Directory> =
            Arc::new(StoreDirectory::new(self.store.clone(), registrar));
        Ok(GuestRegistry::load(self.plugins()?, &self.config.guests, directory).await?)
    }

    /// The admin bearer token: from the configuration, else from
    /// `<data_dir>/admin.token`, generated on first use.
    pub fn admin_token(&self) -> anyhow::Result<(String, Option<PathBuf>)> {
        if !self.config.admin.token.is_empty() {
            return Ok((self.config.admin.token.clone(), None));
        }
        let path = self.data_dir.join("admin.token");
        if let Ok(token) = std::fs::read_to_string(&path) {
            let token = token.trim().to_string();
            if !token.is_empty() {
                return Ok((token, Some(path)));
            }
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
        Ok((token, Some(path)))
    }
}

/// Writes a file only its owner can read (tokens, keys).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

/// A database URL with its password replaced, fit for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_leave_in_urls() {
        assert_eq!(
            redact_url("mysql://sw:s3cret@db:3306/softswitch"),
            "mysql://sw:***@db:3306/softswitch"
        );
        assert_eq!(
            redact_url("sqlite:data/softswitch.db"),
            "sqlite:data/softswitch.db"
        );
    }
}
