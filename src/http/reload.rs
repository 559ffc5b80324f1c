//! Reading the configuration again while serving (SIGHUP, `POST /api/reload`): the
//! certificate and key, and the [`Rules`] (static tokens, JWT keys, ICE servers and
//! redirects) are rebuilt from the configuration as the command line and the file
//! give it now, checked whole, and swapped in at once. A configuration that does not
//! validate, or a file it names that cannot be read, changes nothing: the reason is
//! logged and returned, and the old rules stay. Sessions are never dropped by a
//! reload: a session keeps the rights it was created with.

use std::sync::Arc;

use tracing::{info, warn};

use super::Rules;
use super::ice_servers::IceServers;
use super::tls::CertResolver;
use crate::auth::Authenticator;
use crate::config::{Config, StaticTokenConfig};
use crate::model::Role;

/// Where the configuration comes from, as at start (flags and variables over the
/// file): called again at each reload.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// What a reload needs beside the rules in force.
pub(crate) struct Reloader {
    /// `None`: the server was started from a configuration in memory, with nothing to
    /// read again (only the certificate reloads).
    pub(crate) source: Option<ConfigSource>,
    /// The publish token made at start because none was configured: kept while the
    /// configuration still names none, so that a reload does not lock publishers out.
    pub(crate) generated_token: Option<String>,
    /// The HTTPS certificate, reloaded from its files.
    pub(crate) tls: Option<Arc<CertResolver>>,
}

/// Builds the rules a configuration describes, reading the files it names.
pub(crate) fn rules(config: &Config, generated_token: Option<&str>) -> Result<Rules, String> {
    let read = |p: &std::path::Path| std::fs::read(p);
    let mut auth_config = config.auth.clone();
    let mut auth = Authenticator::new(&auth_config, &read).map_err(|e| e.to_string())?;
    if let Some(token) = generated_token
        && !auth.has_credentials_for(Role::Publisher)
    {
        auth_config
            .tokens
            .push(StaticTokenConfig::every_stream(token, Role::Publisher));
        auth = Authenticator::new(&auth_config, &read).map_err(|e| e.to_string())?;
    }
    let ice_servers = IceServers::new(&config.ice_servers, &read).map_err(|e| e.to_string())?;
    Ok(Rules {
        auth,
        ice_servers,
        redirects: config.redirects.clone(),
    })
}

impl Reloader {
    /// Reloads the certificate and the rules; what changed, in one line, or why
    /// nothing did.
    pub(crate) fn reload(&self, current: &arc_swap::ArcSwap<Rules>) -> Result<String, String> {
        let mut done = Vec::new();
        if let Some(tls) = &self.tls {
            tls.reload()
                .map_err(|e| format!("certificate not reloaded: {e}"))?;
            done.push("TLS certificate");
        }
        if let Some(source) = &self.source {
            let config = source()?;
            let config = config.validated().map_err(|e| e.to_string())?;
            let rules = rules(&config, self.generated_token.as_deref())?;
            current.store(Arc::new(rules));
            done.push("tokens, JWT keys, ICE servers and redirects");
        }
        if done.is_empty() {
            return Err("nothing to reload: no configuration file and no certificate".into());
        }
        Ok(format!("reloaded: {}", done.join("; ")))
    }

    /// A reload triggered by SIGHUP: logged, never fatal.
    pub(crate) fn on_sighup(&self, current: &arc_swap::ArcSwap<Rules>) {
        match self.reload(current) {
            Ok(what) => info!("SIGHUP: {what}"),
            Err(e) => warn!("SIGHUP: configuration not reloaded, keeping the old one: {e}"),
        }
    }
}
