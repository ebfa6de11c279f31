//! Durables as data: each consumer module's durable is `nats/consumers/<durable>.json`, in the
//! form `nats consumer add FOLLOWUP --config <file>` takes. Reading a directory of them, and
//! telling which fields of a live durable differ from its file.

mod apply;

pub use apply::{Action, Applied, ApplyError, apply_definitions};

use std::path::{Path, PathBuf};

use async_nats::jetstream::consumer::{self, IntoConsumerConfig};
use serde_json::Value;

/// Fields whose change alters which messages a durable receives, from where, or how they are
/// acknowledged. A live durable is never changed in these silently: `consumers apply` refuses
/// unless told to recreate it (`--allow-policy-change`), which loses its position.
pub const LOCKED_FIELDS: &[&str] = &[
    "durable_name",
    "name",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "filter_subject",
    "replay_policy",
    "deliver_subject",
    "deliver_group",
    "headers_only",
];

/// Why a definition directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a consumer configuration: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: durable_name {durable:?} must equal the file's name")]
    Name { path: PathBuf, durable: String },
    #[error("{path}: field {field:?} is not supported by nats-server 2.9 or by a pull durable")]
    Unsupported { path: PathBuf, field: &'static str },
    #[error("{dir} holds no *.json definition")]
    Empty { dir: PathBuf },
}

/// One durable's definition file.
#[derive(Debug, Clone)]
pub struct Definition {
    pub durable: String,
    pub path: PathBuf,
    /// The fields the file sets: only these are compared with a live durable (the server fills
    /// in the others with its defaults).
    pub keys: Vec<String>,
    pub config: consumer::pull::Config,
}

/// Reads every `*.json` of `dir`, sorted by name.
pub fn read_definitions(dir: &Path) -> Result<Vec<Definition>, DefinitionError> {
    let read_err = |source| DefinitionError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    if paths.is_empty() {
        return Err(DefinitionError::Empty {
            dir: dir.to_owned(),
        });
    }
    paths.into_iter().map(read_definition).collect()
}

fn read_definition(path: PathBuf) -> Result<Definition, DefinitionError> {
    let text = std::fs::read_to_string(&path).map_err(|source| DefinitionError::Read {
        path: path.clone(),
        source,
    })?;
    let parse = |source| DefinitionError::Parse {
        path: path.clone(),
        source,
    };
    let raw: serde_json::Map<String, Value> = serde_json::from_str(&text).map_err(parse)?;
    let config: consumer::pull::Config = serde_json::from_str(&text).map_err(parse)?;
    // 2.9 silently ignores `filter_subjects`: a module would get every subject.
    for field in ["filter_subjects", "deliver_subject"] {
        if raw.contains_key(field) {
            return Err(DefinitionError::Unsupported { path, field });
        }
    }
    let durable = config.durable_name.clone().unwrap_or_default();
    if path.file_stem().and_then(|s| s.to_str()) != Some(durable.as_str()) {
        return Err(DefinitionError::Name { path, durable });
    }
    let mut keys: Vec<String> = raw.keys().cloned().collect();
    keys.sort();
    Ok(Definition {
        durable,
        path,
        keys,
        config,
    })
}

/// The fields of `keys` whose value in `wanted` differs from the live durable's.
pub fn differing_fields(
    keys: &[String],
    wanted: &consumer::pull::Config,
    live: &consumer::Config,
) -> Vec<String> {
    let wanted = serde_json::to_value(wanted.clone().into_consumer_config()).unwrap_or_default();
    let live = serde_json::to_value(live).unwrap_or_default();
    keys.iter()
        .filter(|key| wanted.get(key.as_str()) != live.get(key.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_definitions_read_and_name_their_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats/consumers");
        let definitions = read_definitions(&dir).unwrap();
        let names: Vec<&str> = definitions.iter().map(|d| d.durable.as_str()).collect();
        for expected in [
            "analytics",
            "customer-conversion",
            "example-python",
            "projector",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
        let projector = definitions
            .iter()
            .find(|d| d.durable == "projector")
            .unwrap();
        let live = projector.config.clone().into_consumer_config();
        assert!(differing_fields(&projector.keys, &projector.config, &live).is_empty());
        let mut moved = live.clone();
        moved.deliver_policy = consumer::DeliverPolicy::New;
        moved.max_deliver = 9;
        let fields = differing_fields(&projector.keys, &projector.config, &moved);
        assert_eq!(fields, ["deliver_policy", "max_deliver"]);
    }
}
