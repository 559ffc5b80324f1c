//! A small JSON Schema validator over the subset `src/api/openapi.json` uses, and
//! lookup of a response's schema by path, method and status.
//!
//! Why not the `jsonschema` crate: it brings dozens of crates (regex engines, URL and
//! HTTP resolvers) into a build shared by six engineers on two cores, for the eight
//! keywords this file uses. Any keyword this validator does not know makes it fail,
//! so the spec cannot quietly grow past what is checked.

use serde_json::Value;

/// The spec, as the server serves it.
pub fn spec() -> Value {
    serde_json::from_str(wishd::http::ops::OPENAPI).expect("openapi.json is JSON")
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> Result<&'a Value, String> {
    match v.get("$ref").and_then(Value::as_str) {
        None => Ok(v),
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .ok_or_else(|| format!("only local $ref: {r}"))?;
            let target = spec
                .pointer(pointer)
                .ok_or_else(|| format!("dangling $ref {r}"))?;
            resolve(spec, target)
        }
    }
}

/// The schema of the `status` response to `method` on `path` (a template as in the
/// spec, e.g. `/api/streams/{name}`) for `content_type`; `Ok(None)` when the spec
/// gives that response no body.
pub fn response_schema<'a>(
    spec: &'a Value,
    path: &str,
    method: &str,
    status: u16,
    content_type: Option<&str>,
) -> Result<Option<&'a Value>, String> {
    let op = spec
        .pointer(&format!(
            "/paths/{}/{}",
            path.replace('~', "~0").replace('/', "~1"),
            method.to_ascii_lowercase()
        ))
        .ok_or_else(|| format!("{method} {path} is not in the spec"))?;
    let resp = op
        .get("responses")
        .and_then(|r| r.get(status.to_string()))
        .ok_or_else(|| format!("{method} {path} has no {status} response in the spec"))?;
    let resp = resolve(spec, resp)?;
    let Some(content) = resp.get("content").and_then(Value::as_object) else {
        return Ok(None);
    };
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .ok_or_else(|| {
            format!("{method} {path} {status}: the spec has a body, the response has no type")
        })?;
    let media = content
        .get(&ct)
        .ok_or_else(|| format!("{method} {path} {status}: {ct} is not a documented type"))?;
    Ok(media.get("schema"))
}

/// Validates `instance` against `schema`; the error names the JSON path.
pub fn validate(spec: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    check(spec, schema, instance, "$")
}

const KNOWN: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "pattern",
    "description",
];

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Patterns of the form `^[0-9a-f]{N}$` only.
fn pattern_matches(pattern: &str, s: &str) -> Result<bool, String> {
    let n = pattern
        .strip_prefix("^[0-9a-f]{")
        .and_then(|r| r.strip_suffix("}$"))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| format!("unsupported pattern {pattern}"))?;
    Ok(s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn check(spec: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema)?;
    let obj = schema
        .as_object()
        .ok_or_else(|| format!("{at}: schema is not an object"))?;
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("{at}: the validator does not know the keyword {k}"));
    }
    if let Some(t) = obj.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => return Err(format!("{at}: bad type keyword")),
        };
        if !ok {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(e) = obj.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(format!("{at}: {n} < minimum {min}"));
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(format!("{at}: {n} > maximum {max}"));
        }
    }
    if let (Some(p), Some(s)) = (obj.get("pattern").and_then(Value::as_str), v.as_str())
        && !pattern_matches(p, s)?
    {
        return Err(format!("{at}: {s:?} does not match {p}"));
    }
    if let Some(map) = v.as_object() {
        let props = obj.get("properties").and_then(Value::as_object);
        if let Some(req) = obj.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    return Err(format!("{at}: required property {r} is missing"));
                }
            }
        }
        for (k, val) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(spec, s, val, &format!("{at}.{k}"))?,
                None => {
                    if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
                        return Err(format!("{at}: property {k} is not in the schema"));
                    }
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (obj.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(spec, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks a whole response against the spec: the status is documented for the path
/// and method, the content type is one documented, and a JSON body validates.
pub fn check_response(
    spec: &Value,
    path: &str,
    method: &str,
    resp: &wishd::client::HttpResponse,
) -> Result<(), String> {
    let schema = response_schema(spec, path, method, resp.status, resp.header("content-type"))?;
    let is_json = resp
        .header("content-type")
        .is_some_and(|c| c.contains("json"));
    match schema {
        Some(schema) if is_json => {
            let body: Value = serde_json::from_slice(&resp.body)
                .map_err(|e| format!("{method} {path}: body is not JSON: {e}"))?;
            validate(spec, schema, &body)
        }
        _ => Ok(()),
    }
}
