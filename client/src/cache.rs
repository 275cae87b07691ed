//! The offline cache: the last verified lookup answer per service, on disk.
//!
//! An entry is the node's raw [`LookupResponse`] (certificate and proof), so a
//! cached answer is re-verified against the trusted validators whenever it is
//! served; a tampered cache file fails verification like a lying node.
//! Entries are written to a temporary file and renamed into place.

use std::fs;
use std::path::PathBuf;

use palisade_crypto::api::{EpochsResponse, LookupResponse};
use palisade_crypto::{CommitCertificate, Hex};
use serde::{Deserialize, Serialize};

use crate::node::encode_component;
use crate::ClientError;

#[derive(Serialize, Deserialize)]
struct Entry {
    namespace: String,
    service: String,
    response: LookupResponse,
}

/// A directory of cached lookup answers for one chain.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    fn path(&self, namespace: &str, service: &str) -> PathBuf {
        self.dir.join(format!(
            "{}~{}.json",
            encode_component(namespace),
            encode_component(service)
        ))
    }

    /// Store a (verified) answer, replacing the previous one.
    pub fn store(
        &self,
        namespace: &str,
        service: &str,
        response: &LookupResponse,
    ) -> Result<(), ClientError> {
        let err = |e: std::io::Error| ClientError::Cache(format!("{}: {e}", self.dir.display()));
        fs::create_dir_all(&self.dir).map_err(err)?;
        let entry = Entry {
            namespace: namespace.to_string(),
            service: service.to_string(),
            response: response.clone(),
        };
        let text = serde_json::to_vec(&entry).map_err(|e| ClientError::Cache(e.to_string()))?;
        let path = self.path(namespace, service);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, text).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    /// The stored answer for a service, if any.
    pub fn load(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<LookupResponse>, ClientError> {
        let path = self.path(namespace, service);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::Cache(format!("{}: {e}", path.display()))),
        };
        let entry: Entry = serde_json::from_slice(&text)
            .map_err(|e| ClientError::Cache(format!("{}: {e}", path.display())))?;
        if entry.namespace != namespace || entry.service != service {
            return Err(ClientError::Cache(format!(
                "{} holds {}/{}",
                path.display(),
                entry.namespace,
                entry.service
            )));
        }
        Ok(Some(entry.response))
    }

    /// Store the epoch-ending certificates a client followed.
    pub fn store_epochs(&self, changes: &[CommitCertificate]) -> Result<(), ClientError> {
        let err = |e: std::io::Error| ClientError::Cache(format!("{}: {e}", self.dir.display()));
        fs::create_dir_all(&self.dir).map_err(err)?;
        let file = EpochsResponse {
            changes: changes.iter().map(Hex::new).collect(),
            epochs: Vec::new(),
        };
        let text = serde_json::to_vec(&file).map_err(|e| ClientError::Cache(e.to_string()))?;
        let path = self.dir.join("epochs.json");
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, text).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)
    }

    /// The stored epoch-ending certificates (unverified: follow them).
    pub fn load_epochs(&self) -> Result<Vec<CommitCertificate>, ClientError> {
        let path = self.dir.join("epochs.json");
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ClientError::Cache(format!("{}: {e}", path.display()))),
        };
        let file: EpochsResponse = serde_json::from_slice(&text)
            .map_err(|e| ClientError::Cache(format!("{}: {e}", path.display())))?;
        file.changes
            .iter()
            .map(|c| c.decode())
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::Cache(format!("{}: {e}", path.display())))
    }
}
