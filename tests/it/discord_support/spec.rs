//! Discord's OpenAPI 3.1 description (`tests/specs/discord-openapi.json`):
//! does an operation exist for a method and path, and does a JSON body
//! validate against its request schema (JSON Schema 2020-12, `$ref`s into
//! `components` resolved against a root that embeds them).

use regex::Regex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A compiled request schema per (method, template); None: no JSON body defined.
type Validators = Mutex<HashMap<(String, String), Arc<Option<jsonschema::Validator>>>>;

pub struct Spec {
    doc: Value,
    /// (path template, its regex) for every path in the document.
    paths: Vec<(String, Regex)>,
    validators: Validators,
}

pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let file = crate::common::repo().join("tests/specs/discord-openapi.json");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let doc: Value = serde_json::from_str(&text).unwrap();
        let mut paths: Vec<(String, Regex)> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(|t| {
                let pattern = regex::escape(t);
                let pattern = Regex::new(r"\\\{[a-z_]+\\\}")
                    .unwrap()
                    .replace_all(&pattern, "[^/]+");
                (t.clone(), Regex::new(&format!("^{pattern}$")).unwrap())
            })
            .collect();
        // Literal segments win over parameters (`/messages/@original` over `/messages/{id}`).
        paths.sort_by_key(|(t, _)| t.matches('{').count());
        Spec {
            doc,
            paths,
            validators: Mutex::default(),
        }
    })
}

impl Spec {
    /// The path template `path` (without `/api/v10`) matches, with `method` defined on it.
    pub fn operation(&self, method: &str, path: &str) -> Result<String, String> {
        let Some((template, _)) = self.paths.iter().find(|(_, re)| re.is_match(path)) else {
            return Err(format!(
                "{method} {path}: no such path in the Discord OpenAPI spec"
            ));
        };
        if self.doc["paths"][template][method.to_lowercase()].is_null() {
            return Err(format!(
                "{method} {path}: {template} has no {method} in the spec"
            ));
        }
        Ok(template.clone())
    }

    /// Validates a JSON body against the operation's request schema.
    pub fn check_body(&self, method: &str, template: &str, body: &Value) -> Result<(), String> {
        let key = (method.to_lowercase(), template.to_string());
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            cache
                .entry(key.clone())
                .or_insert_with(|| {
                    let schema = &self.doc["paths"][template][&key.0]["requestBody"]["content"]
                        ["application/json"]["schema"];
                    if schema.is_null() {
                        return Arc::new(None);
                    }
                    let mut root = schema.clone();
                    if !root.is_object() {
                        root = json!({ "allOf": [root] });
                    }
                    root["components"] = self.doc["components"].clone();
                    let v = jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft202012)
                        .build(&root)
                        .unwrap_or_else(|e| panic!("schema of {method} {template}: {e}"));
                    Arc::new(Some(v))
                })
                .clone()
        };
        let Some(v) = validator.as_ref() else {
            return if body.is_null() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {template}: the spec defines no JSON body, got {body}"
                ))
            };
        };
        let errors: Vec<String> = v
            .iter_errors(body)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template}: body {body} does not validate: {}",
                errors.join("; ")
            ))
        }
    }
}
