//! Reading the configuration again while serving (SIGHUP, `POST /api/reload`): the
//! certificate and key, the [`Rules`] (static tokens, JWT keys, ICE servers and
//! redirects) and the cameras are rebuilt from the configuration as the command line
//! and the file give it now, checked whole, and then applied. A configuration that
//! does not validate, a file it names that cannot be read, or a camera whose stream
//! is taken by another source changes nothing: the reason is logged and returned,
//! and the old configuration stays. A session keeps the rights it was created with;
//! only the viewers of a camera the file no longer names (or names differently) end,
//! as when the API removes it. Cameras the API added are left alone.

use std::sync::Arc;

use tracing::{info, warn};

use super::ice_servers::IceServers;
use super::ops::{remove_camera, start_camera};
use super::tls::CertResolver;
use super::{AppState, Rules};
use crate::auth::Authenticator;
use crate::config::{Config, StaticTokenConfig};
use crate::ingest::CameraChanges;
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
    /// Reloads the certificate, the rules and the cameras of `state`; what changed,
    /// in one line, or why nothing did.
    pub(crate) async fn reload(&self, state: &AppState) -> Result<String, String> {
        let mut done = Vec::new();
        if let Some(tls) = &self.tls {
            tls.reload()
                .map_err(|e| format!("certificate not reloaded: {e}"))?;
            done.push("TLS certificate".to_owned());
        }
        if let Some(source) = &self.source {
            let config = source()?;
            let config = config.validated().map_err(|e| e.to_string())?;
            let rules = rules(&config, self.generated_token.as_deref())?;
            let read = |p: &std::path::Path| std::fs::read(p);
            let wanted = crate::ingest::configured_cameras(&config, &read)?;
            let changes = state.ops.cameras.changes(&wanted)?;
            let directory = state.media.directory();
            for add in &changes.add {
                let replaced = changes.remove.iter().any(|r| r == add.stream());
                if !replaced && directory.stream(add.stream()).is_some() {
                    return Err(format!(
                        "stream {:?} has a WHIP publisher; it cannot also be a camera",
                        add.stream()
                    ));
                }
            }
            state.rules.store(Arc::new(rules));
            done.push("tokens, JWT keys, ICE servers and redirects".to_owned());
            done.push(self.apply(state, changes).await);
        }
        if done.is_empty() {
            return Err("nothing to reload: no configuration file and no certificate".into());
        }
        Ok(format!("reloaded: {}", done.join("; ")))
    }

    /// Stops and starts cameras as a reload found; what it did, in a few words. A
    /// camera that cannot start (its port taken meanwhile) is named and left out;
    /// the rest of the reload stands.
    async fn apply(&self, state: &AppState, changes: CameraChanges) -> String {
        for name in &changes.remove {
            // Gone already (its stream removed meanwhile): nothing left to stop.
            let _ = remove_camera(state, name).await;
            info!(stream = %name, "camera stopped by a configuration reload");
        }
        let mut failed = Vec::new();
        let mut started = 0;
        for spec in changes.add {
            let stream = spec.stream().to_owned();
            match start_camera(state, spec, true) {
                Ok(_) => {
                    started += 1;
                    info!(stream = %stream, "camera started by a configuration reload");
                }
                Err(e) => {
                    warn!(stream = %stream, "camera not started by a configuration reload: {e}");
                    failed.push(format!("{stream} not started ({e})"));
                }
            }
        }
        let mut what = format!(
            "cameras: {} stopped, {started} started",
            changes.remove.len()
        );
        for f in failed {
            what.push_str(", ");
            what.push_str(&f);
        }
        what
    }

    /// A reload triggered by SIGHUP: logged, never fatal.
    pub(crate) async fn on_sighup(&self, state: &AppState) {
        match self.reload(state).await {
            Ok(what) => info!("SIGHUP: {what}"),
            Err(e) => warn!("SIGHUP: configuration not reloaded, keeping the old one: {e}"),
        }
    }
}
